"""dataset=files: a task from config alone over JSONL, CSV or Parquet rows (fields, label kinds,
templates, bad rows named file:line), and such a dataset through train, eval, predict, export and report."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from kdlight.data.files import FilesTask, split_positions, task_from_format
from kdlight.data.tasks import BadRow
from tests.conftest import REPO_ROOT
from tests.helpers import HANG_GUARD, clean_env, command, results_of, train

REVIEW = {"inputs": ("review",), "label": "sentiment", "labels": ("negative", "positive"),
          "templates": {"student": "{review}", "teacher": "Review: {review}\nSentiment:"}}


def test_a_row_becomes_an_example_whose_renderings_mark_the_content():
    task = FilesTask(name="reviews", **REVIEW)
    example = task.example_from_row({"review": "a superb film", "sentiment": 1}, 0)
    assert (example.id, example.label, example.fields) == ("reviews-0", "positive", {"review": "a superb film"})
    teacher = task.render_teacher(example)
    assert teacher.text == "Review: a superb film\nSentiment:" and [teacher.text[a:b] for a, b in teacher.spans] == ["a superb film"]
    assert task.render_student(example).text == "a superb film" and task.answer_kind == "text" and task.label_set == ("negative", "positive")
    assert task.example_from_row({"review": "dull", "sentiment": "negative"}, 3).label == "negative"


def test_two_inputs_choices_highlights_and_a_rationale_map_from_columns():
    task = FilesTask(name="qa", inputs=("context", "question"), label="answer", id="qid", choices="options", highlights="marked",
                     rationale="why", label_kind="text",
                     templates={"student": "{context}\n{question}{choices}", "teacher": "Q: {question} ({context}){choices}\nA:",
                                "choice": "\n({letter}) {choice}"})
    row = {"qid": 7, "context": "at the lake", "question": "where do fish live?", "options": ["water", "sky"], "answer": "water",
           "marked": ["fish live"], "why": "Fish need water."}
    example = task.example_from_row(row, 0)
    assert example.id == "7" and example.palm_rationale == "Fish need water." and example.fields["highlights"] == ["fish live"]
    student = task.render_student(example)
    assert student.text == "at the lake\nwhere do fish live?\n(a) water\n(b) sky"
    assert [student.text[a:b] for a, b in student.spans] == ["at the lake", "where do fish live?", "water", "sky"]
    assert task.label_category(example) == "(a)"
    with pytest.raises(BadRow, match=r"label 'tree' is not one of the choices \['water', 'sky'\]"):
        task.example_from_row({**row, "answer": "tree"}, 1)
    csv_row = {**row, "options": '["water", "sky"]'}  # a list column in CSV is JSON text
    assert task.example_from_row(csv_row, 2).fields["choices"] == ["water", "sky"]


def test_label_kinds_check_their_labels():
    number = FilesTask(name="math", inputs=("problem",), label="equation", label_kind="number",
                       templates={"student": "{problem}", "teacher": "{problem}\nEquation:"})
    assert number.answer_kind == "equation" and number.example_from_row({"problem": "2 and 3?", "equation": "( 2 + 3 )"}, 0).label == "( 2 + 3 )"
    with pytest.raises(BadRow, match="is not a number or an arithmetic equation"):
        number.example_from_row({"problem": "2 and 3?", "equation": "five"}, 0)
    classes = FilesTask(name="reviews", **REVIEW)
    with pytest.raises(BadRow, match=r"label 7 is not one of dataset.labels \['negative', 'positive'\] \(nor an index into them\)"):
        classes.example_from_row({"review": "ok", "sentiment": 7}, 0)
    with pytest.raises(BadRow, match="missing field 'review'"):
        classes.example_from_row({"sentiment": 1}, 0)


def test_bad_definitions_are_named():
    with pytest.raises(ValueError, match=r"dataset.templates.teacher names \{text\}, which is not an input field; use \['review'\]"):
        FilesTask(**{**REVIEW, "templates": {"student": "{review}", "teacher": "{text}"}})
    with pytest.raises(ValueError, match="dataset.labels is required with dataset.label_kind=class"):
        FilesTask(**{**REVIEW, "labels": None})
    with pytest.raises(ValueError, match=r"dataset.label_kind='score' is not accepted; use one of \['class', 'text', 'number'\]"):
        FilesTask(**{**REVIEW, "label_kind": "score"})


def test_one_file_splits_by_seeded_fractions_into_disjoint_parts():
    parts = split_positions(100, {"valid": 0.1, "test": 0.2}, seed=3)
    assert [len(parts[s]) for s in ("train", "valid", "test")] == [70, 10, 20]
    assert sorted(set().union(*map(set, parts.values()))) == list(range(100))
    assert all((split_positions(100, {"valid": 0.1, "test": 0.2}, 3)[s] == parts[s]).all() for s in parts)
    with pytest.raises(ValueError, match="split_fractions"):
        split_positions(10, {"valid": 0.6, "test": 0.5}, 0)


def test_the_definition_travels_with_an_export():
    task = FilesTask(name="reviews", **REVIEW)
    assert task_from_format({"dataset": "reviews", "task_definition": task.definition()}) == task
    with pytest.raises(ValueError, match="not a known task"):
        task_from_format({"dataset": "reviews"})


# ---------------------------------------------------------------- a user's files through every command
POSITIVE, NEGATIVE = ["great", "wonderful", "loved", "superb"], ["awful", "boring", "hated", "dull"]
FILLER = "the a film plot actor scene story music camera ending it was and very quite".split()


def review_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        positive = i % 2 == 1
        words = rng.choices(FILLER, k=10) + rng.sample(POSITIVE if positive else NEGATIVE, 2)
        rng.shuffle(words)
        rows.append({"id": f"r{i}", "review": " ".join(words), "sentiment": "positive" if positive else "negative"})
    return rows


def write_reviews(path: Path, rows: list[dict], dirty_line: int | None = None) -> Path:
    lines = [json.dumps(r) for r in rows]
    if dirty_line is not None:
        lines.insert(dirty_line - 1, json.dumps({"id": "dirty", "review": "", "sentiment": "positive"}))
    path.write_text("\n".join(lines) + "\n")
    return path


def files_overrides(path: Path) -> list[str]:
    return ["dataset=files", f"dataset.path={path}", "dataset.name=reviews", "dataset.labels=[negative,positive]",
            "dataset.fields.inputs=[review]", "dataset.fields.label=sentiment", "dataset.fields.id=id",
            "dataset.templates.student='{review}'", "dataset.templates.teacher='Review: {review}\\nSentiment:'"]


RUN = ["debug=tiny", "method=saliency", "k=2", "threads=1", "dataset.max_rows=null", "trainer.max_steps=6", "trainer.val_check_interval=3"]


def test_a_dirty_row_stops_the_run_naming_file_and_line(tmp_path):
    data = write_reviews(tmp_path / "reviews.jsonl", review_rows(40), dirty_line=8)
    out = train(tmp_path, *RUN, *files_overrides(data))
    assert out.returncode != 0
    assert f"{data}:8: field 'review' is empty or not text: ''. Fix the row, or set dataset.on_bad_row=skip" in out.stderr


def test_a_jsonl_task_trains_evaluates_predicts_exports_and_reports_from_config_alone(tmp_path):
    data = write_reviews(tmp_path / "reviews.jsonl", review_rows(80), dirty_line=8)
    out = train(tmp_path, *RUN, *files_overrides(data), "dataset.on_bad_row=skip")
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = results_of(tmp_path)
    assert results["status"] == "finished" and results["dataset"] == "reviews" and results["chance_acc"] == 0.5
    assert results["split_sizes"] == {"train": 64, "valid": 8, "test": 8}  # 80 good rows: 10% valid, 10% test, seeded
    run = Path(results["output_dir"])
    run_predictions = [json.loads(line) for line in (run / "predictions-test.jsonl").read_text().splitlines()]

    out = command("eval.py", tmp_path, f"ckpt_path={results['exported_student']}", "threads=1")
    assert out.returncode == 0, out.stderr[-3000:]
    (metrics,) = (tmp_path / "outputs" / "eval").rglob("metrics.json")
    assert json.loads(metrics.read_text())["acc"] == results["test_acc"]
    assert [json.loads(line) for line in (metrics.parent / "predictions-test.jsonl").read_text().splitlines()] == run_predictions

    # kdlight-predict on raw rows without labels: the export carries the task's definition
    exported = json.loads((run / "student" / "kdlight.json").read_text())
    assert exported["task_definition"]["templates"]["teacher"] == "Review: {review}\nSentiment:"  # a typed \\n is a newline
    rows = [{"review": r["review"]} for r in review_rows(80)[:4]]
    predicted = subprocess.run([sys.executable, "-m", "kdlight.commands.predict", results["exported_student"], "-", "--threads", "1"], cwd=REPO_ROOT,
                               input="".join(json.dumps(r) + "\n" for r in rows), capture_output=True, text=True, timeout=HANG_GUARD,
                               env=clean_env(tmp_path))
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    answers = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert [a["input"] for a in answers] == [r["review"] for r in rows]

    from kdlight.reports.report import main as report

    assert report([str(tmp_path / "outputs" / "train"), "--out", str(tmp_path / "report")]) == 0
    assert "reviews" in (tmp_path / "report" / "table.md").read_text()


@pytest.mark.slow  # the JSONL test runs the same commands by default; CI runs this one too
def test_a_csv_task_with_two_inputs_and_one_file_per_split(tmp_path):
    pairs = [("a man plays a guitar", "a person makes music", "entailment"), ("a dog sleeps", "the dog runs fast", "contradiction"),
             ("kids eat lunch", "the kids are hungry", "neutral")] * 12
    for split, rows in (("train", pairs[:24]), ("test", pairs[24:])):
        with open(tmp_path / f"{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["premise", "hypothesis", "gold"])
            writer.writerows(rows)
    out = train(tmp_path, *RUN, "dataset=files", f"dataset.train={tmp_path / 'train.csv'}", f"dataset.test={tmp_path / 'test.csv'}",
                "dataset.name=pairs", "dataset.labels=[entailment,neutral,contradiction]", "dataset.fields.inputs=[premise,hypothesis]",
                "dataset.fields.label=gold", "dataset.templates.student='{premise} </s> {hypothesis}'",
                "dataset.templates.teacher='Premise: {premise}\\nHypothesis: {hypothesis}\\nAnswer:'")
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = results_of(tmp_path)
    assert results["dataset"] == "pairs" and results["split_sizes"] == {"train": 21, "valid": 3, "test": 12}
    assert results["chance_acc"] == pytest.approx(1 / 3, abs=1e-3)
    out = command("eval.py", tmp_path, f"ckpt_path={results['exported_student']}", "threads=1")
    assert out.returncode == 0, out.stderr[-3000:]
    (metrics,) = (tmp_path / "outputs" / "eval").rglob("metrics.json")
    assert json.loads(metrics.read_text())["acc"] == results["test_acc"]
    rows = "".join(json.dumps({"premise": p, "hypothesis": h}) + "\n" for p, h, _ in pairs[:3])
    predicted = subprocess.run([sys.executable, "-m", "kdlight.commands.predict", results["exported_student"], "-", "--threads", "1"], cwd=REPO_ROOT,
                               input=rows, capture_output=True, text=True, timeout=HANG_GUARD, env=clean_env(tmp_path))
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert [json.loads(line)["input"] for line in predicted.stdout.splitlines()] == [f"{p} </s> {h}" for p, h, _ in pairs[:3]]
    from kdlight.reports.report import main as report

    assert report([str(tmp_path / "outputs" / "train"), "--out", str(tmp_path / "report")]) == 0
    assert "| pairs |" in (tmp_path / "report" / "table.md").read_text()


def test_a_hub_dataset_without_the_hub_fails_at_once_saying_how_to_work_offline(tmp_path):
    out = subprocess.run([sys.executable, "-m", "kdlight.data", "dataset=files", "dataset.source=hub", "dataset.hub={name: imdb}",
                          "dataset.labels=[neg,pos]", f"paths.cache_dir={tmp_path}"], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=HANG_GUARD, env=clean_env(tmp_path))
    assert out.returncode == 2 and "imdb" in out.stderr and "HF_DATASETS_OFFLINE=1" in out.stderr, out.stderr[-2000:]


def test_a_missing_file_is_named_before_any_work(tmp_path):
    out = train(tmp_path, *RUN, *files_overrides(tmp_path / "nowhere.jsonl"))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        f"error: dataset.path={tmp_path / 'nowhere.jsonl'}: no such file (dataset=files reads JSONL, CSV or Parquet files)")

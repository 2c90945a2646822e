"""The command line: bad configs, a tiny run on real CQA rows, resume, export and reload."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

TINY = [
    "teacher=tiny", "student=tiny", "trainer=cpu", "dataset.max_rows=24", "dataset.batch_size=8",
    "dataset.eval_batch_size=12", "trainer.max_steps=4", "trainer.val_check_interval=2", "attribution.batch_size=8",
    "trainer.log_every_n_steps=1", "teacher.model.d_model=32", "teacher.model.d_ff=64", "student.model.d_model=32",
    "student.model.d_ff=64", "student.max_new_tokens=8", "dataset.max_input_length=128",
]


def train(tmp_path: Path, *overrides: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WANDB", "HF_"))},
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "WANDB_MODE": "disabled",
        "WANDB_DIR": str(tmp_path),
    }
    return subprocess.run(
        [sys.executable, "train.py", f"paths.log_dir={tmp_path / 'outputs'}", f"paths.cache_dir={tmp_path / 'cache'}", *overrides],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=env,
    )


def results_of(tmp_path: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "outputs").rglob("results.json"))]


@pytest.mark.parametrize(
    "override, key",
    [("k=-1", "k=-1"), ("alpha=1.5", "alpha=1.5"), ("method=foo", "method"), ("k=2.5", "k=2.5"), ("attribution.unit=line", "attribution.unit")],
)
def test_bad_config_exits_non_zero_naming_the_key(tmp_path, override, key):
    out = train(tmp_path, override, "dataset=cqa", timeout=120)
    assert out.returncode != 0
    assert key in out.stderr
    assert not (tmp_path / "cache").exists()  # failed before any data or model was loaded


@pytest.mark.dsbs
def test_tiny_run_on_cqa_writes_results_and_exports(tmp_path, dsbs_root):
    out = train(tmp_path, "dataset=cqa", f"paths.data_dir={dsbs_root}", "k=3", *TINY)
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = results_of(tmp_path)
    assert results["status"] == "finished"
    assert (results["dataset"], results["method"], results["k"], results["alpha"]) == ("cqa", "saliency", 3, 0.5)
    assert results["split_sizes"] == {"train": 24, "valid": 24, "test": 24}
    assert results["steps"] == 4 and results["rationale_cache"] == "miss"
    assert 0.0 <= results["test_acc"] <= 1.0 and results["val_acc_best"] is not None
    assert "RANDOM-initialised" in out.stdout + out.stderr  # Hydra logs to stdout
    metrics = (Path(results["output_dir"]) / "csv" / "metrics.csv").read_text()
    assert "train/loss_label" in metrics and "train/loss_rationale" in metrics and "val/acc" in metrics

    # The export loads with the Auto classes, holds exactly the weights of the best checkpoint (the
    # one the test used), and loads with transformers.pipeline("text2text-generation", ...) through
    # the pipeline it ships (transformers 5 blocks that task name for folders without one).
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

    export = results["exported_student"]
    model = AutoModelForSeq2SeqLM.from_pretrained(export)
    tokenizer = AutoTokenizer.from_pretrained(export)
    best = torch.load(results["best_checkpoint"], map_location="cpu", weights_only=False)["state_dict"]
    exported = model.state_dict()
    assert all(torch.equal(exported[name[len("model."):]], value) for name, value in best.items() if name.startswith("model."))
    inputs = tokenizer(["predict: Where do fish live?"], return_tensors="pt")
    generated = model.generate(**inputs, max_new_tokens=4)
    assert generated.shape[0] == 1
    expected = [{"generated_text": tokenizer.decode(generated[0], skip_special_tokens=True).strip()}]
    from kdlight.export import Text2TextGenerationPipeline, student_pipeline

    assert pipeline("text2text-generation", model=export, trust_remote_code=True)("predict: Where do fish live?", max_new_tokens=4) == expected
    assert pipeline("text2text-generation", model=export, pipeline_class=Text2TextGenerationPipeline)(
        "predict: Where do fish live?", max_new_tokens=4
    ) == expected
    assert student_pipeline(export)("predict: Where do fish live?", max_new_tokens=4) == expected

    # The same sweep point with another k reuses the teacher's cache.
    again = train(tmp_path, "dataset=cqa", f"paths.data_dir={dsbs_root}", "k=2", *TINY)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {r["k"]: r["rationale_cache"] for r in results_of(tmp_path)} == {2: "hit", 3: "miss"}


@pytest.mark.dsbs
@pytest.mark.parametrize("method", ["finetune", "step_by_step", "random"])
def test_other_methods_run(tmp_path, dsbs_root, method):
    out = train(tmp_path, "dataset=svamp", f"paths.data_dir={dsbs_root}", f"method={method}", *TINY)
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = results_of(tmp_path)
    assert results["method"] == method and results["rationale_cache"] is None
    assert results["alpha"] == (0.0 if method == "finetune" else 0.5)
    metrics = (Path(results["output_dir"]) / "csv" / "metrics.csv").read_text()
    assert ("train/loss_rationale" in metrics) == (method != "finetune")


def test_resume_after_a_kill_continues_from_last_checkpoint(tmp_path, release_root):
    import signal
    import time

    args = ["dataset=cqa", f"paths.data_dir={release_root}", "method=random", *TINY, "trainer.max_steps=30"]
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "WANDB_MODE": "disabled"}
    command = [sys.executable, "train.py", f"paths.log_dir={tmp_path / 'outputs'}", f"paths.cache_dir={tmp_path / 'cache'}", *args]
    proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 240
    while not list((tmp_path / "outputs").rglob("checkpoints/last.ckpt")) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # a real kill: no cleanup, no results.json
    proc.wait()
    assert not results_of(tmp_path)
    (last,) = list((tmp_path / "outputs").rglob("checkpoints/last.ckpt"))
    resumed = train(tmp_path, *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {last}" in resumed.stdout + resumed.stderr
    (results,) = results_of(tmp_path)
    assert results["steps"] == 30


@pytest.mark.dsbs
def test_wandb_logger_writes_offline_runs_grouped_by_sweep_with_config_metrics_and_samples(tmp_path, dsbs_root):
    pytest.importorskip("wandb")
    sweep_dir = tmp_path / "multirun" / "2026-11-28" / "10-00-00"
    overrides = ["logger=wandb", "dataset=cqa", f"paths.data_dir={dsbs_root}", "method=saliency", "k=1,2", *TINY]
    out = subprocess.run(
        [sys.executable, "train.py", "-m", f"hydra.sweep.dir={sweep_dir}", f"paths.cache_dir={tmp_path / 'cache'}", *overrides],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb")},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run_dirs = sorted(p for p in tmp_path.rglob("offline-run-*") if p.is_dir())
    assert len(run_dirs) == 2  # one W&B run per job
    for run_dir in run_dirs:
        # wandb 0.31 keeps an offline run's history, summary and config in its .wandb record file.
        (records,) = list(run_dir.glob("run-*.wandb"))
        data = records.read_bytes()
        for key in (b"test/acc", b"val/acc_best", b"train/loss_rationale", b"params/total", b"kdlight.data.CQADataModule",
                    b"2026-11-28/10-00-00", b"dataset=cqa", b"method=saliency", b"alpha=0.5", b"seed=42"):
            assert key in data, key
        assert list((run_dir / "files").rglob("*samples*.table.json"))
        assert list((run_dir / "files").rglob("*rationales*.table.json"))
        assert list((run_dir / "files").rglob("*saliency*.html"))
        assert "finishing run" in (run_dir / "logs" / "debug.log").read_text()  # wandb.finish() ran
    tags = [b"k=1" in r.read_bytes() and b"k=2" not in r.read_bytes() for d in run_dirs for r in d.glob("run-*.wandb")]
    assert sorted(tags) == [False, True]


def test_finetuned_teacher_stage_runs_once_and_run_returns_the_metric(compose, release_root, tmp_path):
    from kdlight.pipeline import run

    overrides = [
        "dataset=svamp", f"paths.data_dir={release_root}", *TINY, "teacher.finetune=true",
        "teacher.finetune_trainer.max_steps=3", "teacher.finetune_trainer.val_check_interval=3",
        "teacher.finetune_batch_size=8", "attribution.score_teacher=true", "logger=none",
    ]
    value = run(compose(overrides))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert value == results["val_acc_best"]  # what Hydra sweepers receive
    finetune = results["teacher_stage"]["finetune"]
    assert finetune["steps"] == 3 and Path(finetune["path"], "model.safetensors").is_file()
    assert results["teacher_stage"]["splits"]["train"]["teacher_accuracy"] is not None
    assert results["rationale_cache"] == "miss"
    again = compose([*overrides, "k=2"])
    run(again)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["rationale_cache"] == "hit" and results["teacher_stage"]["finetune"]["path"] == finetune["path"]

"""W&B, offline, read back from the run files: sweep grouping and tags, one job type per stage,
artifacts linking a student to its cache, sample tables per validation, a resumed job's run id."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.helpers import HANG_GUARD, TINY, clean_env, command, results_of, train, wandb_records

pytestmark = pytest.mark.dsbs


def runs_below(folder: Path) -> dict[str, dict]:
    """run id -> {job_type, name, group, tags, artifacts [(name, type)], config, summary keys} per offline run file."""
    runs: dict[str, dict] = {}
    for path in sorted(folder.rglob("offline-run-*/run-*.wandb")):
        info = {"artifacts": [], "config": {}, "summary": set(), "history": 0, "resumed": False}
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                info.update(job_type=record.run.job_type, name=record.run.display_name, group=record.run.run_group,
                            tags=list(record.run.tags), run_id=record.run.run_id, resumed=record.run.resumed)
                info["config"].update({item.key: item.value_json for item in record.run.config.update})
            elif kind == "config":
                info["config"].update({item.key: item.value_json for item in record.config.update})
            elif kind == "artifact":
                info["artifacts"].append((record.artifact.name, record.artifact.type))
            elif kind == "summary":
                info["summary"].update(item.key or "/".join(item.nested_key) for item in record.summary.update)
            elif kind == "history":
                info["history"] += 1
        runs.setdefault(info["run_id"], []).append(info)
    return runs


def test_a_sweep_groups_its_runs_and_tags_them(tmp_path, dsbs_root):
    sweep_dir = tmp_path / "multirun" / "2026-11-28" / "10-00-00"
    out = subprocess.run(
        [sys.executable, "train.py", "-m", f"hydra.sweep.dir={sweep_dir}", f"paths.cache_dir={tmp_path / 'cache'}", "logger=wandb",
         "dataset=cqa", f"paths.data_dir={dsbs_root}", "method=saliency", "k=1,2", *TINY],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=HANG_GUARD,
        env=clean_env(tmp_path, WANDB_MODE="offline", WANDB_DIR=str(tmp_path / "wandb")),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    runs = runs_below(sweep_dir)
    train_runs = [r for rs in runs.values() for r in rs if r["job_type"] == "train"]
    assert len(train_runs) == 2 and len([r for rs in runs.values() for r in rs if r["job_type"] == "extract"]) == 1
    for run in train_runs:
        assert run["group"] == "2026-11-28/10-00-00" and run["name"].startswith("cqa-saliency-grad_x_input-k")
        assert {"dataset=cqa", "method=saliency", "alpha=0.5", "seed=42", "attribution=grad_x_input"} <= set(run["tags"])
        assert {"test/acc", "val/acc_best", "train/loss_rationale"} <= run["summary"] and "params/total" in run["config"]
        assert any(kind == "run_table" and "valsamples" in name for name, kind in run["artifacts"])
        assert any(kind == "run_table" and "trainrationales" in name for name, kind in run["artifacts"])
    assert sorted("k=1" in r["tags"] for r in train_runs) == [False, True]


@pytest.mark.slow  # 10-35 s: CI runs it (.ci/run includes the slow tests)
def test_job_types_artifacts_lineage_and_a_resumed_run_id(tmp_path, dsbs_root):
    env = clean_env(tmp_path, WANDB_MODE="offline", WANDB_DIR=str(tmp_path / "wandb"))
    args = ["logger=wandb", "checkpoints=all", "dataset=cqa", f"paths.data_dir={dsbs_root}", *TINY, "teacher.finetune=true",
            "teacher.finetune_trainer.max_steps=2", "teacher.finetune_trainer.val_check_interval=1", "teacher.finetune_batch_size=8"]
    out = train(tmp_path, *args, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = results_of(tmp_path)
    run_dir = Path(results["output_dir"])
    runs = runs_below(tmp_path)
    by_type = {r["job_type"]: r for rs in runs.values() for r in rs}
    assert set(by_type) == {"teacher-finetune", "extract", "train"}
    assert by_type["teacher-finetune"]["history"] > 0 and "train/loss" in by_type["teacher-finetune"]["summary"]  # its curves
    (cache_artifact,) = [name for name, kind in by_type["extract"]["artifacts"] if kind == "rationale-cache"]
    assert cache_artifact.startswith("rationales-cqa-train-tiny-")
    trained = by_type["train"]
    assert cache_artifact in json.loads(trained["config"]["inputs"])  # offline, the student names the cache it learned from
    assert [kind for name, kind in trained["artifacts"] if name.startswith("student-")] == ["model"]
    samples = [name for name, kind in trained["artifacts"] if "valsamples" in name]
    assert len(samples) == 2  # one table per validation (steps 2 and 4), not only the last
    assert (run_dir / "wandb_id.txt").read_text().strip() == trained["run_id"]

    # A killed job's rerun continues the same W&B run (here: the results removed, last.ckpt kept).
    (run_dir / "results.json").unlink()
    again = train(tmp_path, *args, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    runs = runs_below(tmp_path)
    assert len(runs[trained["run_id"]]) == 2  # two run files, one W&B run id

    # eval has its own job type and uses the exported student.
    out = command("eval.py", tmp_path, f"ckpt_path={results['exported_student']}", "dataset=cqa", f"paths.data_dir={dsbs_root}",
                  "dataset.max_rows=24", "logger=wandb", "threads=1", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    evals = [r for rs in runs_below(tmp_path).values() for r in rs if r["job_type"] == "eval"]
    assert len(evals) == 1 and "eval/test/acc" in evals[0]["summary"]
    assert json.loads(evals[0]["config"]["inputs"])[0].startswith("student-")


@pytest.mark.parametrize("logger", ["tensorboard", "mlflow"])
def test_tensorboard_and_mlflow_loggers_write_what_can_be_read_back(tmp_path, logger):
    """logger=tensorboard / logger=mlflow (a local SQLite store) beside the CSV log: the student's loss and
    validation accuracy read back with each tool's own reader."""
    done = train(tmp_path, f"logger={logger}", "dataset=cue_words", "method=finetune", *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    (results,) = results_of(tmp_path)
    run = Path(results["output_dir"])
    assert (run / "csv" / "metrics.csv").is_file()
    if logger == "tensorboard":
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        assert list((run / "tensorboard").glob("events.out.tfevents.*"))
        accumulator = EventAccumulator(str(run / "tensorboard"))
        accumulator.Reload()
        tags = accumulator.Tags()["scalars"]
        assert "train/loss" in tags and "val/acc" in tags
        assert [e.step for e in accumulator.Scalars("val/acc")] == [1, 3]  # validations after steps 2 and 4
    else:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
        (experiment,) = [e for e in client.search_experiments() if e.name.startswith("kdlight-")]
        (found,) = client.search_runs([experiment.experiment_id])
        assert "train/loss" in found.data.metrics and "val/acc" in found.data.metrics
        assert found.data.tags["method"] == "finetune" and found.info.run_name.startswith("cue_words-finetune-seed")

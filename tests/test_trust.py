"""Shared artifacts are data, never code: each way a checkpoint, run folder, cache or export could make
kdlight run something, tried with a harmless payload (it would only create a marker file). Each is
refused with one line naming the file and what was refused, exit 2, and nothing is written or imported."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.helpers import TINY, clean_env, train


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory) -> dict:
    """A finished tiny saliency run (checkpoints, .hydra, export) and its rationale cache, as someone would share them."""
    root = tmp_path_factory.mktemp("shared")
    done = train(root, *TINY, "dataset=cue_words", "method=saliency", "dataset.train_size=24", "logger=none")
    assert done.returncode == 0, done.stderr[-2000:]
    run = next((root / "outputs").rglob("results.json")).parent
    cache = next((root / "cache" / "rationales").glob("*/key.json")).parent
    return {"root": root, "run": run, "cache": cache}


def copy_of(path: Path, tmp_path: Path) -> Path:
    target = tmp_path / path.name
    shutil.copytree(path, target)
    return target


def console(tmp_path: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd or REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env=clean_env(tmp_path))


def one_error_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    return lines[0]


class Payload:
    """Unpickling this runs os.system: the classic checkpoint attack (here it only creates a file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_planted_in_a_checkpoint_is_refused_not_run(shared_run, tmp_path):
    import torch

    run = copy_of(shared_run["run"], tmp_path)
    marker = tmp_path / "PWNED-checkpoint"
    best = next((run / "checkpoints").glob("step*.ckpt"))
    checkpoint = torch.load(best, map_location="cpu", weights_only=True)
    checkpoint["extra"] = Payload(marker)
    torch.save(checkpoint, run / "checkpoints" / "last.ckpt")
    rows = tmp_path / "in.jsonl"
    rows.write_text('"alpha beta gamma"\n')

    line = one_error_line(console(tmp_path, "-m", "kdlight.commands.predict", str(run / "checkpoints" / "last.ckpt"), str(rows)))
    assert line.startswith(f"error: {run / 'checkpoints' / 'last.ckpt'}: refused to load") and "posix.system" in line
    evaluated = console(tmp_path, "eval.py", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", f"paths.log_dir={tmp_path / 'outputs'}")
    assert "refused to load" in one_error_line(evaluated)
    assert not marker.exists() and not (tmp_path / "outputs").exists()  # nothing ran, no eval folder


@pytest.mark.parametrize("planted", ["top", "nested"])
def test_a_target_planted_in_a_run_folders_config_is_refused_not_built(shared_run, tmp_path, planted):
    run = copy_of(shared_run["run"], tmp_path)
    marker = tmp_path / "PWNED-config"
    saved = run / ".hydra" / "config.yaml"
    config = yaml.safe_load(saved.read_text())
    write = {"_target_": "kdlight.utils.io.write_text", "path": str(marker), "text": "x"}
    if planted == "top":
        config["dataset"] = write
    else:  # the real dataset class, with a node inside it that Hydra would build first
        config["dataset"]["valid_size"] = write
    saved.write_text(yaml.safe_dump(config))

    line = one_error_line(console(tmp_path, "eval.py", f"ckpt_path={run / 'student'}", f"paths.log_dir={tmp_path / 'outputs'}"))
    assert line.startswith(f"error: {saved}: refused:")
    assert ("kdlight.utils.io.write_text" in line) and (("not one of kdlight's datasets" in line) == (planted == "top"))
    assert not marker.exists() and not (tmp_path / "outputs").exists()


def test_a_target_planted_in_a_caches_key_is_refused_not_built(shared_run, tmp_path):
    cache = copy_of(shared_run["cache"], tmp_path)
    marker = tmp_path / "PWNED-cache"
    key = json.loads((cache / "key.json").read_text())
    key["about"]["dataset_config"] = {"_target_": "kdlight.utils.io.write_text", "path": str(marker), "text": "x"}
    (cache / "key.json").write_text(json.dumps(key))

    done = console(tmp_path, "-m", "kdlight.reports.analysis", str(cache), "--out", str(tmp_path / "analysis"))
    line = one_error_line(done)
    assert line.startswith(f"error: {cache / 'key.json'}: refused:") and "kdlight.utils.io.write_text" in line
    assert not marker.exists()


def test_plugins_an_export_names_are_not_imported_and_its_folder_is_not_on_the_path(shared_run, tmp_path):
    export = copy_of(shared_run["run"] / "student", tmp_path)
    marker = tmp_path / "PWNED-export"
    fmt = json.loads((export / "kdlight.json").read_text())
    fmt["plugins"] = ["this"]  # importing it prints the Zen of Python
    (export / "kdlight.json").write_text(json.dumps(fmt))
    rows = tmp_path / "in.jsonl"
    rows.write_text('"alpha beta gamma"\n')

    done = console(tmp_path, "-m", "kdlight.commands.predict", str(export), str(rows))
    line = one_error_line(done)
    assert line == (f"error: {export / 'kdlight.json'}: refused to import plugins ['this']: kdlight imports only the plugins you name; "
                    "if you trust them, run again with --plugins this (or KDLIGHT_PLUGINS)")
    assert "Beautiful is better than ugly" not in done.stdout + done.stderr

    # a module file shipped in the folder, which `python -m` started there would import first
    (export / "kdlight.json").write_text(json.dumps({**fmt, "plugins": []}))
    (export / "json.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    done = console(tmp_path, "-m", "kdlight.commands.predict", ".", str(rows), cwd=export)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[0])["line"] == 1 and not marker.exists()


def test_an_export_with_pickled_weights_is_refused(shared_run, tmp_path):
    export = copy_of(shared_run["run"] / "student", tmp_path)
    (export / "model.safetensors").unlink()
    (export / "pytorch_model.bin").write_bytes(b"not read")
    rows = tmp_path / "in.jsonl"
    rows.write_text('"alpha"\n')
    line = one_error_line(console(tmp_path, "-m", "kdlight.commands.predict", str(export), str(rows)))
    assert line.startswith(f"error: {export / 'pytorch_model.bin'}: refused to load: pickled weights")


def test_the_runs_own_artifacts_still_load(shared_run, tmp_path):
    """The same loaders accept what kdlight itself wrote: the best checkpoint (weights only) and the run's dataset config."""
    from kdlight.commands.evaluate import load_student, run_dataset_config

    best = next((shared_run["run"] / "checkpoints").glob("step*.ckpt"))
    model, tokenizer, family, fmt = load_student(best)
    assert fmt["dataset"] == "cue_words"
    assert run_dataset_config(best)["_target_"] == "kdlight.data.CueWordsDataModule"


# ---------------------------------------------------------------- one set of checks for every entry point
ENTRY_POINTS = {
    "train.py": ["train.py", "dataset=cue_words", *TINY],
    "eval.py": ["eval.py", "ckpt_path=/nonexistent"],
    "kdlight-data": ["-m", "kdlight.data", "dataset=cue_words"],
    "kdlight-attribute": ["-m", "kdlight.commands.attribute", "dataset=cue_words", "teacher=tiny"],
    "kdlight-analyze": ["-m", "kdlight.reports.analysis", "/tmp"],
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_a_plugin_that_cannot_be_imported_is_one_line_at_every_entry_point(tmp_path, entry):
    done = subprocess.run([sys.executable, *ENTRY_POINTS[entry]], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env=clean_env(tmp_path, KDLIGHT_PLUGINS="nonexistent_plugin"))
    assert one_error_line(done).startswith("error: plugin module 'nonexistent_plugin' (from the kdlight.utils.plugins entry points, "
                                           "KDLIGHT_PLUGINS or the config's plugins list) cannot be imported")


@pytest.mark.parametrize("overrides, expected", [
    (["dataset=cue_words", "teacher=tiny", "teacher.quantization=4bit"], "error: teacher.quantization=4bit applies to a pretrained teacher"),
    (["dataset=cqa", "teacher=tiny", "dataset.root=/nonexistent"], "error: no data for cqa: dataset.root=/nonexistent does not exist"),
])
def test_kdlight_attribute_runs_train_pys_checks_before_any_work(tmp_path, overrides, expected):
    done = console(tmp_path, "-m", "kdlight.commands.attribute", *overrides, f"paths.cache_dir={tmp_path / 'cache'}")
    assert one_error_line(done).startswith(expected) and not (tmp_path / "cache").exists()
    trained = console(tmp_path, "train.py", *overrides, "method=saliency", "student=tiny", f"paths.log_dir={tmp_path / 'outputs'}")
    assert one_error_line(trained).startswith(expected)  # the same line from train.py


def test_a_bad_row_found_during_training_is_one_line(tmp_path):
    rows = tmp_path / "reviews.jsonl"
    rows.write_text("".join(json.dumps({"review": f"film {i}", "sentiment": ["negative", "positive"][i % 2]}) + "\n" for i in range(20))
                    + '{"review": "", "sentiment": "positive"}\n')
    done = console(tmp_path, "train.py", *TINY, "dataset=files", f"dataset.path={rows}", "dataset.fields.inputs=[review]",
                   "dataset.fields.label=sentiment", "dataset.labels=[negative,positive]", "dataset.templates.student='{review}'",
                   "dataset.templates.teacher='Review: {review}'", "method=finetune", f"paths.log_dir={tmp_path / 'outputs'}",
                   f"paths.cache_dir={tmp_path / 'cache'}")
    assert one_error_line(done) == (f"error: {rows}:21: field 'review' is empty or not text: ''. Fix the row, or set "
                                    "dataset.on_bad_row=skip to drop such rows.")


@pytest.mark.parametrize("line, expected", [
    (b'{"review": "truncated json\n', "error: line 1: not valid JSON (Unterminated string starting at)"),
    (b'"fine"\n"caf\xff"\n', "error: {rows}:2: invalid UTF-8 (invalid start byte at byte 4 of the line)"),
])
def test_kdlight_predict_names_a_truncated_row_and_bad_bytes_by_line(shared_run, tmp_path, line, expected):
    rows = tmp_path / "in.jsonl"
    rows.write_bytes(line)
    done = console(tmp_path, "-m", "kdlight.commands.predict", str(shared_run["run"] / "student"), str(rows))
    assert one_error_line(done).startswith(expected.format(rows=rows))

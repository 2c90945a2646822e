"""The training command line: bad configs, --help, a tiny run end to end (export, eval, predict), every
model family as the student, resume after a kill, a finished run left alone, failed runs recorded."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from kdlight import config
from tests.conftest import DSBS_ROOT, REPO_ROOT, needs_dsbs
from tests.helpers import HANG_GUARD, TINY, clean_env, command, results_of, train


@pytest.mark.parametrize(
    "override, message",
    [("k=-1", "k=-1 is not accepted"), ("k=abc", "k='abc' is not accepted"), ("alpha=1.5", "alpha=1.5 is not accepted"),
     ("k=2.5", "k=2.5 is not accepted"), ("attribution.unit=line", "attribution.unit='line' is not accepted"),
     ("attribution.show_rows=-1", "attribution.show_rows=-1 is not accepted; use an integer >= 0"),
     ("threads=0", "threads=0 is not accepted"), ("seed=x", "seed='x' is not accepted"),
     ("attribution=integrated_gradients attribution.n_steps=0", "attribution.n_steps=0 is not accepted"),
     ("dataset.task_word=middle", "dataset.task_word='middle' is not accepted; use one of ['before', 'after']"),
     ("student.alpha_schedule=step", "student.alpha_schedule='step' is not accepted; use one of ['constant', 'linear', 'cosine']"),
     ("student.alpha_end=2", "student.alpha_end=2 is not accepted; use a number with 0 <= alpha <= 1, or null (alpha)")],
)
def test_a_bad_value_fails_before_any_run_folder_without_a_traceback(tmp_path, override, message):
    out = train(tmp_path, *override.split(), "dataset=cqa", "debug=tiny")
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "cache").exists()


def test_a_bad_value_in_a_sweep_fails_before_any_job(tmp_path):
    out = train(tmp_path, "-m", "k=1,abc", "debug=tiny", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert out.returncode == 2 and "k='abc' is not accepted" in out.stderr and not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("flags", [[], ["--cfg", "job"]])
def test_a_config_group_typo_suggests_the_closest_public_option(tmp_path, flags):
    out = train(tmp_path, "dataset=anl1", *flags)
    from kdlight.config import group_options

    assert out.returncode == 2 and out.stderr.splitlines() == [
        f"error: dataset=anl1 is not an option of dataset; did you mean anli? options: {', '.join(group_options('dataset'))}"]
    out = train(tmp_path, "teacher=xyzzy", "debug=tinyy")
    assert out.returncode == 2 and "error: teacher=xyzzy is not an option of teacher; options: flan_t5_base," in out.stderr
    assert "error: debug=tinyy is not an option of debug; did you mean tiny? options: fast, tiny" in out.stderr
    assert " _pretrained" not in out.stderr and " _base" not in out.stderr and not (tmp_path / "outputs").exists()


def test_help_says_what_kdlight_is_and_its_commands(tmp_path):
    out = train(tmp_path, "--help")
    assert out.returncode == 0
    first = out.stdout.strip().splitlines()[0]
    assert first.startswith("kdlight: distil a large teacher's insight into a small student")
    assert "python eval.py" in out.stdout and "kdlight-predict" in out.stdout and "attribution:" in out.stdout
    assert "powered by Hydra" not in out.stdout.splitlines()[0]


# What the config check must not import: each "# lazy:" import in src/kdlight keeps one of these off its path
# (tests/test_imports.py).
HEAVY = {"torch", "transformers", "pytorch_lightning", "lightning_fabric", "torchmetrics", "peft", "captum", "datasets",
         "accelerate", "wandb", "matplotlib", "scipy", "tokenizers", "sentencepiece", "rich", "sklearn", "pandas"}


def imported_modules(stderr: str) -> set[str]:
    """Top-level packages a `python -X importtime` run imported."""
    return {line.split("|")[-1].strip().split(".")[0] for line in stderr.splitlines() if line.startswith("import time:")}


def test_offline_hub_models_fail_at_once_before_the_heavy_imports(tmp_path):
    """"Within seconds" without a clock: the command fails before torch, transformers or Lightning are imported."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "train.py", f"paths.log_dir={tmp_path / 'outputs'}", "dataset=cqa",
         "teacher=flan_t5_xl", "student=t5_v1_1_base"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=HANG_GUARD, env=clean_env(tmp_path),
    )
    assert out.returncode == 2 and "Cannot load the student model 'google/t5-v1_1-base'" in out.stderr
    assert "save_pretrained" in out.stderr and not (tmp_path / "outputs").exists()
    assert not HEAVY & imported_modules(out.stderr)
    assert "hydra" in imported_modules(out.stderr)


def test_a_wrong_data_folder_fails_before_torch_with_the_cpu_trainer(tmp_path):
    """trainer=cpu overrides the default trainer's ${kd_precision:}, which OmegaConf's merge resolves: on a
    machine without a GPU driver that must not import torch (it did: 4 s instead of 1)."""
    if not config._gpu_driver_absent():
        pytest.skip("a GPU driver is present: the precision needs torch here")
    nowhere = tmp_path / "nowhere"
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "train.py", f"paths.log_dir={tmp_path / 'outputs'}", "dataset=cqa",
         "teacher=tiny", "student=tiny", "trainer=cpu"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=HANG_GUARD, env=clean_env(tmp_path, KDLIGHT_DATA_DIR=str(nowhere)),
    )
    assert out.returncode == 2 and f"no data for cqa: dataset.root={nowhere} does not exist" in out.stderr
    assert not HEAVY & imported_modules(out.stderr)


def test_pushing_to_an_unreachable_hub_fails_before_training(tmp_path):
    out = train(tmp_path, "dataset=cqa", "debug=tiny", "export.push_to_hub=true")
    assert out.returncode == 2 and "export.push_to_hub=true" in out.stderr and not (tmp_path / "outputs").exists()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, dsbs_root_module):
    """`python train.py dataset=svamp ...` with tiny models on 24 real rows of each split."""
    tmp_path = tmp_path_factory.mktemp("run")
    out = train(tmp_path, "dataset=svamp", f"paths.data_dir={dsbs_root_module}", "k=3", *TINY)
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = results_of(tmp_path)
    return tmp_path, out, results


@pytest.fixture(scope="module")
def dsbs_root_module():
    return needs_dsbs("svamp/svamp_train.json")


@pytest.mark.dsbs
def test_a_tiny_run_writes_results_predictions_and_a_complete_export(tiny_run):
    tmp_path, out, results = tiny_run
    assert results["status"] == "finished"
    assert (results["dataset"], results["method"], results["attribution"], results["k"], results["alpha"]) == ("svamp", "saliency", "grad_x_input", 3, 0.5)
    assert results["split_sizes"] == {"train": 24, "valid": 24, "test": 24}
    assert results["steps"] == 4 and results["rationale_cache"] == "miss" and results["chance_acc"] is None
    assert 0.0 <= results["test_acc"] <= 1.0 and results["val_acc_best"] is not None
    run = Path(results["output_dir"])
    metrics = (run / "csv" / "metrics.csv").read_text()
    assert "train/loss_label" in metrics and "train/loss_rationale" in metrics and "val/acc" in metrics
    assert (run / "config_tree.log").read_text().startswith("config")
    assert f"config: {run / 'config_tree.log'} (print_config=true prints it here)" in out.stdout  # one line, not ~240
    assert "├── dataset" not in out.stdout
    assert len((run / "predictions-test.jsonl").read_text().splitlines()) == 24
    for name in ("README.md", "generation_config.json", "kdlight.json", "hf_pipeline.py", "model.safetensors"):
        assert (run / "student" / name).is_file(), name
    assert "RANDOM-initialised" in out.stdout + out.stderr


@pytest.mark.dsbs
def test_eval_reproduces_the_runs_test_accuracy_and_predict_equals_eval(tiny_run):
    tmp_path, _, results = tiny_run
    out = command("eval.py", tmp_path, f"ckpt_path={results['best_checkpoint']}", "threads=1")
    assert out.returncode == 0, out.stderr[-3000:]
    (metrics_path,) = (tmp_path / "outputs" / "eval").rglob("metrics.json")
    metrics = json.loads(metrics_path.read_text())
    assert metrics["acc"] == results["test_acc"] and metrics["examples"] == 24 and metrics["split"] == "test"
    eval_predictions = [json.loads(line) for line in (metrics_path.parent / "predictions-test.jsonl").read_text().splitlines()]
    run_predictions = [json.loads(line) for line in (Path(results["output_dir"]) / "predictions-test.jsonl").read_text().splitlines()]
    assert eval_predictions == run_predictions

    # The export evaluates the same way on another split.
    out = command("eval.py", tmp_path, f"ckpt_path={results['exported_student']}", "dataset=svamp", "dataset.max_rows=24",
                  f"paths.data_dir={DSBS_ROOT}", "split=valid", "threads=1")
    assert out.returncode == 0, out.stderr[-3000:]

    # kdlight-predict on the first 20 raw test rows gives eval's answers.
    rows = (DSBS_ROOT / "svamp" / "svamp_test.json").read_text().splitlines()[:20]
    predicted = subprocess.run([sys.executable, "-m", "kdlight.commands.predict", results["exported_student"], "-", "--threads", "1"],
                               cwd=REPO_ROOT, input="\n".join(rows) + "\n", capture_output=True, text=True, timeout=HANG_GUARD,
                               env=clean_env(tmp_path))
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    answers = [json.loads(line)["answer"] for line in predicted.stdout.splitlines()]
    assert answers == [p["prediction"] for p in eval_predictions[:20]]


@pytest.mark.dsbs
def test_predict_explains_reads_plain_text_and_names_a_bad_line(tiny_run, tmp_path):
    _, _, results = tiny_run
    lines = ['{"input": "Tom has 3 apples.\\nHow many apples?", "label": "( 3.0 + 0.0 )"}', "Tom has 5 pears. How many?", '"quoted text"']
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out = subprocess.run([sys.executable, "-m", "kdlight.commands.predict", results["exported_student"], str(path), "--explain"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=HANG_GUARD, env=clean_env(tmp_path))
    assert out.returncode == 0, out.stderr[-2000:]
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3] and all("rationale" in r and "answer" in r for r in records)
    assert records[1]["input"] == "Tom has 5 pears. How many?" and records[2]["input"] == "quoted text"
    path.write_text(lines[0] + "\n" + '{"input": ""}\n')
    out = subprocess.run([sys.executable, "-m", "kdlight.commands.predict", results["exported_student"], str(path)],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=HANG_GUARD, env=clean_env(tmp_path))
    assert out.returncode == 2 and "line 2: field 'input' is empty" in out.stderr and out.stdout == ""


@pytest.mark.dsbs
def test_rerunning_a_finished_command_retrains_nothing_and_leaves_its_folder_alone(tiny_run, dsbs_root):
    tmp_path, _, results = tiny_run
    run = Path(results["output_dir"])
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    out = train(tmp_path, "dataset=svamp", f"paths.data_dir={dsbs_root}", "k=3", *TINY)
    assert out.returncode == 0
    assert "already finished" in out.stdout + out.stderr and str(run / "results.json") in out.stdout + out.stderr
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before
    # the same folder asked for other settings (as a changed default would): refused, not reported as finished
    out = train(tmp_path, "dataset=svamp", f"paths.data_dir={dsbs_root}", "k=2", *TINY, f"hydra.run.dir='{run}'")
    assert out.returncode == 2 and "k 3 there, 2 now" in out.stderr and "already finished" not in out.stdout + out.stderr
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before


def test_a_finished_run_with_other_settings_is_refused_not_reported_as_this_commands(compose, tmp_path):
    """A sweep folder is named by its overrides: after a default changes (alpha here), the same command finds the
    old run's folder. Its results are another run's, so the command stops and says which settings differ."""
    from kdlight.config import ConfigError
    from kdlight.identity import finished_run, run_identity

    cfg = compose(["method=saliency", "alpha=0.5"])
    folder = tmp_path / "saliency-seed=0"
    folder.mkdir()
    assert finished_run(cfg, folder) is None
    (folder / "results.json").write_text(json.dumps({"status": "finished", **run_identity(cfg), "test_acc": 0.6}))
    assert finished_run(cfg, folder)["test_acc"] == 0.6
    (folder / "results.json").write_text(json.dumps({"status": "finished", **run_identity(cfg), "alpha": 0.3, "test_acc": 0.6}))
    with pytest.raises(ConfigError, match=r"saliency-seed=0 holds a finished run with other settings \(alpha 0.3 there, 0.5 now\)"):
        finished_run(cfg, folder)


@pytest.mark.slow  # 10-35 s: CI runs it (.ci/run includes the slow tests)
def test_early_stopping_ends_a_run_that_stops_improving(tmp_path, release_root):
    out = train(tmp_path, "dataset=cqa", f"paths.data_dir={release_root}", *TINY, "callbacks=early_stopping",
                "callbacks.early_stopping.patience=1", "trainer.max_steps=60", "trainer.val_check_interval=2", "student.optimizer.lr=1e-9")
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = results_of(tmp_path)
    assert results["status"] == "finished" and results["steps"] == 4  # validations at 2 and 4; no improvement at 4 (lr ~ 0)


@pytest.mark.dsbs
@pytest.mark.parametrize("method", ["finetune", "step_by_step", "random"])
def test_other_methods_run(tmp_path, dsbs_root, method):
    out = train(tmp_path, "dataset=svamp", f"paths.data_dir={dsbs_root}", f"method={method}", *TINY)
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = results_of(tmp_path)
    assert results["method"] == method and results["rationale_cache"] is None and results["attribution"] is None
    assert results["alpha"] == (0.0 if method == "finetune" else 0.5)
    metrics = (Path(results["output_dir"]) / "csv" / "metrics.csv").read_text()
    assert ("train/loss_rationale" in metrics) == (method != "finetune")


STUDENT_FAMILIES = {
    "t5": [],
    "bart": ["student.model.architecture=bart", "student.tokenizer.kind=bpe"],
    "bert2bert": ["student.model.architecture=bert2bert", "student.tokenizer.kind=wordpiece"],
    "gpt2": ["student=tiny_causal"],
    "llama": ["student=tiny_causal", "student.model.architecture=llama", "student.tokenizer.add_bos=true"],
    "gpt2-task-word-after": ["student=tiny_causal", "dataset.task_word=after"],  # both tasks share x's computation
}


@pytest.mark.dsbs
@pytest.mark.parametrize("family", [family if family == "t5" else pytest.param(family, marks=pytest.mark.slow)  # the others in CI
                                    for family in sorted(STUDENT_FAMILIES)])
def test_a_student_of_every_family_trains_on_32_svamp_rows_and_exports(tmp_path, dsbs_root, family):
    out = train(tmp_path, "dataset=svamp", f"paths.data_dir={dsbs_root}", "method=random", *TINY, "dataset.max_rows=32",
                *STUDENT_FAMILIES[family])
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = results_of(tmp_path)
    assert results["status"] == "finished" and results["split_sizes"]["train"] == 32 and results["steps"] == 4
    export = json.loads((Path(results["exported_student"]) / "kdlight.json").read_text())
    assert export["family"] == ("causal" if family.startswith(("gpt2", "llama")) else "seq2seq")
    assert export["task_word"] == ("after" if family.endswith("after") else "before")
    # The export reloads and predicts what the checkpoint predicted in the run's test.
    test = [json.loads(line) for line in (Path(results["output_dir"]) / "predictions-test.jsonl").read_text().splitlines()]
    rows = (dsbs_root / "svamp" / "svamp_test.json").read_text().splitlines()[:8]
    predicted = subprocess.run([sys.executable, "-m", "kdlight.commands.predict", results["exported_student"], "-"], cwd=REPO_ROOT,
                               input="\n".join(rows) + "\n", capture_output=True, text=True, timeout=HANG_GUARD, env=clean_env(tmp_path))
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    if results["best_checkpoint"].endswith(f"step{results['steps']}-acc{results['val_acc_best']:.4f}.ckpt"):
        assert [json.loads(line)["answer"] for line in predicted.stdout.splitlines()] == [p["prediction"] for p in test[:8]]


def checkpoint_step(path: Path) -> int | None:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)["global_step"]
    except Exception:  # noqa: BLE001 - being written right now
        return None


def test_a_killed_run_resumes_from_its_latest_state_and_logs_every_step_once(tmp_path, release_root):
    """Killed after its 3rd validation while the best val/acc was at the 1st (a random student scores 0
    throughout, and only a strictly better score replaces the best)."""
    args = ["dataset=cqa", f"paths.data_dir={release_root}", "method=random", *TINY, "trainer.max_steps=30",
            "trainer.val_check_interval=2", "dataset.max_rows=24"]
    cmd = [sys.executable, "train.py", f"paths.log_dir={tmp_path / 'outputs'}", f"paths.cache_dir={tmp_path / 'cache'}", *args]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env(tmp_path))
    step, deadline = None, time.monotonic() + HANG_GUARD
    while proc.poll() is None and time.monotonic() < deadline:
        last = list((tmp_path / "outputs").rglob("checkpoints/last.ckpt"))
        step = checkpoint_step(last[0]) if last else None
        if step is not None and step >= 6:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)  # a real kill: no cleanup, no results.json
    proc.wait()
    assert step is not None and step >= 6, "the run ended before its 3rd validation"
    assert not results_of(tmp_path)
    (last,) = list((tmp_path / "outputs").rglob("checkpoints/last.ckpt"))
    killed_at = checkpoint_step(last)
    best = [p for p in last.parent.glob("step*.ckpt")]
    assert len(best) == 1 and best[0].name.startswith("step2-")  # the best is still the first validation's
    resumed = train(tmp_path, *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {last} (step {killed_at};" in resumed.stdout + resumed.stderr
    (results,) = results_of(tmp_path)
    assert results["steps"] == 30
    with open(last.parent.parent / "csv" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    logged = Counter(int(float(r["step"])) for r in rows if r.get("train/loss"))
    assert sorted(logged) == list(range(30)) and set(logged.values()) == {1}  # every step once, the killed run's included


def test_a_failed_run_names_its_dataset_in_results(tmp_path):
    """A failure inside the run (a malformed row, found while reading) leaves a failed results.json; a
    configuration mistake (a missing folder) is refused before any run folder exists."""
    for split in ("train", "test"):
        (tmp_path / "broken" / "cqa").mkdir(parents=True, exist_ok=True)
        (tmp_path / "broken" / "cqa" / f"cqa_{split}.json").write_text("{not json\n")
    out = train(tmp_path, "dataset=cqa", "debug=tiny", "method=finetune", f"dataset.root={tmp_path / 'broken'}", "threads=1")
    assert out.returncode != 0
    (results,) = results_of(tmp_path)
    assert results["status"] == "failed" and results["dataset"] == "cqa" and "cqa_train.json" in results["error"]
    out = train(tmp_path / "missing", "dataset=cqa", "debug=tiny", f"dataset.root={tmp_path / 'no-data'}")
    assert out.returncode == 2 and "no data for cqa" in out.stderr and not (tmp_path / "missing" / "outputs").exists()


def test_finetuned_teacher_stage_runs_once_and_run_returns_the_metric(compose, release_root, tmp_path):
    from kdlight.run import run

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
    again = compose([*overrides, "k=2", "resume=false"])
    run(again)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["rationale_cache"] == "hit" and results["teacher_stage"]["finetune"]["path"] == finetune["path"]


@pytest.mark.parametrize("steps, interval, validated_at", [(3, 2, [2, 3]), (1, 2, [1]), (4, 2, [2, 4])])
def test_the_last_step_is_always_validated(tmp_path, release_root, steps, interval, validated_at):
    """Before: a run shorter than val_check_interval never validated (no best checkpoint, null val_acc_best)."""
    out = train(tmp_path, "dataset=cqa", f"paths.data_dir={release_root}", *TINY, f"trainer.max_steps={steps}",
                f"trainer.val_check_interval={interval}")
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = results_of(tmp_path)
    assert results["steps"] == steps and results["val_acc_best"] is not None and results["best_checkpoint"]
    with open(Path(results["output_dir"]) / "csv" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted({int(r["step"]) + 1 for r in rows if r.get("val/acc")}) == validated_at


def test_a_run_that_failed_after_training_resumes_at_its_last_step_with_its_best_validation(tmp_path):
    """Trained, then failed (e.g. while writing the export): the same command resumes at the last step,
    trains no further, and still reports the best val/acc the checkpoints kept. (checkpoints=all: a run that
    failed before its end still has last.ckpt, which the default policy removes only once a run has finished.)"""
    args = ["debug=tiny", "dataset=cue_words", "method=finetune", "threads=1", "checkpoints=all"]
    out = train(tmp_path, *args)
    assert out.returncode == 0, out.stderr[-3000:]
    (first,) = results_of(tmp_path)
    path = Path(first["output_dir"]) / "results.json"
    path.write_text(json.dumps({"status": "failed", "error": "OSError: disk full", "output_dir": first["output_dir"]}))
    again = train(tmp_path, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from" in again.stdout + again.stderr
    resumed = json.loads(path.read_text())
    assert resumed["status"] == "finished" and resumed["steps"] == first["steps"]
    assert resumed["val_acc_best"] == first["val_acc_best"] and resumed["val_acc_best"] is not None
    assert resumed["test_acc"] == first["test_acc"]


@pytest.mark.parametrize("policy", ["best", "all"])
def test_a_finished_run_keeps_its_best_weights_once(tmp_path, policy):
    """checkpoints=best (the default): no last.ckpt and no optimiser state once the run is finished and
    exported, and the best checkpoint still evaluates to the run's test accuracy; checkpoints=all keeps both."""
    import torch

    done = train(tmp_path, "dataset=cue_words", "method=finetune", *TINY, "trainer.max_steps=6", f"checkpoints={policy}")
    assert done.returncode == 0, done.stderr[-3000:]
    (results,) = results_of(tmp_path)
    folder = Path(results["output_dir"]) / "checkpoints"
    names = sorted(p.name for p in folder.glob("*.ckpt"))
    best = Path(results["best_checkpoint"])
    state = torch.load(best, map_location="cpu", weights_only=True)
    assert results["checkpoints"]["policy"] == policy and results["checkpoints"]["kept"] == names
    assert results["checkpoints"]["bytes"] == sum((folder / n).stat().st_size for n in names)
    if policy == "best":
        assert names == [best.name] and "optimizer_states" not in state and results["checkpoints"]["removed"] == ["last.ckpt"]
        evaluated = command("eval.py", tmp_path, f"ckpt_path={best}", "threads=1")
        assert evaluated.returncode == 0, evaluated.stderr[-2000:]
        (metrics_path,) = (tmp_path / "outputs" / "eval").rglob("metrics.json")
        assert json.loads(metrics_path.read_text())["acc"] == pytest.approx(results["test_acc"])
        # the eval folder says which run and what of it was evaluated (not the checkpoint path spelled out)
        assert metrics_path.parent.name.startswith("cue_words-finetune-") and metrics_path.parent.name.endswith(best.stem)
    else:
        assert "last.ckpt" in names and "optimizer_states" in state

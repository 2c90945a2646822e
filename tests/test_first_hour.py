"""What a new user meets in the first hour: wrong paths, missing data, Ctrl-C, typos (each the exact
line printed, the exit code, and no run folder for a configuration mistake)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from kdlight.utils.io import folder_lock
from tests.conftest import REPO_ROOT
from tests.helpers import HANG_GUARD, clean_env, results_of, train

EXPECTED_MODEL = "expected a save_pretrained folder: config.json and the weights, model.safetensors or pytorch_model.bin"


def errors(out: subprocess.CompletedProcess) -> list[str]:
    return out.stderr.strip().splitlines()


@pytest.mark.parametrize("extra, offline", [(["debug=tiny"], False), (["teacher=flan_t5_base", "student=flan_t5_small"], True)])
def test_missing_model_folders_are_reported_together_as_missing(tmp_path, extra, offline):
    env = clean_env(tmp_path, **({"HF_HUB_OFFLINE": "1"} if offline else {}))
    out = train(tmp_path, *extra, "dataset=cue_words", "method=saliency", "teacher.model.name_or_path=/models/does-not-exist",
                "student.model.name_or_path=/models/nor-this", env=env)
    assert out.returncode == 2 and errors(out) == [
        "error: 2 paths of this command are wrong:",
        f"  - student.model.name_or_path=/models/nor-this: no such folder ({EXPECTED_MODEL})",
        f"  - teacher.model.name_or_path=/models/does-not-exist: no such folder ({EXPECTED_MODEL})",
    ]
    assert not (tmp_path / "outputs").exists()


def test_a_folder_without_a_config_and_an_uncached_id_offline_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    out = train(tmp_path, "dataset=cue_words", "method=finetune", "student=flan_t5_small",
                f"student.model.name_or_path={tmp_path / 'empty'}", env=clean_env(tmp_path, HF_HUB_OFFLINE="1"))
    assert out.returncode == 2 and errors(out) == [
        f"error: student.model.name_or_path={tmp_path / 'empty'}: the folder has no config.json ({EXPECTED_MODEL})"]
    out = train(tmp_path, "dataset=cue_words", "method=finetune", "student=flan_t5_small", env=clean_env(tmp_path, HF_HUB_OFFLINE="1"))
    assert out.returncode == 2 and errors(out)[0].startswith(
        "error: student.model.name_or_path=google/flan-t5-small is neither a local folder nor in the Hugging Face cache")
    assert not (tmp_path / "outputs").exists()


def test_debug_tiny_takes_a_model_folder_like_any_run(tmp_path):
    from kdlight.models.tiny import tiny_model, tiny_tokenizer

    folder = tmp_path / "my-t5"
    tokenizer = tiny_tokenizer(["alpha beta gamma delta", "class one two three four"] * 20, vocab_size=200, cache_dir=str(tmp_path))
    tokenizer.save_pretrained(str(folder))
    tiny_model(tokenizer, d_model=32, d_ff=64, num_layers=1, num_heads=2).save_pretrained(str(folder))
    out = train(tmp_path, "debug=tiny", "dataset=cue_words", "method=finetune", f"student.model.name_or_path={folder}",
                "trainer.max_steps=2", "threads=1")
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = results_of(tmp_path)
    assert results["status"] == "finished" and results["student"] == "my-t5"


def test_missing_data_is_one_line_naming_the_folder_and_both_settings(tmp_path):
    nowhere = tmp_path / "nowhere"
    for how, env in ((["dataset=cqa"], clean_env(tmp_path, KDLIGHT_DATA_DIR=str(nowhere))),
                     (["dataset=cqa", f"paths.data_dir={nowhere}"], None)):
        out = train(tmp_path, "debug=tiny", *how, env=env)
        assert out.returncode == 2 and errors(out) == [
            f"error: no data for cqa: dataset.root={nowhere} does not exist (kdlight looks there for cqa/cqa_train.json and "
            "the other files of the step-by-step release); point kdlight at the release with "
            "KDLIGHT_DATA_DIR=/path/to/dsbs or paths.data_dir=/path/to/dsbs"]
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow  # 10-35 s: CI runs it (.ci/run includes the slow tests)
def test_a_release_without_anli_train_says_stand_in_first(tmp_path):
    release = tmp_path / "dsbs"
    (release / "anli1").mkdir(parents=True)
    for split in ("valid", "test"):
        (release / "anli1" / f"anli1_{split}.json").write_text("")
    out = train(tmp_path, "debug=tiny", "dataset=anli", f"paths.data_dir={release}")
    assert out.returncode == 2 and len(errors(out)) == 1
    line = errors(out)[0]
    assert line.startswith(f"error: missing file {release / 'anli1' / 'anli1_train.json'}: the anli train split is not in {release}.")
    assert line.endswith("or train on the valid split as a stand-in with dataset.train_stand_in=valid.")
    assert not (tmp_path / "outputs").exists()


def test_ctrl_c_says_where_the_run_stopped_and_exits_130(tmp_path):
    """A real SIGINT once the first checkpoint exists; the same command then resumes from it."""
    command = [sys.executable, "train.py", "debug=tiny", "dataset=cue_words", "method=finetune", "trainer.max_steps=100000",
               "trainer.val_check_interval=2", "threads=1", f"paths.log_dir={tmp_path / 'outputs'}", f"paths.cache_dir={tmp_path / 'cache'}"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=clean_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + HANG_GUARD
    while not list((tmp_path / "outputs").rglob("last.ckpt")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=600)  # stopping takes seconds; a lost interrupt would train 100,000 steps
    assert process.returncode == 130, stderr[-3000:]
    (line,) = [line for line in stderr.splitlines() if "Ctrl-C" in line]
    (run,) = {p.parent.parent for p in (tmp_path / "outputs").rglob("last.ckpt")}
    assert line.startswith("interrupted (Ctrl-C) at training step ") and " of 100000 in " in line and str(run) in line
    assert line.split("; ")[1].startswith("re-running the same command resumes from checkpoints/last.ckpt (step ")
    assert "Traceback" not in stderr and not (run / "results.json").exists()


def test_a_ctrl_c_that_lands_in_a_finaliser_still_stops_the_run():
    """The CI run where the SIGINT hit a regex object's __del__: Python printed "Exception ignored" and the
    run trained on to its step limit. Here the signal arrives inside a __del__, deterministically."""
    from kdlight.utils.runtime import ctrl_c_recorded

    class PressedWhileCollected:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)
            sum(range(10))  # the handler runs here, inside the finaliser

    hook, handler, reached_the_end = sys.unraisablehook, signal.getsignal(signal.SIGINT), False  # SIG_IGN under `nohup ... &`
    with ctrl_c_recorded() as pressed, pytest.raises(KeyboardInterrupt):
        obj = PressedWhileCollected()
        del obj
        deadline = time.monotonic() + 10  # the run going on after the swallowed interrupt
        while time.monotonic() < deadline:
            time.sleep(0.001)
        reached_the_end = True
    assert pressed.is_set() and not reached_the_end
    assert signal.getsignal(signal.SIGINT) is handler and sys.unraisablehook is hook  # both as they were


def test_lock_files_stay_out_of_globs_over_the_cache_folders(tmp_path):
    folder = tmp_path / "rationales" / "cqa-train-0123"
    with folder_lock(folder):
        folder.mkdir()
        assert sorted(p.name for p in (tmp_path / "rationales").glob("cqa-train-*")) == ["cqa-train-0123"]
        assert (tmp_path / "rationales" / ".locks" / "cqa-train-0123.lock").exists()



def test_wrong_model_folders_and_missing_data_come_in_one_message(tmp_path):
    nowhere = tmp_path / "nowhere"
    out = train(tmp_path, "dataset=cqa", "method=saliency", "teacher=flan_t5_base", "teacher.model.name_or_path=/models/t",
                "student=flan_t5_small", "student.model.name_or_path=/models/s", env=clean_env(tmp_path, KDLIGHT_DATA_DIR=str(nowhere)))
    lines = errors(out)
    assert out.returncode == 2 and lines[0] == "error: 3 paths of this command are wrong:" and len(lines) == 4
    assert lines[1].startswith("  - student.model.name_or_path=/models/s: no such folder")
    assert lines[3].startswith(f"  - no data for cqa: dataset.root={nowhere} does not exist") and "Traceback" not in out.stderr


def test_a_checkout_whose_configs_are_not_the_ones_in_use_is_named(tmp_path):
    from kdlight.config import config_dir, other_checkout_warning

    clone = tmp_path / "clone"
    (clone / "conf").mkdir(parents=True)
    (clone / "conf" / "train.yaml").write_text("defaults: []\n")
    (clone / "pyproject.toml").write_text('[project]\nname = "kdlight"\n')
    (clone / "src").mkdir()
    warning = other_checkout_warning(clone / "src")
    assert warning == (f"note: the configs come from {config_dir().resolve()} (the installed kdlight), not from this checkout's "
                       f"{clone / 'conf'}; to use this checkout, pip install -e {clone} or set KDLIGHT_CONFIG_DIR={clone / 'conf'}")
    assert other_checkout_warning(REPO_ROOT) is None and other_checkout_warning(tmp_path) is None
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KDLIGHT_CONFIG_DIR", str(config_dir()))  # chosen on purpose: nothing to say
        assert other_checkout_warning(clone / "src") is None


def test_the_small_lines_of_the_first_hour(tmp_path):
    """kdlight-predict on a missing path names the path (not an argument it does not have); kdlight-data --help
    prints its usage and a look at a dataset shows one rendered example of each template; --explain on a
    student trained without a rationale task says its text was never learned."""
    import json

    from tests.helpers import TINY

    def run(*args, stdin=None):
        return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=HANG_GUARD,
                              env=clean_env(tmp_path), input=stdin)

    missing = run("-m", "kdlight.commands.predict", str(tmp_path / "nowhere"), "-")
    assert missing.returncode == 2 and errors(missing) == [
        f"error: {tmp_path / 'nowhere'} does not exist; pass <run>/checkpoints/<name>.ckpt or <run>/student"]
    usage = run("-m", "kdlight.data", "--help")
    assert usage.returncode == 0 and usage.stdout.startswith("Look at a dataset before spending a GPU day on it.")
    looked = run("-m", "kdlight.data", "dataset=cue_words", f"paths.cache_dir={tmp_path / 'cache'}")
    example = json.loads(looked.stdout)["rendered_example"]
    assert example["teacher"].startswith("Which class do the words point to?\nText: ") and example["student"] in example["teacher"]
    done = train(tmp_path, "dataset=cue_words", "method=finetune", *TINY)
    assert done.returncode == 0, done.stderr[-2000:]
    (results,) = results_of(tmp_path)
    explained = run("-m", "kdlight.commands.predict", results["exported_student"], "-", "--explain", stdin='"alpha beta"\n')
    assert explained.returncode == 0 and errors(explained)[-1] == (
        "note: this student was trained without a rationale task (alpha 0, e.g. method=finetune): its --explain text was never "
        "learned and explains nothing")

"""Plugins from a module outside the package (kdlight.utils.plugins): an attribution method, a task with its
dataset config, a model family and a training method, registered by a module in a temporary folder,
used by the real command line with no edit to kdlight; the built-ins register the same way."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import write_jsonl
from tests.helpers import clean_env, results_of, train

PLUGIN = '''
"""A kdlight plugin: a yes/no task, an attribution method and a token-classifier family."""
from pathlib import Path

import torch

from kdlight.attribution import AttributionMethod, AttributionResult, register_method
from kdlight.attribution.base import reduce_hidden
from kdlight.data.tasks import BadRow, Example, PalmParse, Task, _TextBuilder, register_task
from kdlight.families.base import register_family
from kdlight.families.encoder import SequenceClassificationFamily

CONFIG_DIR = Path(__file__).parent / "yesno_conf"


@register_method
class InputNorm(AttributionMethod):
    """How large each input embedding is: no gradient at all (a baseline a reviewer asks for)."""
    name = "input_norm"

    def __call__(self, scorer, batch):
        with torch.no_grad():
            embeds = scorer.embed(batch.input_ids)
        scores = reduce_hidden(embeds, self.aggregate) * batch.attention_mask
        return AttributionResult(scores.float())


@register_task
class YesNoTask(Task):
    name = "yesno"
    release_dir = "yesno"
    release_splits = ("train", "valid", "test")
    label_set = ("yes", "no")

    def example_from_row(self, row, index):
        if not isinstance(row.get("question"), str) or row.get("answer") not in self.label_set:
            raise BadRow(f"a yesno row needs a question and an answer yes or no: {row!r:.60}")
        return Example(f"yesno-{index}", {"question": row["question"]}, row["answer"])

    def render_student(self, example, eos_token="</s>"):
        return _TextBuilder().content(example.fields["question"]).build()

    def render_teacher(self, example):
        return _TextBuilder().template("Question: ").content(example.fields["question"]).template("\\nYes or no?").build()

    def parse_palm(self, completion):
        return PalmParse(None, None)


class TokenClassificationFamily(SequenceClassificationFamily):
    name = "token_classification"
    head = "ForTokenClassification"


register_family(TokenClassificationFamily())
'''

METHOD_YAML = """\
# A plugin's attribution method: the size of each input embedding.
defaults:
  - /attribution/_shared@_here_
  - _self_
method: input_norm
"""

DATASET_YAML = """\
# A plugin's dataset: yes/no questions in the release layout under root.
defaults:
  - /dataset/_release@_here_
  - _self_
_target_: kdlight.data.KDDataModule
task: yesno
"""


def write_plugin(folder: Path) -> Path:
    (folder / "yesno_conf" / "attribution").mkdir(parents=True)
    (folder / "yesno_conf" / "dataset").mkdir(parents=True)
    (folder / "kd_yesno_plugin.py").write_text(textwrap.dedent(PLUGIN))
    (folder / "yesno_conf" / "attribution" / "input_norm.yaml").write_text(METHOD_YAML)
    (folder / "yesno_conf" / "dataset" / "yesno.yaml").write_text(DATASET_YAML)
    rows = [{"question": f"is {w} {c}?", "answer": "yes" if c == "warm" else "no"}
            for w in ("soup", "tea", "ice", "snow", "sun", "rain") for c in ("warm", "cold", "wet", "dry")]
    for split in ("train", "valid", "test"):
        write_jsonl(folder / "data" / "yesno" / f"yesno_{split}.json", rows)
    return folder


def test_a_plugin_method_and_dataset_train_through_the_command_line(tmp_path):
    folder = write_plugin(tmp_path / "plugin")
    env = clean_env(tmp_path, PYTHONPATH=str(folder), KDLIGHT_PLUGINS="kd_yesno_plugin")
    out = train(tmp_path, "debug=tiny", "dataset=yesno", f"dataset.root={folder / 'data'}", "attribution=input_norm", "method=saliency",
                "k=1", "threads=1", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = results_of(tmp_path)
    assert (results["dataset"], results["attribution"], results["student_kind"]) == ("yesno", "input_norm", "dual_task")
    exported = json.loads((Path(results["exported_student"]) / "kdlight.json").read_text())
    assert exported["dataset"] == "yesno"
    # a typo in a plugin's option is told from kdlight's and the plugin's options together
    out = train(tmp_path, "dataset=yesnoo", env=env)
    assert out.returncode == 2 and "did you mean yesno" in out.stderr and "cue_words" in out.stderr


TRAINING_METHOD_PLUGIN = '''
"""A kdlight plugin training method: soft-label KD whose temperature falls linearly over the training
steps (the teacher in every step, its prompts as a train column: kdlight.methods.logit_kd's seams)."""
from pathlib import Path

import torch

from kdlight.methods import TrainingMethod, register_training_method
from kdlight.methods.logit_kd import LogitDistillation

CONFIG_DIR = Path(__file__).parent / "annealed_conf"


@register_training_method
class AnnealedKD(TrainingMethod):
    name = "annealed_kd"


class AnnealedDistillation(LogitDistillation):
    method_name = "annealed_kd"

    def __init__(self, start: float, end: float, steps: int, weight: float = 0.5):
        super().__init__(temperature=start, weight=weight)
        self.start, self.end, self.steps, self.calls = float(start), float(end), int(steps), 0

    def label_losses(self, model, family, batch):
        self.temperature = self.start + (self.end - self.start) * min(self.calls / max(self.steps - 1, 1), 1.0)
        self.calls += 1
        return {**super().label_losses(model, family, batch), "temperature": torch.tensor(self.temperature)}
'''

TRAINING_METHOD_YAML = """\
# A plugin's training method: soft-label KD with the temperature annealed from 4 to 1 over the steps.
defaults:
  - _base
  - _self_
name: annealed_kd
alpha: 0.0
rationale: null
distillation:
  _target_: kd_annealed_plugin.AnnealedDistillation
  start: 4.0
  end: 1.0
  steps: ${trainer.max_steps}
"""


def test_a_plugin_training_method_trains_through_the_command_line_and_is_listed(tmp_path):
    """One module and one YAML outside kdlight: the method trains through train.py (its teacher in every
    step, its temperature logged as it falls), is listed by --help, suggested for a typo and reported."""
    folder = tmp_path / "plugin"
    (folder / "annealed_conf" / "method").mkdir(parents=True)
    (folder / "kd_annealed_plugin.py").write_text(textwrap.dedent(TRAINING_METHOD_PLUGIN))
    (folder / "annealed_conf" / "method" / "annealed_kd.yaml").write_text(TRAINING_METHOD_YAML)
    env = clean_env(tmp_path, PYTHONPATH=str(folder), KDLIGHT_PLUGINS="kd_annealed_plugin")
    out = train(tmp_path, "debug=tiny", "dataset=cue_words", "method=annealed_kd", "trainer.max_steps=4", "trainer.log_every_n_steps=1",
                "threads=1", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = results_of(tmp_path)
    assert (results["status"], results["method"], results["teacher"], results["attribution"]) == ("finished", "annealed_kd", "tiny", None)
    import csv

    rows = list(csv.DictReader((Path(results["output_dir"]) / "csv" / "metrics.csv").open()))
    temperatures = [float(r["train/temperature"]) for r in rows if r.get("train/temperature")]
    assert temperatures[0] == pytest.approx(4.0) and temperatures[-1] == pytest.approx(1.0) and temperatures == sorted(temperatures, reverse=True)
    assert any(r.get("train/loss_kd") for r in rows)  # the inherited soft term ran with the teacher in the step
    import subprocess

    from tests.helpers import REPO_ROOT

    helped = subprocess.run([sys.executable, "train.py", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    method_line = next(line for line in helped.stdout.splitlines() if line.strip().startswith("method:"))
    assert "annealed_kd" in method_line and "finetune" in method_line
    typo = train(tmp_path, "method=annealed_k", env=env)
    assert typo.returncode == 2 and "did you mean annealed_kd" in typo.stderr
    report = subprocess.run([sys.executable, "-m", "kdlight.reports.report", str(tmp_path / "outputs"), "--out", str(tmp_path / "report")],
                            capture_output=True, text=True, env=env)
    assert report.returncode == 0, report.stderr[-2000:]
    assert "annealed_kd" in (tmp_path / "report" / "table.md").read_text()


def test_without_the_plugin_its_options_do_not_exist(tmp_path):
    out = train(tmp_path, "debug=tiny", "dataset=yesno")
    assert out.returncode == 2 and "dataset=yesno is not an option of dataset" in out.stderr


def test_a_plugin_that_cannot_be_imported_is_named(tmp_path):
    out = train(tmp_path, "debug=tiny", "dataset=cue_words", env=clean_env(tmp_path, KDLIGHT_PLUGINS="no_such_plugin"))
    assert out.returncode == 2 and "plugin module 'no_such_plugin'" in out.stderr and "cannot be imported" in out.stderr


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    folder = write_plugin(tmp_path / "plugin")
    monkeypatch.syspath_prepend(str(folder))
    from kdlight.attribution import METHODS
    from kdlight.data.tasks import TASKS
    from kdlight.families import FAMILIES

    before = {"methods": dict(METHODS), "tasks": dict(TASKS), "families": dict(FAMILIES)}
    module = importlib.import_module("kd_yesno_plugin")
    yield module
    sys.modules.pop("kd_yesno_plugin", None)
    for registry, saved in ((METHODS, before["methods"]), (TASKS, before["tasks"]), (FAMILIES, before["families"])):
        registry.clear()
        registry.update(saved)


def test_a_plugin_family_claims_its_architecture_and_no_other(plugin_module):
    from transformers import BertConfig, BertForSequenceClassification, BertForTokenClassification

    from kdlight.families import FAMILIES, family_of

    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, num_labels=2)
    assert family_of(BertForTokenClassification(config)) is FAMILIES["token_classification"]
    assert family_of(BertForSequenceClassification(config)).name == "sequence_classification"  # the built-in still claims its own


def test_registering_a_second_thing_under_a_taken_name_is_refused(plugin_module):
    from kdlight.attribution import register_method
    from kdlight.attribution.grad_x_input import GradXInput

    class Impostor(GradXInput):
        name = "input_norm"

    with pytest.raises(ValueError, match=r"attribution method 'input_norm' is registered twice: by kd_yesno_plugin.InputNorm and by"):
        register_method(Impostor)


def test_the_built_ins_are_what_their_packages_register():
    """No list of built-ins is kept: the registries hold what kdlight.attribution's and kdlight.families'
    modules register, and every registered attribution method and task has its config file."""
    from kdlight.attribution import METHODS
    from kdlight.config import group_options
    from kdlight.data.tasks import TASKS
    from kdlight.families import FAMILIES
    from kdlight.methods import TRAINING_METHODS

    assert set(METHODS) <= set(group_options("attribution")) and set(TASKS) <= set(group_options("dataset"))
    assert set(TRAINING_METHODS) <= set(group_options("method"))
    assert {"seq2seq", "causal", "sequence_classification", "multiple_choice"} <= set(FAMILIES)


def readme_block(marker: str) -> str:
    """The bash block that follows `<!-- marker ... -->` in the README, as a user would copy it."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    after = text[text.index(f"<!-- {marker}"):]
    return after[after.index("```bash\n") + len("```bash\n"):after.index("\n```", after.index("```bash\n"))]


def test_the_readmes_plugin_walkthrough_runs_as_written_from_an_empty_folder(tmp_path):
    """The Plugins section's commands, verbatim, with the console script from the installed package: the
    plugin module is found in the current folder, its YAML joins the config, its task and method train."""
    import subprocess

    script = readme_block("plugin-walkthrough")
    bin_dir = str(Path(sys.executable).parent)  # where kdlight-train is (the venv's bin)
    env = clean_env(tmp_path, PATH=f"{bin_dir}:{__import__('os').environ.get('PATH', '')}", KDLIGHT_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=1800, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "my_plugin" / "outputs" / "yesno" / "results.json").read_text())
    assert (results["status"], results["dataset"], results["attribution"]) == ("finished", "yesno", "input_norm")

"""Caches that know the code that made them: editing a task's parsing (or a helper it calls) rebuilds
the example store, and an attribution method's code or declared version re-keys the rationale cache;
the rows made by the older code are reported, never read."""

from __future__ import annotations

import importlib
import logging
import sys
import textwrap

import pytest
from hydra.utils import instantiate

from kdlight.data.store import build_or_open
from kdlight.provenance import code_digest
from kdlight.teacher.stage import TeacherStage

TASK_MODULE = '''
from kdlight.data.tasks import Example, PalmParse, Task


def clean(text):
    return text.strip(){edit}


class ShoutTask(Task):
    name = "shout"
    release_dir = "shout"
    release_splits = ("train",)
    templates = {{"student": "{{text}}", "teacher": "{{text}}?"}}

    def example_from_row(self, row, index):
        return Example(f"shout-{{index}}", {{"text": clean(row["text"])}}, row["label"])

    def parse_palm(self, completion):
        return PalmParse(None, None)
'''


def load_task(folder, edit: str = ""):
    (folder / "kd_shout_task.py").write_text(textwrap.dedent(TASK_MODULE.format(edit=edit)))
    sys.modules.pop("kd_shout_task", None)
    importlib.invalidate_caches()
    return importlib.import_module("kd_shout_task").ShoutTask()


def build(task, cache_dir):
    rows = [{"text": " a b ", "label": "x"}, {"text": "c", "label": "y"}]

    def examples(report):
        for i, row in enumerate(rows):
            report.rows += 1
            report.kept += 1
            yield task.example_from_row(row, i)

    return build_or_open(task, "train", {"source": "test"}, examples, cache_dir)


def test_editing_a_helper_the_parsing_calls_rebuilds_the_store_and_says_so(tmp_path, monkeypatch, caplog):
    monkeypatch.syspath_prepend(str(tmp_path))
    task = load_task(tmp_path)
    _, _, first = build(task, tmp_path / "cache")
    assert build(load_task(tmp_path), tmp_path / "cache")[2] == first  # the same code: the same rows, reused
    edited = load_task(tmp_path, edit=".upper()")
    assert code_digest(type(edited)) != code_digest(type(task))
    with caplog.at_level(logging.WARNING, logger="kdlight.data.store"):
        table, _, second = build(edited, tmp_path / "cache")
    assert second != first and table.column("fields").to_pylist()[0] == '{"text": "A B"}'
    assert f"shout-train-{first}.arrow holds the same shout train rows parsed by other code" in caplog.text
    sys.modules.pop("kd_shout_task", None)


def test_a_methods_declared_version_and_code_key_its_cache(compose, release_root, monkeypatch, caplog):
    from kdlight.attribution.grad_x_input import GradXInput

    cfg = compose(["dataset=cqa", f"paths.data_dir={release_root}", "teacher=tiny", "trainer=cpu", "attribution.batch_size=4",
                   "teacher.model.d_model=32", "teacher.model.d_ff=64"])
    datamodule = instantiate(cfg.dataset)
    first = TeacherStage.from_config(cfg).rationale_caches(datamodule, ["train"])[0]["train"]
    assert first.fields["attribution"]["code"] == code_digest(GradXInput) and first.fields["attribution"]["version"] == 1
    monkeypatch.setattr(GradXInput, "version", 2)
    with caplog.at_level(logging.WARNING, logger="kdlight.teacher.stage"):
        second = TeacherStage.from_config(cfg).rationale_caches(datamodule, ["train"])[0]["train"]
    assert second.path != first.path and second.is_complete()
    assert f"{first.path} holds these rows' rationales from other attribution code" in caplog.text


def test_the_digest_follows_the_code_not_the_object():
    from kdlight.attribution.gradient import Gradient
    from kdlight.data.tasks import CQATask, SVAMPTask

    assert code_digest(CQATask) == code_digest(CQATask) and code_digest(CQATask) != code_digest(SVAMPTask)
    assert len(code_digest(Gradient)) == 16
    with pytest.raises(TypeError):
        code_digest(CQATask())  # classes only: an instance is not the code

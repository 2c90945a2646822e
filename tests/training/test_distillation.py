"""Distillation baselines: sequence-level (the student learns the teacher's cached answers, or PaLM's)."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate

from kdlight.config import ConfigError, validate_config
from kdlight.label_sources import label_source
from kdlight.models import build_model
from kdlight.teacher.stage import TeacherStage
from kdlight.text import decode_answers, round_trip, separator_token

TINY = ["teacher=tiny", "student=tiny", "trainer=cpu", "attribution.batch_size=4", "teacher.model.d_model=32",
        "teacher.model.d_ff=64", "student.model.d_model=32", "student.model.d_ff=64"]


def student_data(cfg, data, source_name: str, caches=None):
    """The student's datamodule as run.py builds it, set up."""
    model, tokenizer, family = build_model(
        instantiate(cfg.student.model, _partial_=True), instantiate(cfg.student.tokenizer, _partial_=True), data.corpus,
        data.task.label_set,
    )
    dm = instantiate(cfg.dataset, examples=data.examples, tokenizer=tokenizer, family=family,
                     label_source=label_source(source_name, caches), separator=separator_token(tokenizer))
    dm.setup()
    return dm, tokenizer


def targets(dm, tokenizer, split: str) -> list[str]:
    rows = dm.features[split].head(len(dm.features[split]))
    return decode_answers(tokenizer, [[t for t in row["labels"] if t >= 0] for row in rows])


def test_distill_trains_on_the_teachers_cached_answers_and_evaluates_on_gold(compose):
    cfg = compose(["dataset=cue_words", "dataset.train_size=24", "dataset.valid_size=8", "dataset.test_size=8", "method=distill",
                   "teacher.finetune=true", "teacher.finetune_trainer.max_steps=30", "+teacher.finetune_dataset.train_size=200", *TINY])
    validate_config(cfg)
    assert cfg.attribution.score_teacher is True  # method=distill asks the teacher stage for its answers
    data = instantiate(cfg.dataset)
    caches, _ = TeacherStage.from_config(cfg).rationale_caches(data)
    answers = [row["teacher_answer"] for row in caches["train"].read()]
    assert len(answers) == len(data.examples["train"]) and any(answers)
    dm, tokenizer = student_data(cfg, data, "teacher", caches)
    golds = [ex.label for ex in data.examples["train"]]
    expected = [round_trip(tokenizer, answer or gold, dm.max_target_length) for answer, gold in zip(answers, golds)]  # none: gold
    assert targets(dm, tokenizer, "train") == expected
    assert expected != [round_trip(tokenizer, gold) for gold in golds]  # a random teacher's answers are not the labels
    rows = dm.features["train"].head(3)
    assert [row["label_text"] for row in rows] == golds[:3]  # accuracy is still measured against gold
    assert targets(dm, tokenizer, "valid") == [round_trip(tokenizer, ex.label) for ex in data.examples["valid"]]


def test_llm_labels_are_palms_parsed_answers(compose, release_root):
    cfg = compose(["dataset=svamp", f"paths.data_dir={release_root}", "method=finetune", "method.label_source=llm", *TINY])
    validate_config(cfg)
    data = instantiate(cfg.dataset)
    palm = [ex.palm_label for ex in data.examples["train"]]
    assert any(palm)
    dm, tokenizer = student_data(cfg, data, "llm")
    expected = [round_trip(tokenizer, p or ex.label) for p, ex in zip(palm, data.examples["train"])]
    assert targets(dm, tokenizer, "train") == expected


@pytest.mark.parametrize("overrides, message", [
    (["method=saliency", "method.label_source=teacher"], "method.label_source=teacher learns the teacher's answers"),
    (["method=finetune", "method.label_source=teacher"], "needs_teacher=False"),
    (["method=distill", "method.label_source=teachr"], "method.label_source='teachr' is not accepted; use one of ['gold', 'teacher', 'llm']"),
])
def test_a_label_source_that_cannot_work_is_named(compose, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        validate_config(compose(["dataset=cue_words", *overrides]))
    validate_config(compose(["dataset=cue_words", "method=saliency", "method.label_source=teacher", "method.score_teacher=true"]))

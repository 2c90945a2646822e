"""Distillation baselines: sequence-level (the student learns the teacher's cached answers, or PaLM's) and
logit distillation (KL at a temperature against a frozen teacher in the step)."""

from __future__ import annotations

import copy
import csv
import json
import math

import pytest
import torch
from hydra.utils import instantiate

from kdlight.config import ConfigError
from kdlight.families.base import IGNORE_INDEX
from kdlight.families.text import decode_answers, encode_targets, round_trip, separator_token
from kdlight.methods.label_sources import label_source
from kdlight.methods.logit_kd import LogitDistillation, check_same_targets
from kdlight.models.loading import build_model
from kdlight.student.module import StudentModule
from kdlight.teacher.stage import TeacherStage
from kdlight.training.losses import distillation_kl
from kdlight.validation import validate_config
from tests.families import build_family_model
from tests.helpers import results_of, train
from tests.training.test_losses import make_batch, reference_loss

TINY = ["teacher=tiny", "student=tiny", "trainer=cpu", "attribution.batch_size=4", "teacher.model.d_model=32",
        "teacher.model.d_ff=64", "student.model.d_model=32", "student.model.d_ff=64"]


def student_data(cfg, data, source_name: str, caches=None):
    """The student's datamodule as run.py builds it, set up."""
    model, tokenizer, family = build_model(
        instantiate(cfg.student.model, _partial_=True), instantiate(cfg.student.tokenizer, _partial_=True), data.corpus,
        data.task.label_set,
    )
    dm = data.for_model(tokenizer, family, label_source=label_source(source_name, caches), separator=separator_token(tokenizer))
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
    (["method=finetune", "method.label_source=teacher"], "teacher extraction=False"),
    (["method=distill", "method.label_source=teachr"], "method.label_source='teachr' is not accepted; use one of ['gold', 'teacher', 'llm']"),
])
def test_a_label_source_that_cannot_work_is_named(compose, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        validate_config(compose(["dataset=cue_words", *overrides]))
    validate_config(compose(["dataset=cue_words", "method=saliency", "method.label_source=teacher", "method.score_teacher=true"]))


# ---------------------------------------------------------------- logit distillation
def test_distillation_kl_against_a_hand_computation():
    student_logits = torch.tensor([[[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]]])
    teacher_logits = torch.tensor([[[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]]])
    present = torch.tensor([[True, False]])  # the second position is padding

    def softmax(values, t):
        exps = [math.exp(v / t) for v in values]
        return [e / sum(exps) for e in exps]

    p, q = softmax([0.0, 1.0, 0.0], 2.0), softmax([1.0, 0.0, -1.0], 2.0)
    hand = 4.0 * sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q))
    assert distillation_kl(student_logits, teacher_logits, present, 2.0).item() == pytest.approx(hand, rel=1e-6)
    assert distillation_kl(teacher_logits, teacher_logits, present, 3.0).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="temperature=0 is not accepted"):
        distillation_kl(student_logits, teacher_logits, present, 0)


def test_target_logits_line_up_target_j_at_index_j_on_every_family(family_model):
    """The cross-entropy of the aligned logits is the family's own loss, and row b's labels are its target tokens."""
    _, model, tokenizer, family = family_model
    batch = make_batch(tokenizer, family)["label"]
    logits, labels = family.target_logits(model, batch)
    assert logits.shape[:2] == labels.shape
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX)
    assert ce.item() == pytest.approx(reference_loss(model, batch).item(), rel=1e-5)
    expected = encode_targets(tokenizer, ["water", "scissors", "sky"], 8)
    assert [row[row.ne(IGNORE_INDEX)].tolist() for row in labels] == expected
    assert all(row[: len(target)].ne(IGNORE_INDEX).all() for row, target in zip(labels, expected))  # left-aligned


def test_logit_distillation_mixes_the_soft_term_and_trains_only_the_student(family_model, tmp_path):
    name, model, tokenizer, family = family_model
    student_model = copy.deepcopy(model).eval().requires_grad_(True)  # no dropout: equal models give equal logits
    teacher_model = build_family_model(name, tmp_path, seed=11)[0]  # same shape and tokenizer, other weights
    batch = make_batch(tokenizer, family)
    batch["teacher"] = batch["label"]  # the teacher reads the same prompts here
    same = LogitDistillation(temperature=2.0, weight=0.25).attach(copy.deepcopy(student_model), family)
    assert same.label_losses(student_model, family, batch)["loss_kd"].item() == pytest.approx(0.0, abs=1e-6)
    kd = LogitDistillation(temperature=2.0, weight=0.25).attach(teacher_model, family)
    module = StudentModule(student_model, tokenizer, family, alpha=0.0, optimizer=lambda params: torch.optim.AdamW(params), objective=kd)
    losses = module.losses(batch)
    assert losses["loss_kd"].item() > 0
    assert losses["loss"].item() == pytest.approx(0.75 * losses["loss_label_ce"].item() + 0.25 * losses["loss_kd"].item(), rel=1e-5)
    losses["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student_model.parameters())
    assert all(p.grad is None for p in teacher_model.parameters())
    assert not any(p is q for p in module.parameters() for q in teacher_model.parameters())  # never trained nor saved


def test_a_vocabulary_mismatch_is_named_before_training(tmp_path):
    teacher = build_family_model("t5", tmp_path)
    student = build_family_model("gpt2", tmp_path)
    with pytest.raises(ConfigError, match=r"teacher big \(seq2seq\) has a vocabulary of \d+ outputs .* student small \(causal\)"):
        check_same_targets(teacher, student, "big", "small")
    check_same_targets(teacher, build_family_model("t5", tmp_path, seed=9), "big", "small")


@pytest.mark.parametrize("pair", [  # the unit tests above cover every family; the other two runs end to end are `slow`
    ["teacher=tiny", "student=tiny"],
    pytest.param(["teacher=tiny_causal", "student=tiny_causal", "student.tokenizer.add_bos=true"], marks=pytest.mark.slow),
    pytest.param(["teacher=tiny_encoder", "student=tiny_encoder"], marks=pytest.mark.slow),
])
def test_logit_kd_trains_end_to_end_for_each_student_family(tmp_path, pair):
    out = train(tmp_path, "debug=tiny", "dataset=cue_words", "method=logit_kd", *pair, "trainer.max_steps=2", "threads=1")
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = results_of(tmp_path)
    assert results["status"] == "finished" and results["method"] == "logit_kd" and results["teacher"] == pair[0].split("=")[1]
    (metrics,) = list((tmp_path / "outputs").rglob("metrics.csv"))
    rows = list(csv.DictReader(metrics.open()))
    assert any(float(r["train/loss_kd"]) > 0 for r in rows if r.get("train/loss_kd"))


def test_logit_kd_refuses_a_student_of_another_vocabulary_without_a_results_file(tmp_path):
    out = train(tmp_path, "debug=tiny", "dataset=cue_words", "method=logit_kd", "student=tiny_causal", "threads=1")
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith(
        "error: method=logit_kd compares the teacher's and the student's distributions over the same targets, but teacher tiny (seq2seq)")
    assert results_of(tmp_path) == []


def test_a_combined_method_is_named_apart_from_the_plain_one(compose):
    from kdlight.methods import training_method

    def label(*overrides):
        return training_method(compose(["dataset=cue_words", *overrides]).method).label()

    assert label("method=saliency") == "saliency" and label("method=distill") == "distill" and label("method=logit_kd") == "logit_kd"
    assert label("method=saliency", "method.label_source=teacher", "method.score_teacher=true") == "saliency+teacher_labels"
    assert label("method=finetune", "method.label_source=llm") == "finetune+llm_labels"
    assert label("method=saliency", "method.distillation={_target_:kdlight.methods.attribution_match.AttributionMatch}") == (
        "saliency+attribution_match")
    with pytest.raises(ConfigError, match=r"method.distillation._target_='kdlight.training.attribution_match.AttributionMatch' is not an importable class"):
        label("method=saliency", "method.distillation={_target_:kdlight.training.attribution_match.AttributionMatch}")


def test_logit_distillation_on_an_encoder_compares_class_distributions(tmp_path):
    from tests.families import build_encoder_model, encoder_nli_batch

    model, tokenizer, family = build_encoder_model("bert_classifier", tmp_path)
    teacher = build_encoder_model("bert_classifier", tmp_path, seed=11)[0]
    batch = encoder_nli_batch(tokenizer, family)
    batch["teacher"] = batch["label"]
    student = copy.deepcopy(model).eval().requires_grad_(True)
    losses = LogitDistillation(temperature=3.0, weight=0.4).attach(teacher, family).label_losses(student, family, batch)
    logits, labels = family.target_logits(student, batch["label"])
    assert logits.shape == (3, 1, 3) and labels[:, 0].tolist() == [0, 2, 1]  # one target: the class (entailment, contradiction, neutral)
    assert losses["loss_label_ce"].item() == pytest.approx(family.loss(student, batch["label"]).item(), rel=1e-5)
    expected = distillation_kl(logits, family.target_logits(teacher, batch["label"])[0], labels.ne(IGNORE_INDEX), 3.0)
    assert losses["loss_kd"].item() == pytest.approx(expected.item(), rel=1e-5) and losses["loss_kd"].item() > 0
    assert losses["loss_label"].item() == pytest.approx(0.6 * losses["loss_label_ce"].item() + 0.4 * losses["loss_kd"].item(), rel=1e-5)


def test_a_logit_kd_student_is_the_same_whether_its_teacher_was_trained_now_or_cached(tmp_path):
    """The teacher loaded for the training step (fine-tuned on a cold cache, read from a warm one) leaves the
    student's random state alone: the same command twice trains the same student, step for step."""
    def run(name):
        out = train(tmp_path, "debug=tiny", "dataset=cue_words", "method=logit_kd", "teacher.finetune=true",
                    "teacher.finetune_trainer.max_steps=3", "trainer.max_steps=4", "trainer.log_every_n_steps=1", "threads=1",
                    f"hydra.run.dir={tmp_path / name}")
        assert out.returncode == 0, out.stderr[-3000:]
        rows = list(csv.DictReader((tmp_path / name / "csv" / "metrics.csv").open()))
        return [r["train/loss"] for r in rows if r.get("train/loss")], json.loads((tmp_path / name / "results.json").read_text())

    (cold, first), (warm, second) = run("cold"), run("warm")
    assert len(list((tmp_path / "cache" / "teachers").glob("*/summary.json"))) == 1  # trained once, then read
    assert len(cold) == 4 and warm == cold and first["test_acc"] == second["test_acc"]

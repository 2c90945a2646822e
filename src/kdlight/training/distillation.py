"""Logit distillation (Hinton et al., 2015; method=logit_kd): the student's label loss becomes
(1 - weight) * cross-entropy + weight * T^2 * KL(teacher || student) at temperature T, over the label
target's distributions: token distributions for generative students (the teacher must share the
student's vocabulary), class or choice distributions for classifiers (the same labels).

The teacher runs frozen in each training step on its own prompt (teacher inputs are tokenised with
the features), teacher-forced on the student's target tokens. It is held outside the module's
parameters: never trained, never checkpointed or exported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from kdlight.families.base import IGNORE_INDEX
from kdlight.training.losses import distillation_kl


class TeacherInputs:
    """The teacher's prompt token ids for a chunk of examples (the datamodule stores them beside the
    student's inputs for the train split)."""

    def __init__(self, family, tokenizer, render: Callable, max_length: int, identity: object) -> None:
        self.family, self.tokenizer, self.render, self.max_length = family, tokenizer, render, max_length
        self.pad_id = tokenizer.pad_token_id
        self._identity = identity

    def identity(self) -> list:
        return [self._identity, self.family.identity(), self.max_length]

    def __call__(self, examples: Sequence) -> list[list[int]]:
        return self.family.encode_prompts(self.tokenizer, [self.render(ex) for ex in examples], self.max_length)


class LogitDistillation:
    """The soft-target term of the label task (a built object: method.distillation in config)."""

    method_name = "logit_kd"
    uses_teacher_model = True  # attached by the run, frozen, called in each step
    uses_word_scores = False

    def __init__(self, temperature: float = 2.0, weight: float = 0.5) -> None:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ValueError(f"method.distillation.temperature={temperature!r} is not accepted; use a number > 0")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
            raise ValueError(f"method.distillation.weight={weight!r} is not accepted; use a number with 0 <= weight <= 1")
        self.temperature, self.weight = float(temperature), float(weight)
        self._teacher: tuple | None = None  # (model, family): a plain attribute, so not a submodule

    def attach(self, model, family) -> LogitDistillation:
        model.eval()
        model.requires_grad_(False)
        self._teacher = (model, family)
        return self

    @property
    def teacher(self):
        if self._teacher is None:
            raise RuntimeError("LogitDistillation has no teacher: call attach(model, family) first")
        return self._teacher

    def to(self, device) -> None:
        self.teacher[0].to(device)

    def label_losses(self, model, family, batch: dict) -> dict[str, torch.Tensor]:
        """{"loss_label": the mixed label loss, "loss_label_ce": cross-entropy, "loss_kd": the soft term}."""
        teacher, teacher_family = self.teacher
        logits, labels = family.target_logits(model, batch["label"])
        with torch.no_grad():
            teacher_logits, teacher_labels = teacher_family.target_logits(teacher, batch["teacher"])
        if teacher_labels.shape != labels.shape or not torch.equal(teacher_labels, labels):
            raise RuntimeError(f"the teacher scored other targets than the student ({tuple(teacher_labels.shape)} against "
                               f"{tuple(labels.shape)}): the two must share the label targets")
        present = labels.ne(IGNORE_INDEX)
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX)
        kd = distillation_kl(logits, teacher_logits, present, self.temperature)
        return {"loss_label": (1.0 - self.weight) * ce + self.weight * kd, "loss_label_ce": ce, "loss_kd": kd}


def check_same_targets(teacher: tuple, student: tuple, teacher_name: str, student_name: str) -> None:
    """(model, tokenizer, family) of each: logit distillation needs both to score the same targets.
    Raises ConfigError before training, naming both sides."""
    (t_model, t_tokenizer, t_family), (s_model, s_tokenizer, s_family) = teacher, student
    t_what, t_value = t_family.target_identity(t_model, t_tokenizer)
    s_what, s_value = s_family.target_identity(s_model, s_tokenizer)
    if t_value != s_value:
        from kdlight.config import ConfigError

        raise ConfigError(
            f"method=logit_kd compares the teacher's and the student's distributions over the same targets, but teacher "
            f"{teacher_name} ({t_family.name}) has {t_what} and student {student_name} ({s_family.name}) has {s_what}; use a "
            "student with the teacher's tokenizer (or labels), or method=distill, which passes the teacher's answers as text"
        )

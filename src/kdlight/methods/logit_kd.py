"""Logit distillation (Hinton et al., 2015; method=logit_kd): the student's label loss becomes
(1 - weight) * cross-entropy + weight * T^2 * KL(teacher || student) at temperature T, over the label
target's distributions: token distributions for generative students (the teacher must share the
student's vocabulary), class or choice distributions for classifiers (the same labels).

The teacher runs frozen in each training step on its own prompt (teacher inputs are tokenised with
the features), teacher-forced on the student's target tokens. It is held outside the module's
parameters: never trained, never checkpointed or exported. Any method gets the same term with
method.distillation set to conf/method/logit_kd.yaml's node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from kdlight.config import ConfigError
from kdlight.methods.base import TrainingMethod, register_training_method
from kdlight.training.losses import distillation_kl

if TYPE_CHECKING:
    import torch


@register_training_method
class LogitKD(TrainingMethod):
    """The label task with the soft-target term (its YAML sets method.distillation to LogitDistillation)."""

    name = "logit_kd"


class TeacherInputs:
    """Train-only feature columns (kdlight.data.features.TrainColumns): the teacher's prompt token ids
    beside the student's inputs, batched by the teacher's family for its forward pass in each step."""

    key = "teacher_inputs"  # its name in the features' cache key
    fields = (("teacher_input_ids", pa.list_(pa.int32())),)
    needs_offsets = False

    def __init__(self, family, tokenizer, render: Callable, max_length: int, identity: object) -> None:
        self.family, self.tokenizer, self.render, self.max_length = family, tokenizer, render, max_length
        self.pad_id = tokenizer.pad_token_id
        self._identity = identity

    def fingerprint(self, split: str) -> list:
        return [self._identity, self.family.identity(), self.max_length]

    def columns(self, split: str, start: int, examples: Sequence, prompts=None, inputs=None, offsets=None) -> dict[str, list]:
        return {"teacher_input_ids": self.family.encode_prompts(self.tokenizer, [self.render(ex) for ex in examples], self.max_length)}

    def collate(self, features: list[dict]) -> dict:
        """{"teacher": the teacher family's batch of its prompts and the student's targets} (train batches)."""
        if not all(f.get("teacher_input_ids") for f in features):
            return {}
        return {"teacher": self.family.task_batch([f["teacher_input_ids"] for f in features], [f["labels"] for f in features],
                                                  self.pad_id)}


class LogitDistillation:
    """The soft-target term of the label task (a built object: method.distillation in config)."""

    method_name = "logit_kd"
    teacher_need = "model"  # attached by prepare, frozen, called in each step

    def __init__(self, temperature: float = 2.0, weight: float = 0.5) -> None:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ValueError(f"method.distillation.temperature={temperature!r} is not accepted; use a number > 0")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
            raise ValueError(f"method.distillation.weight={weight!r} is not accepted; use a number with 0 <= weight <= 1")
        self.temperature, self.weight = float(temperature), float(weight)
        self._teacher: tuple | None = None  # (model, family): a plain attribute, so not a submodule

    def prepare(self, teacher, student: tuple, caches: dict) -> list[TeacherInputs]:
        """Load the teacher (fine-tuned first when teacher.finetune=true, cached as for extraction), check it
        scores the student's targets, attach it; its prompts become a train column."""
        loaded = teacher.model()
        check_same_targets((loaded.model, loaded.tokenizer, loaded.family), student, teacher.name, teacher.student_name)
        self.attach(loaded.model, loaded.family)
        return [TeacherInputs(loaded.family, loaded.tokenizer, loaded.render, loaded.max_length, loaded.identity)]

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
        import torch  # lazy: off the config check's import path (tests/test_train.py)

        from kdlight.families.base import IGNORE_INDEX  # lazy: off the config check's import path (tests/test_train.py)

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
        raise ConfigError(
            f"method=logit_kd compares the teacher's and the student's distributions over the same targets, but teacher "
            f"{teacher_name} ({t_family.name}) has {t_what} and student {student_name} ({s_family.name}) has {s_what}; use a "
            "student with the teacher's tokenizer (or labels), or method=distill, which passes the teacher's answers as text"
        )

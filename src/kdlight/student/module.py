"""StudentModule: the label and the rationale as two tasks of one model, evaluated on the label."""

from __future__ import annotations

import torch

from kdlight.training.losses import dual_task_loss, first_alpha_problem, scheduled_alpha
from kdlight.training.module import LabelTaskModule
from kdlight.utils.registry import Registry

# Student kinds by name: a LightningModule class a student config's _target_ names (a plugin registers
# its own with @register_student_kind; results.json records the kind).
STUDENT_KINDS: Registry = Registry("student kind", "student._target_")
register_student_kind = STUDENT_KINDS.decorator(lambda cls: cls.kind)


@register_student_kind

class StudentModule(LabelTaskModule):
    """Training: (1 - alpha) * L_label + alpha * L_rationale, both in the same step; with alpha = 0 the
    rationale forward pass is skipped. alpha may follow a schedule over the training steps (constant,
    linear or cosine from alpha_start to alpha_end; logged as train/alpha). Evaluation: the label only.

    A new kind of student is one subclass with its own `kind`, decorated with @register_student_kind, in
    its own file (or a plugin) plus a conf/student/ entry pointing `_target_` at it.
    """

    kind = "dual_task"

    def __init__(
        self, *args, alpha: float, alpha_schedule: str = "constant", alpha_start: float | None = None, alpha_end: float | None = None,
        objective=None, **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.objective = objective  # the method's label-task objective (kdlight.methods), None: cross-entropy
        self.alpha = float(alpha)
        self.alpha_schedule = alpha_schedule
        self.alpha_start = self.alpha if alpha_start is None else float(alpha_start)
        self.alpha_end = self.alpha if alpha_end is None else float(alpha_end)
        problem = first_alpha_problem((("alpha", self.alpha), ("student.alpha_start", self.alpha_start), ("student.alpha_end", self.alpha_end)))
        if problem:  # a module built in code, not from a checked config (kdlight.validation runs the same rule)
            raise ValueError(problem)
        scheduled_alpha(0, 1, alpha_schedule, self.alpha_start, self.alpha_end)  # names a bad schedule now, not at step 1
        self.family.prepare_student(self.model)  # e.g. an encoder's tagging head, trained and checkpointed with the model

    def current_alpha(self) -> float:
        """alpha at this training step (student.alpha_schedule over trainer.max_steps; constant: alpha)."""
        if self.alpha_schedule == "constant":
            return self.alpha
        total = self.trainer.max_steps if self._trainer is not None else 0
        return scheduled_alpha(self.global_step, total, self.alpha_schedule, self.alpha_start, self.alpha_end)

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.objective is not None:
            self.objective.to(self.device)

    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        alpha = self.current_alpha()
        rationale = batch.get("rationale") if alpha > 0 else None
        extra: dict[str, torch.Tensor] = {}
        if self.objective is None:
            label_loss, rationale_loss = self.family.task_losses(self.model, batch["label"], rationale)
        else:  # the objective's label loss (from logits its own term also reads); the rationale task as usual
            extra = self.objective.label_losses(self.model, self.family, batch)
            label_loss = extra.pop("loss_label")
            rationale_loss = None if rationale is None else self.family.task_losses(self.model, batch["label"], rationale)[1]
        losses = {"loss": dual_task_loss(label_loss, rationale_loss, alpha), "loss_label": label_loss, **extra}
        if rationale_loss is not None:
            losses["loss_rationale"] = rationale_loss
        if self.alpha_schedule != "constant":
            losses["alpha"] = torch.tensor(alpha)
        return losses

"""StudentModule: the label and the rationale as two tasks of one model, evaluated on the label."""

from __future__ import annotations

import torch

from kdlight.training.losses import dual_task_loss
from kdlight.training.module import LabelTaskModule


class StudentModule(LabelTaskModule):
    """Training: (1 - alpha) * L_label + alpha * L_rationale, both in the same step; with alpha = 0 the
    rationale forward pass is skipped. Evaluation: greedy decoding of the label only.

    A new kind of student (another objective, e.g. matching the teacher's logits) is one subclass in
    its own file plus a conf/student/ entry pointing `_target_` at it.
    """

    def __init__(self, *args, alpha: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha={alpha!r} is not accepted; use a number with 0 <= alpha <= 1")
        self.alpha = float(alpha)
        self.family.prepare_student(self.model)  # e.g. an encoder's tagging head, trained and checkpointed with the model

    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        rationale = batch.get("rationale") if self.alpha > 0 else None
        label_loss, rationale_loss = self.family.task_losses(self.model, batch["label"], rationale)
        losses = {"loss": dual_task_loss(label_loss, rationale_loss, self.alpha), "loss_label": label_loss}
        if rationale_loss is not None:
            losses["loss_rationale"] = rationale_loss
        return losses

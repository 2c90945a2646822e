"""StudentModule: a seq2seq student trained on the label and the rationale, evaluated on the label."""

from __future__ import annotations

import logging
from typing import Any, Callable

import pytorch_lightning as pl
import torch
from torchmetrics import MaxMetric

from kdlight.student.losses import dual_task_loss
from kdlight.student.metrics import AnswerAccuracy

log = logging.getLogger(__name__)


class StudentModule(pl.LightningModule):
    """Batches come from DualTaskCollator: {"label": {...}, "rationale": {...}?, "label_text": [...]}.

    Training: (1 - alpha) * L_label + alpha * L_rationale, both in the same step; with alpha = 0 the
    rationale forward pass is skipped. Evaluation: greedy decoding of the label only.
    """

    def __init__(
        self,
        model,
        tokenizer,
        alpha: float,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        max_new_tokens: int = 64,
        answer_kind: str = "text",
        name: str = "student",
        samples_to_log: int = 16,
    ) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha={alpha!r} is not accepted; use a number with 0 <= alpha <= 1")
        self.model = model
        self.tokenizer = tokenizer
        self.alpha = float(alpha)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.max_new_tokens = max_new_tokens
        self.student_name = name
        self.samples_to_log = samples_to_log
        self.val_acc = AnswerAccuracy(answer_kind)
        self.test_acc = AnswerAccuracy(answer_kind)
        self.val_acc_best = MaxMetric()
        self._samples: list[list[str]] = []

    # ------------------------------------------------------------------ training
    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        label_loss = self.model(**batch["label"]).loss
        rationale_loss = None
        if self.alpha > 0 and "rationale" in batch:
            rationale_loss = self.model(**batch["rationale"]).loss
        losses = {"loss": dual_task_loss(label_loss, rationale_loss, self.alpha), "loss_label": label_loss}
        if rationale_loss is not None:
            losses["loss_rationale"] = rationale_loss
        return losses

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch)
        size = batch["label"]["input_ids"].shape[0]
        for name, value in losses.items():
            self.log(f"train/{name}", value, on_step=True, prog_bar=name == "loss", batch_size=size)
        return losses["loss"]

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def generate_labels(self, label_batch: dict) -> list[str]:
        generated = self.model.generate(
            input_ids=label_batch["input_ids"],
            attention_mask=label_batch["attention_mask"],
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            num_beams=1,
        )
        return [text.strip() for text in self.tokenizer.batch_decode(generated, skip_special_tokens=True)]

    def _evaluate(self, batch: dict, metric: AnswerAccuracy, stage: str) -> list[str]:
        predictions = self.generate_labels(batch["label"])
        metric.update(predictions, batch["label_text"])
        size = len(predictions)
        self.log(f"{stage}/loss_label", self.model(**batch["label"]).loss, batch_size=size, sync_dist=True)
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=True, batch_size=size)
        return predictions

    def on_validation_epoch_start(self) -> None:
        self._samples = []

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        predictions = self._evaluate(batch, self.val_acc, "val")
        if len(self._samples) < self.samples_to_log:
            inputs = self.tokenizer.batch_decode(batch["label"]["input_ids"], skip_special_tokens=True)
            self._samples += [list(row) for row in zip(inputs, batch["label_text"], predictions)]

    def on_validation_epoch_end(self) -> None:
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.test_acc, "test")

    # ---------------------------------------------------------------- optimiser
    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=[p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "step"}}

    def samples(self) -> list[list[str]]:
        """The last validation's first rows: [input, gold, prediction]."""
        return list(self._samples[: self.samples_to_log])

"""LabelTaskModule: a model of any family trained on prompt -> label and evaluated by greedy decoding.

The family adapter builds nothing here (the collator did) but computes the loss and generates, so
the same module trains a T5, a BART, a BERT2BERT or a decoder-only LM. The student adds a second
task (kdlight.student); the teacher's fine-tuning stage uses this module as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
from torchmetrics import MaxMetric

from kdlight.answers import AnswerChecker
from kdlight.families.text import round_trip
from kdlight.models.lora import add_lora, check_peft, lora_settings, merged
from kdlight.training.metrics import AnswerAccuracy

log = logging.getLogger(__name__)


class LabelTaskModule(pl.LightningModule):
    """Batches come from kdlight.data.collate.TaskCollator: {"label": {...}, "label_text": [...], ...}."""

    def __init__(
        self,
        model,
        tokenizer,
        family,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        max_new_tokens: int = 64,
        answer_kind: str = "text",
        name: str = "model",
        samples_to_log: int = 16,
        gradient_checkpointing: bool = False,
        peft: str = "none",
        lora: Mapping | None = None,
    ) -> None:
        super().__init__()
        self.model, self.tokenizer, self.family = model, tokenizer, family
        self.lora_settings = None  # LoRA's settings when adapters train instead of the whole model (checkpoints keep them)
        if check_peft("peft", peft) == "lora":
            self.lora_settings = lora_settings(lora, getattr(model, "name_or_path", None))
            add_lora(model, family, self.lora_settings)
        if gradient_checkpointing:  # recompute activations in the backward: memory for time, the same gradients
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.max_new_tokens = max_new_tokens
        self.model_name = name
        self.samples_to_log = samples_to_log
        self.checker = AnswerChecker(answer_kind, partial(round_trip, tokenizer))
        self.val_acc = AnswerAccuracy(self.checker)
        self.test_acc = AnswerAccuracy(self.checker)
        self.val_acc_best = MaxMetric()
        self.checkpoint_info: dict = {}  # what eval.py needs to rebuild this model from a checkpoint
        self.last_validation_step: int | None = None  # the step the latest (non-sanity) validation ran at
        self._samples: list[list[str]] = []
        self.predictions: list[dict] = []

    # ------------------------------------------------------------------ training
    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        label_loss = self.family.loss(self.model, batch["label"])
        return {"loss": label_loss, "loss_label": label_loss}

    def on_fit_start(self) -> None:
        # from_pretrained returns a model in eval mode and Lightning keeps each module's mode (validation
        # restores it): train with the model's dropout, as it was pretrained
        self.model.train()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch)
        size = batch["label"]["input_ids"].shape[0]
        for name, value in losses.items():
            self.log(f"train/{name}", value, on_step=True, prog_bar=name == "loss", batch_size=size)
        return losses["loss"]

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # A step budget that is not a multiple of the validation interval (or shorter than it) validates
        # its last weights too, so the best checkpoint and val/acc_best always exist: asking the fit loop to
        # stop makes it validate at the end of this batch (once; Lightning's early-stopping path).
        budget = self.trainer.max_steps
        if budget and budget > 0 and self.global_step >= budget and self.last_validation_step != self.global_step:
            self.trainer.should_stop = True

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def generate_labels(self, label_batch: dict) -> list[str]:
        return self.family.answers(self.model, self.tokenizer, label_batch["prompt_ids"], label_batch["prompt_mask"], self.max_new_tokens)

    def _evaluate(self, batch: dict, metric: AnswerAccuracy, stage: str) -> list[str]:
        predictions = self.generate_labels(batch["label"])
        metric.update(predictions, batch["label_text"])
        size = len(predictions)
        self.log(f"{stage}/loss_label", self.family.loss(self.model, batch["label"]), batch_size=size, sync_dist=True)
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=True, batch_size=size)
        return predictions

    def on_validation_epoch_start(self) -> None:
        self._samples = []

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        predictions = self._evaluate(batch, self.val_acc, "val")
        if len(self._samples) < self.samples_to_log:
            inputs = self.tokenizer.batch_decode(batch["label"]["prompt_ids"], skip_special_tokens=True)
            self._samples += [list(row) for row in zip(inputs, batch["label_text"], predictions)]

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.last_validation_step = self.global_step
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True)
        if self.trainer.is_global_zero and self._samples and not self.trainer.sanity_checking:
            for logger in self.loggers:  # a table per validation (W&B), not only the last
                if hasattr(logger, "log_table"):
                    logger.log_table("val/samples", columns=["input", "gold", "prediction"], data=self.samples(), step=self.global_step)

    def on_test_epoch_start(self) -> None:
        self.predictions = []

    def test_step(self, batch: dict, batch_idx: int) -> None:
        predictions = self._evaluate(batch, self.test_acc, "test")
        self.predictions += [
            {"index": int(i), "gold": gold, "prediction": p, "correct": self.checker(p, gold)}
            for i, gold, p in zip(batch["index"], batch["label_text"], predictions)
        ]

    # ---------------------------------------------------------------- optimiser and checkpoints
    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=[p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["kdlight"] = {"model_config": self.model.config.to_dict(), "family": self.family.name, "lora": self.lora_settings,
                                 **self.checkpoint_info}

    def plain_model(self):
        """The model as a user loads it: LoRA's adapters merged into a copy of the weights (the model itself without)."""
        return merged(self.model)

    def samples(self) -> list[list[str]]:
        """The last validation's first rows: [input, gold, prediction]."""
        return list(self._samples[: self.samples_to_log])

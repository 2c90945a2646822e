"""Standard fine-tuning (method=finetune): the label task only, no teacher."""

from __future__ import annotations

from kdlight.methods.base import TrainingMethod, register_training_method


@register_training_method
class Finetune(TrainingMethod):
    name = "finetune"

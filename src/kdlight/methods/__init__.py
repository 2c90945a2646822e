"""Training methods, one registered class each (kdlight.methods.base): finetune, saliency, random,
human, step_by_step, distill, logit_kd, attribution_match, and a plugin's. Importing this package
registers the built-ins (every module in it; no list of them is kept)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kdlight.config import ConfigError
from kdlight.methods.base import TEACHER_NEEDS, TRAINING_METHODS, TrainingMethod, register_training_method
from kdlight.utils.plugins import import_package

if TYPE_CHECKING:
    from omegaconf import DictConfig

import_package(__name__)

__all__ = ["TEACHER_NEEDS", "TRAINING_METHODS", "TrainingMethod", "register_training_method", "training_method"]


def training_method(settings: DictConfig) -> TrainingMethod:
    """The registered method a config's `method` node names, built from that node."""
    name = settings.get("name")
    if name not in TRAINING_METHODS:
        raise ConfigError(f"method.name={name!r} is not known; use one of {sorted(TRAINING_METHODS)}")
    return TRAINING_METHODS[name](settings)

"""Sequence-level distillation (Kim & Rush, 2016; step-by-step's "standard distillation"; method=distill):
the student learns the teacher's greedy answers on the train rows instead of the gold labels, read from
the rationale cache (method.label_source: kdlight.methods.label_sources)."""

from __future__ import annotations

from kdlight.methods.base import TrainingMethod, register_training_method


@register_training_method
class Distill(TrainingMethod):
    name = "distill"
    teacher_need = "rationale_cache"  # the teacher's answers are extracted with its words (attribution.score_teacher)
    label_source_in_name = False  # the teacher's (or PaLM's) answers are what the method is

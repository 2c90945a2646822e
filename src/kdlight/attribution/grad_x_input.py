"""Gradient x input (the paper's method): dF/dx * x, reduced over the hidden size."""

from __future__ import annotations

from kdlight.attribution.base import AttributionBatch, AttributionMethod, AttributionResult, TargetScorer, gradient_attributions
from kdlight.attribution.registry import register_method


@register_method
class GradXInput(AttributionMethod):
    name = "grad_x_input"

    def __call__(self, scorer: TargetScorer, batch: AttributionBatch) -> AttributionResult:
        return gradient_attributions(scorer, batch, lambda grad, embeds: grad * embeds, self.aggregate)

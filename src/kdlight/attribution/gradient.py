"""Saliency: the size of the gradient dF/dx per token (captum's Saliency, abs=True), reduced over the hidden size."""

from __future__ import annotations

from kdlight.attribution.base import AttributionBatch, AttributionMethod, AttributionResult, TargetScorer, gradient_attributions
from kdlight.attribution.registry import register_method


@register_method
class Gradient(AttributionMethod):
    name = "gradient"

    def __call__(self, scorer: TargetScorer, batch: AttributionBatch) -> AttributionResult:
        return gradient_attributions(scorer, batch, lambda grad, embeds: grad.abs(), self.aggregate)

"""Gradient x input (the paper's method): dF/dx * x, reduced over the hidden size."""

from __future__ import annotations

from kdlight.attribution.base import AttributionBatch, AttributionMethod, AttributionResult, TargetScorer, gradient_of_score, reduce_hidden
from kdlight.attribution.registry import register_method


@register_method
class GradXInput(AttributionMethod):
    name = "grad_x_input"

    def __call__(self, scorer: TargetScorer, batch: AttributionBatch) -> AttributionResult:
        embeds = scorer.embed(batch.input_ids)
        _, grad = gradient_of_score(scorer, embeds, batch.attention_mask, batch.labels)
        scores = reduce_hidden(grad.float() * embeds.float(), self.aggregate)
        return AttributionResult(scores * batch.attention_mask.to(scores.dtype))

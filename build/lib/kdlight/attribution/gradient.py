"""Saliency: the size of the gradient dF/dx per token (captum's Saliency, abs=True), reduced over the hidden size."""

from __future__ import annotations

from kdlight.attribution.base import AttributionBatch, AttributionMethod, AttributionResult, TargetScorer, gradient_of_score, reduce_hidden
from kdlight.attribution.registry import register_method


@register_method
class Gradient(AttributionMethod):
    name = "gradient"

    def __call__(self, scorer: TargetScorer, batch: AttributionBatch) -> AttributionResult:
        embeds = scorer.embed(batch.input_ids)
        _, grad = gradient_of_score(scorer, embeds, batch.attention_mask, batch.labels)
        scores = reduce_hidden(grad.float().abs(), self.aggregate)
        return AttributionResult(scores * batch.attention_mask.to(scores.dtype))

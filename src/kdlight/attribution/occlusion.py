"""Occlusion: how much F drops when one eligible unit's tokens are replaced by the baseline.

All unit-removed variants of a batch are scored in batched forward passes (`internal_batch_size`
rows each, cut to their longest real row) and no backward: unit u of example b scores F(x_b) - F(x_b with u's tokens at baseline),
the same for each of its tokens (captum's FeatureAblation with one feature group per unit).
"""

from __future__ import annotations

import torch

from kdlight.attribution.base import (
    BASELINES,
    AttributionBatch,
    AttributionMethod,
    AttributionResult,
    TargetScorer,
    check_choice,
    check_positive_int,
    trimmed_width,
)
from kdlight.attribution.registry import register_method


@register_method
class Occlusion(AttributionMethod):
    name = "occlusion"
    params = {"baseline": "pad", "internal_batch_size": 64}
    keyed = ("baseline",)
    unit_merge = "mean"  # every token of a unit carries the unit's drop

    def check(self) -> None:
        check_choice("baseline", self.baseline, BASELINES)
        check_positive_int("internal_batch_size", self.internal_batch_size)

    @torch.no_grad()
    def __call__(self, scorer: TargetScorer, batch: AttributionBatch) -> AttributionResult:
        embeds = scorer.embed(batch.input_ids)
        baseline = scorer.baseline(self.baseline, batch.input_ids, embeds)
        full = scorer(embeds, batch.attention_mask, batch.labels).float()
        variants = [(b, tuple(tokens)) for b, units in enumerate(batch.units) for tokens in units]
        scores = torch.zeros(batch.input_ids.shape, dtype=torch.float32, device=embeds.device)
        for start in range(0, len(variants), self.internal_batch_size):
            chunk = variants[start : start + self.internal_batch_size]
            examples = torch.tensor([b for b, _ in chunk], device=embeds.device)
            width = trimmed_width(batch.attention_mask[examples])  # variants of an example share its length
            removed = torch.zeros(len(chunk), width, dtype=torch.bool, device=embeds.device)
            for row, (_, tokens) in enumerate(chunk):
                removed[row, list(tokens)] = True
            inputs = torch.where(removed[..., None], baseline[examples, :width], embeds[examples, :width])
            dropped = full[examples] - scorer(inputs, batch.attention_mask[examples, :width], batch.labels[examples]).float()
            for row, (b, tokens) in enumerate(chunk):
                scores[b, list(tokens)] = dropped[row]
        return AttributionResult(scores * batch.attention_mask.to(scores.dtype))

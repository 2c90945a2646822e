"""Integrated gradients: (x - x') * integral over a of dF/dx at x' + a (x - x'), by quadrature.

The n_steps points of every example of a batch are evaluated in chunks of `internal_batch_size` rows
(example, point) per forward and backward, example by example and each chunk cut to its longest real
row: on a CPU a chunk of one example's points has no padding (batching examples buys nothing there),
on a GPU larger chunks hold several examples of similar length (the batch is length-grouped). The
completeness gap sum(attributions) - (F(x) - F(x')) is reported per example: it shrinks as n_steps
grows. Quadrature rules are captum's.
"""

from __future__ import annotations

import numpy as np
import torch

from kdlight.attribution.base import (
    BASELINES,
    AttributionBatch,
    AttributionMethod,
    AttributionResult,
    TargetScorer,
    check_choice,
    check_positive_int,
    gradient_of_score,
    reduce_hidden,
    trimmed_width,
)
from kdlight.attribution.registry import register_method

INTEGRATIONS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")


def quadrature(n_steps: int, integration: str) -> tuple[list[float], list[float]]:
    """(alphas, weights) of the rule: points in [0, 1] and their step sizes."""
    if integration == "gausslegendre":
        points, weights = np.polynomial.legendre.leggauss(n_steps)
        return (0.5 * (1 + points)).tolist(), (0.5 * weights).tolist()
    if n_steps < 2:
        raise ValueError(f"attribution.n_steps={n_steps} is too small for {integration}; use at least 2")
    weights = [1 / n_steps] * n_steps
    if integration == "riemann_trapezoid":
        weights[0] /= 2
        weights[-1] /= 2
        alphas = torch.linspace(0, 1, n_steps)
    elif integration == "riemann_left":
        alphas = torch.linspace(0, 1 - 1 / n_steps, n_steps)
    elif integration == "riemann_right":
        alphas = torch.linspace(1 / n_steps, 1, n_steps)
    else:
        alphas = torch.linspace(1 / (2 * n_steps), 1 - 1 / (2 * n_steps), n_steps)
    return alphas.tolist(), weights


@register_method
class IntegratedGradients(AttributionMethod):
    name = "integrated_gradients"
    params = {"n_steps": 16, "baseline": "pad", "integration": "gausslegendre", "internal_batch_size": 16}
    keyed = ("n_steps", "baseline", "integration")

    def check(self) -> None:
        check_positive_int("n_steps", self.n_steps)
        check_positive_int("internal_batch_size", self.internal_batch_size)
        check_choice("baseline", self.baseline, BASELINES)
        check_choice("integration", self.integration, INTEGRATIONS)

    def __call__(self, scorer: TargetScorer, batch: AttributionBatch) -> AttributionResult:
        embeds = scorer.embed(batch.input_ids)
        baseline = scorer.baseline(self.baseline, batch.input_ids, embeds)
        alphas, weights = quadrature(self.n_steps, self.integration)
        size = embeds.shape[0]
        # Rows are (example, point); chunks of internal_batch_size rows, each cut to its longest row.
        total = torch.zeros_like(embeds, dtype=torch.float32)
        rows = [(p, b) for b in range(size) for p in range(len(alphas))]
        delta = embeds - baseline
        alpha_values = torch.tensor(alphas, dtype=embeds.dtype, device=embeds.device)
        weight_values = torch.tensor(weights, dtype=torch.float32, device=embeds.device)
        for start in range(0, len(rows), self.internal_batch_size):
            chunk = rows[start : start + self.internal_batch_size]
            points = torch.tensor([p for p, _ in chunk], device=embeds.device)
            examples = torch.tensor([b for _, b in chunk], device=embeds.device)
            width = trimmed_width(batch.attention_mask[examples])
            alpha = alpha_values[points][:, None, None]
            inputs = baseline[examples, :width] + alpha * delta[examples, :width]
            _, grad = gradient_of_score(scorer, inputs, batch.attention_mask[examples, :width], batch.labels[examples])
            total[:, :width].index_add_(0, examples, grad.float() * weight_values[points][:, None, None])
        attributions = total * delta.float()
        mask = batch.attention_mask.to(torch.float32)
        with torch.no_grad():
            ends = scorer(torch.cat([embeds, baseline]), batch.attention_mask.repeat(2, 1), batch.labels.repeat(2, 1)).float()
        gap = (attributions * mask[..., None]).sum(dim=(1, 2)) - (ends[:size] - ends[size:])
        scores = reduce_hidden(attributions, self.aggregate) * mask
        return AttributionResult(scores, {"completeness_gap": gap.tolist(), "score_difference": (ends[:size] - ends[size:]).tolist()})

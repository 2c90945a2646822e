"""Attribution: which input words the teacher's answer depends on.

Methods are registered by name (kdlight.attribution.registry) and chosen with `attribution=<name>`:
grad_x_input (the paper's), integrated_gradients, gradient (saliency) and occlusion. Each maps
(scorer, batch) to per-token scores; selection.py turns scores into ranked rationale units,
quality.py measures how faithful and plausible the chosen words are.
"""

from kdlight.attribution import grad_x_input, gradient, integrated_gradients, occlusion  # noqa: F401  (they register)
from kdlight.attribution.base import AttributionBatch, AttributionMethod, AttributionResult, TargetScorer, reduce_hidden
from kdlight.attribution.registry import METHODS, get_method, method_from_settings, register_method

__all__ = [
    "METHODS", "AttributionBatch", "AttributionMethod", "AttributionResult", "TargetScorer", "get_method",
    "method_from_settings", "reduce_hidden", "register_method",
]

"""Attribution: which input words the teacher's answer depends on.

Methods are registered by name (kdlight.attribution.registry) and chosen with `attribution=<name>`:
grad_x_input (the paper's), integrated_gradients, gradient (saliency) and occlusion. Each maps
(scorer, batch) to per-token scores; selection.py turns scores into ranked rationale units,
quality.py measures how faithful and plausible the chosen words are. A new method is one module
that registers it (here, or a plugin's: kdlight.utils.plugins), plus conf/attribution/<name>.yaml. Names are
imported on first use, so `kdlight.attribution.settings` stays importable without torch.
"""

from __future__ import annotations

import importlib

from kdlight.utils.plugins import load_plugins

_EXPORTS = {
    "AttributionBatch": "base", "AttributionMethod": "base", "AttributionResult": "base", "TargetScorer": "base",
    "reduce_hidden": "base", "METHODS": "registry", "get_method": "registry", "method_from_settings": "registry",
    "register_method": "registry",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'kdlight.attribution' has no attribute {name!r}")
    if _EXPORTS[name] == "registry":  # registering the methods is importing them: the built-ins and the plugins

        load_plugins()
    return getattr(importlib.import_module(f"kdlight.attribution.{_EXPORTS[name]}"), name)

"""The registry of attribution methods (`attribution=<method>` in the config).

Adding a method is one module with an AttributionMethod subclass decorated with `@register_method`,
plus conf/attribution/<name>.yaml: in kdlight/attribution/ (every module there is imported), or in a
plugin module of your own (kdlight.utils.plugins).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kdlight.attribution.base import AttributionMethod
from kdlight.utils.registry import Registry

METHODS: Registry = Registry("attribution method", "attribution.method")
register_method = METHODS.decorator()


def get_method(name: str, aggregate: str = "l2", **params: Any) -> AttributionMethod:
    return METHODS.lookup(name)(aggregate=aggregate, **params)


def method_from_settings(attribution: Mapping[str, Any]) -> AttributionMethod:
    """The method an attribution config names, with its own settings taken from the same node."""
    name = attribution.get("method", "grad_x_input")
    own = {key: attribution[key] for key in METHODS.lookup(name).params if key in attribution}
    return get_method(name, attribution.get("aggregate", "l2"), **own)

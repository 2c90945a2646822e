"""The registry of attribution methods (`attribution=<method>` in the config).

Adding a method is one module in kdlight/attribution/ with an AttributionMethod subclass decorated
with `@register_method`, listed in kdlight/attribution/__init__.py, plus conf/attribution/<name>.yaml.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kdlight.attribution.base import AttributionMethod

METHODS: dict[str, type[AttributionMethod]] = {}


def register_method(cls: type[AttributionMethod]) -> type[AttributionMethod]:
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ValueError(f"attribution method {cls.name!r} is registered twice")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str, aggregate: str = "l2", **params: Any) -> AttributionMethod:
    if name not in METHODS:
        raise ValueError(f"attribution.method={name!r} is not accepted; use one of {sorted(METHODS)}")
    return METHODS[name](aggregate=aggregate, **params)


def method_from_settings(attribution: Mapping[str, Any]) -> AttributionMethod:
    """The method an attribution config names, with its own settings taken from the same node."""
    name = attribution.get("method", "grad_x_input")
    if name not in METHODS:
        raise ValueError(f"attribution.method={name!r} is not accepted; use one of {sorted(METHODS)}")
    own = {key: attribution[key] for key in METHODS[name].params if key in attribution}
    return get_method(name, attribution.get("aggregate", "l2"), **own)

"""Checking attribution settings without importing torch or Lightning (config validation)."""

from __future__ import annotations

from typing import Any, Mapping

AGGREGATES = ("l2", "sum", "abs_sum")
UNITS = ("word", "token")
WORD_SCORES = ("sum", "max", "mean")
ORDERS = ("input", "score")
TARGETS = ("gold", "prediction")


def check_attribution(attribution: Mapping[str, Any]) -> None:
    """Reject attribution settings that cannot work, naming the key and the accepted values."""
    for key, accepted in (
        ("target", TARGETS), ("aggregate", AGGREGATES), ("unit", UNITS), ("word_score", WORD_SCORES), ("order", ORDERS)
    ):
        if attribution[key] not in accepted:
            raise ValueError(f"attribution.{key}={attribution[key]!r} is not accepted; use one of {list(accepted)}")
    if isinstance(attribution["max_k"], bool) or not isinstance(attribution["max_k"], int) or attribution["max_k"] < 1:
        raise ValueError(f"attribution.max_k={attribution['max_k']!r} is not accepted; use an integer >= 1")

"""Attribution settings shared by every method, checked without importing torch (config validation).

Which of them change the scores (and so enter the rationale cache key) is said here once:
k, order, batch sizes, worker counts and file layout only slice or schedule the work.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

AGGREGATES = ("l2", "sum", "abs_sum")
UNITS = ("word", "token")
WORD_SCORES = ("sum", "max", "mean")
ORDERS = ("input", "score")
TARGETS = ("gold", "prediction")
QUALITY_CONVENTIONS = ("kdlight", "eraser")  # quality.convention: kdlight's nats at absolute k; ERASER's too

# Shared settings that change what the cache holds; each method adds its own (its `keyed` params).
KEYED_SETTINGS = (
    "target", "aggregate", "unit", "word_score", "drop_stopwords", "drop_punctuation", "max_k",
    "max_input_length", "max_target_length", "score_teacher",
)
POSITIVE_INTEGERS = ("max_k", "batch_size", "max_input_length", "max_target_length", "flush_batches", "shard_rows", "chunk_rows")
NON_NEGATIVE_INTEGERS = ("num_workers", "show_rows")


def check_shared(attribution: Mapping[str, Any]) -> None:
    """Reject shared settings that cannot work, naming the key and the accepted values."""
    for key, accepted in (
        ("target", TARGETS), ("aggregate", AGGREGATES), ("unit", UNITS), ("word_score", WORD_SCORES), ("order", ORDERS)
    ):
        if attribution[key] not in accepted:
            raise ValueError(f"attribution.{key}={attribution[key]!r} is not accepted; use one of {list(accepted)}")
    for key in POSITIVE_INTEGERS:
        value = attribution.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"attribution.{key}={value!r} is not accepted; use an integer >= 1")
    convention = (attribution.get("quality") or {}).get("convention", "kdlight")
    if convention not in QUALITY_CONVENTIONS:
        raise ValueError(f"attribution.quality.convention={convention!r} is not accepted; use one of {list(QUALITY_CONVENTIONS)}")
    for key in NON_NEGATIVE_INTEGERS:
        value = attribution.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"attribution.{key}={value!r} is not accepted; use an integer >= 0")

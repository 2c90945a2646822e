"""Tokenised features on disk: one Arrow file per split, built a chunk at a time, memory-mapped.

Keyed by kdlight's own fingerprint of what they depend on (the examples, the rendering and prefixes,
the tokenizer, the lengths, the rationale source), so a cached setup opens a file instead of
tokenising; DDP ranks and DataLoader workers share its pages instead of each holding Python lists.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import torch

from kdlight.data.store import open_table, take_rows
from kdlight.io import atomic_path

log = logging.getLogger(__name__)

FEATURES_VERSION = 2  # 2: teacher_input_ids
IDS = pa.list_(pa.int32())
SCHEMA = pa.schema([
    ("index", pa.int64()),  # row of the example in its split
    ("label_text", pa.string()),
    ("input_ids", IDS),
    ("labels", IDS),
    ("rationale_input_ids", IDS),  # null where the example has no rationale
    ("rationale_labels", IDS),
    ("rationale_text", pa.string()),
    ("teacher_input_ids", IDS),  # the teacher's prompt (logit distillation, train split only); else null
    ("match_positions", IDS),  # attribution matching (train split): student token positions of the teacher's words
    ("match_words", IDS),  # ... the index of the word each position belongs to
    ("match_weights", pa.list_(pa.float32())),  # ... the teacher's normalised |word scores|
])


def features_key(fields: dict) -> str:
    return hashlib.sha256(json.dumps({"version": FEATURES_VERSION, **fields}, sort_keys=True, default=str).encode()).hexdigest()[:16]


def feature_batch(columns: dict) -> pa.RecordBatch:
    """A record batch of the features schema; a column not given (an objective's, unused) is all null."""
    rows = len(columns["index"])
    return pa.RecordBatch.from_pydict({name: columns.get(name, pa.nulls(rows, SCHEMA.field(name).type)) for name in SCHEMA.names},
                                      schema=SCHEMA)


def write_features(batches: Iterable[pa.RecordBatch], path: Path | None) -> pa.Table:
    """Record batches into a features file, or an in-memory table without a path."""
    sink = pa.BufferOutputStream() if path is None else None

    def write(target) -> None:
        with pa.ipc.new_file(target, SCHEMA) as writer:
            for batch in batches:
                writer.write_batch(batch)

    if path is None:
        write(sink)
        return pa.ipc.open_file(sink.getvalue()).read_all()
    with atomic_path(path, suffix=".arrow") as tmp:
        write(str(tmp))
    return open_table(path)


class FeatureRows(torch.utils.data.Dataset):
    """Map-style dataset over a features table; fetches whole batches at once (__getitems__)."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitems__(self, indices: list[int]) -> list[dict]:
        return take_rows(self.table, indices).to_pylist()

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([index])[0]

    def head(self, n: int) -> list[dict]:
        return self.table.slice(0, n).to_pylist()

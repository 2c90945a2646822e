"""Tokenised features on disk: one Arrow file per split, built a chunk at a time, memory-mapped.

Keyed by kdlight's own fingerprint of what they depend on (the examples, the rendering and prefixes,
the tokenizer, the lengths, the rationale source), so a cached setup opens a file instead of
tokenising; DDP ranks and DataLoader workers share its pages instead of each holding Python lists.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import torch

from kdlight.data.store import open_table, take_rows
from kdlight.utils.io import atomic_path, json_digest

log = logging.getLogger(__name__)

FEATURES_VERSION = 2  # 2: the train columns a label-task objective adds
IDS = pa.list_(pa.int32())
SCHEMA = pa.schema([  # every run's columns; a method's train columns follow (feature_schema)
    ("index", pa.int64()),  # row of the example in its split
    ("label_text", pa.string()),
    ("input_ids", IDS),
    ("labels", IDS),
    ("rationale_input_ids", IDS),  # null where the example has no rationale
    ("rationale_labels", IDS),
    ("rationale_text", pa.string()),
])
# The cache key of version 2 names these train column sets (null when a run has none): kept in every
# key so that features cached before methods declared their own columns still hit.
KEYED_COLUMN_SETS = ("teacher_inputs", "word_scores")


class TrainColumns(Protocol):
    """Feature columns a training method adds to the train rows (valid and test are scored by the
    student alone): kdlight.methods' TeacherInputs and TeacherWordScores, or a plugin's."""

    key: str  # its name in the features' cache key
    fields: Sequence[tuple[str, pa.DataType]]  # the columns it adds
    needs_offsets: bool  # reads the teacher's prompts and the student's token offsets

    def fingerprint(self, split: str) -> object: ...  # what its columns depend on (JSON-able)

    def columns(self, split: str, start: int, examples: Sequence, prompts: Sequence | None, inputs: Sequence | None,
                offsets: Sequence | None) -> dict[str, list]: ...

    def collate(self, features: list[dict]) -> dict: ...  # what it adds to a batch ({} when the rows have none)


def feature_schema(train_columns: Sequence[TrainColumns] = ()) -> pa.Schema:
    """SCHEMA with the train columns' fields after it."""
    extra = [field for columns in train_columns for field in columns.fields]
    return pa.schema([*SCHEMA, *(pa.field(name, kind) for name, kind in extra)])


def features_key(fields: dict) -> str:
    return json_digest({"version": FEATURES_VERSION, **fields}, 16)


def feature_batch(columns: dict, schema: pa.Schema = SCHEMA) -> pa.RecordBatch:
    """A record batch of `schema`; a column not given (a train column on valid rows) is all null."""
    rows = len(columns["index"])
    return pa.RecordBatch.from_pydict({name: columns.get(name, pa.nulls(rows, schema.field(name).type)) for name in schema.names},
                                      schema=schema)


def write_features(batches: Iterable[pa.RecordBatch], path: Path | None, schema: pa.Schema = SCHEMA) -> pa.Table:
    """Record batches into a features file, or an in-memory table without a path."""
    sink = pa.BufferOutputStream() if path is None else None

    def write(target) -> None:
        with pa.ipc.new_file(target, schema) as writer:
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


def tokenizer_fingerprint(tokenizer) -> str:
    """Identifies a tokenizer by what it does, not by where it was loaded from: a fast tokenizer's
    whole definition (normaliser, vocabulary, special-token template), else its vocabulary."""
    digest = hashlib.sha256()
    digest.update(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    digest.update(json.dumps(tokenizer.all_special_tokens).encode())
    return digest.hexdigest()[:16]

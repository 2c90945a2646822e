"""Tokenisation (cached on disk) and the collator that pads the label and rationale batches."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.nn.utils.rnn import pad_sequence

from kdlight.io import atomic_path

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # positions of the target that the loss skips
TOKENIZE_CHUNK = 1000


def tokenizer_fingerprint(tokenizer) -> str:
    """Identifies a tokenizer by what it does, not by where it was loaded from."""
    digest = hashlib.sha256()
    digest.update(type(tokenizer).__name__.encode())
    digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    digest.update(json.dumps(tokenizer.all_special_tokens).encode())
    return digest.hexdigest()[:16]


def _texts_digest(columns: dict[str, Sequence[str | None]], max_lengths: dict[str, int]) -> str:
    digest = hashlib.sha256(json.dumps(max_lengths, sort_keys=True).encode())
    for name in sorted(columns):
        digest.update(name.encode())
        for text in columns[name]:
            digest.update(b"\x00" if text is None else text.encode() + b"\x01")
    return digest.hexdigest()[:16]


def tokenize_columns(
    tokenizer,
    columns: dict[str, Sequence[str | None]],
    max_lengths: dict[str, int],
    cache_dir: str | Path | None = None,
    tag: str = "",
) -> dict[str, list[list[int] | None]]:
    """Token ids for each text column (None stays None), read from the cache when the same
    tokenizer, lengths and texts were tokenised before."""
    cache_path = None
    if cache_dir is not None:
        key = f"{tokenizer_fingerprint(tokenizer)}-{_texts_digest(columns, max_lengths)}"
        cache_path = Path(cache_dir) / "tokenized" / f"{tag}{key}.parquet"
        if cache_path.is_file():
            log.info("tokenisation cache hit: %s", cache_path)
            table = pq.read_table(cache_path)
            return {name: table.column(name).to_pylist() for name in columns}
    out: dict[str, list[list[int] | None]] = {}
    for name, texts in columns.items():
        ids: list[list[int] | None] = [None] * len(texts)
        present = [i for i, t in enumerate(texts) if t is not None]
        for start in range(0, len(present), TOKENIZE_CHUNK):
            chunk = present[start : start + TOKENIZE_CHUNK]
            encoded = tokenizer(
                [texts[i] for i in chunk], max_length=max_lengths[name], truncation=True
            )["input_ids"]
            for i, row in zip(chunk, encoded):
                ids[i] = list(row)
        out[name] = ids
    if cache_path is not None:
        table = pa.table({name: pa.array(values, type=pa.list_(pa.int32())) for name, values in out.items()})
        with atomic_path(cache_path) as tmp:
            pq.write_table(table, tmp)
        log.info("tokenised %d rows into %s", len(next(iter(columns.values()), [])), cache_path)
    return out


def pad_task_batch(inputs: list[list[int]], targets: list[list[int]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """One task's batch: inputs padded with the pad token, targets with IGNORE_INDEX."""
    input_ids = pad_sequence([torch.tensor(x, dtype=torch.long) for x in inputs], batch_first=True, padding_value=pad_token_id)
    lengths = torch.tensor([len(x) for x in inputs])
    attention_mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
    labels = pad_sequence([torch.tensor(y, dtype=torch.long) for y in targets], batch_first=True, padding_value=IGNORE_INDEX)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@dataclass
class DualTaskCollator:
    """Pads each batch to its own longest sequence.

    Yields {"label": {input_ids, attention_mask, labels}, "rationale": {...}, "index": tensor,
    "label_text": [...], "rationale_text": [...]}. "rationale" holds only the rows that have a
    rationale, and is absent when none has one.
    """

    pad_token_id: int

    def __call__(self, features: list[dict]) -> dict:
        batch = {
            "label": pad_task_batch([f["input_ids"] for f in features], [f["labels"] for f in features], self.pad_token_id),
            "index": torch.tensor([f["index"] for f in features], dtype=torch.long),
            "label_text": [f.get("label_text") for f in features],
            "rationale_text": [f.get("rationale_text") for f in features],
        }
        with_rationale = [f for f in features if f.get("rationale_labels")]
        if with_rationale:
            batch["rationale"] = pad_task_batch(
                [f["rationale_input_ids"] for f in with_rationale],
                [f["rationale_labels"] for f in with_rationale],
                self.pad_token_id,
            )
        return batch

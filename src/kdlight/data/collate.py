"""The collator: padded label and rationale batches, shaped by the model family."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class TaskCollator:
    """Yields {"label": family batch, "rationale": family batch (only the rows that have a rationale,
    `rows` saying which; absent when none has one), "index": tensor, "label_text": [...], "rationale_text": [...]},
    and what the method's train columns add (e.g. "teacher": the teacher's batch, for logit distillation).
    A family batch holds the training tensors and the prompt alone for generation (kdlight.families)."""

    family: object
    pad_token_id: int
    train_columns: Sequence = ()  # kdlight.data.features.TrainColumns

    def __call__(self, features: list[dict]) -> dict:
        batch = {
            "label": self.family.task_batch([f["input_ids"] for f in features], [f["labels"] for f in features], self.pad_token_id),
            "index": torch.tensor([f["index"] for f in features], dtype=torch.long),
            "label_text": [f["label_text"] for f in features],
            "rationale_text": [f.get("rationale_text") for f in features],
        }
        for columns in self.train_columns:
            batch.update(columns.collate(features))
        rows = [i for i, f in enumerate(features) if f.get("rationale_labels")]
        if rows:
            batch["rationale"] = self.family.task_batch(
                [features[i]["rationale_input_ids"] for i in rows], [features[i]["rationale_labels"] for i in rows], self.pad_token_id,
            )
            batch["rationale"]["rows"] = torch.tensor(rows, dtype=torch.long)  # the label rows they belong to
        return batch

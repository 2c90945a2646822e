"""The collator: padded label and rationale batches, shaped by the model family."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import pad_sequence

from kdlight.families.base import pad_right


@dataclass
class TaskCollator:
    """Yields {"label": family batch, "rationale": family batch (only the rows that have a rationale,
    `rows` saying which; absent when none has one), "teacher": the teacher family's batch of its prompts
    and the same targets (logit distillation, train rows), "index": tensor, "label_text": [...], "rationale_text": [...]}.
    A family batch holds the training tensors and the prompt alone for generation (kdlight.families)."""

    family: object
    pad_token_id: int
    teacher_family: object | None = None  # with teacher_input_ids: the teacher's batch (logit distillation)
    teacher_pad_token_id: int | None = None

    def __call__(self, features: list[dict]) -> dict:
        batch = {
            "label": self.family.task_batch([f["input_ids"] for f in features], [f["labels"] for f in features], self.pad_token_id),
            "index": torch.tensor([f["index"] for f in features], dtype=torch.long),
            "label_text": [f["label_text"] for f in features],
            "rationale_text": [f.get("rationale_text") for f in features],
        }
        if self.teacher_family is not None and all(f.get("teacher_input_ids") for f in features):
            batch["teacher"] = self.teacher_family.task_batch(
                [f["teacher_input_ids"] for f in features], [f["labels"] for f in features], self.teacher_pad_token_id,
            )
        if any(f.get("match_weights") for f in features):  # attribution matching: the teacher's words per row
            batch["match"] = {
                "positions": pad_right([f.get("match_positions") or [] for f in features], -1),
                "words": pad_right([f.get("match_words") or [] for f in features], -1),
                "weights": pad_sequence([torch.tensor(f.get("match_weights") or [], dtype=torch.float32) for f in features],
                                        batch_first=True, padding_value=-1.0),
            }
        rows = [i for i, f in enumerate(features) if f.get("rationale_labels")]
        if rows:
            batch["rationale"] = self.family.task_batch(
                [features[i]["rationale_input_ids"] for i in rows], [features[i]["rationale_labels"] for i in rows], self.pad_token_id,
            )
            batch["rationale"]["rows"] = torch.tensor(rows, dtype=torch.long)  # the label rows they belong to
        return batch

"""TeacherModule: a frozen seq2seq model whose predict_step scores every input token."""

from __future__ import annotations

from typing import Any, Mapping

import pytorch_lightning as pl
import torch

from kdlight.metrics import answer_correct
from kdlight.teacher.saliency import fuse_activations, grad_x_input, greedy_targets
from kdlight.teacher.selection import eligible_units, rank_units
from kdlight.teacher.settings import check_attribution

class TeacherModule(pl.LightningModule):
    """Wraps any AutoModelForSeq2SeqLM. Frozen, in eval mode; run it with Trainer(inference_mode=False).

    predict_step(batch) returns {"batch_id", "token_scores" (one fp32 tensor per example, its own
    length), "rows" (the ranked units per example, in the rationale cache's schema)}.
    """

    def __init__(
        self,
        model,
        tokenizer,
        attribution: Mapping[str, Any],
        name: str = "teacher",
        precision: str = "bf16",
        answer_kind: str = "text",
    ) -> None:
        super().__init__()
        check_attribution(attribution)
        self.model = model
        self.tokenizer = tokenizer
        self.attribution = dict(attribution)
        self.teacher_name = name
        self.precision_name = precision
        self.answer_kind = answer_kind
        self.freeze_model()

    def freeze_model(self) -> None:
        self.model.eval()
        self.model.requires_grad_(False)
        fuse_activations(self.model)

    def on_predict_start(self) -> None:
        self.freeze_model()
        if self.device.type == "cuda" and self.precision_name == "bf16":
            self.model.to(torch.bfloat16)

    def transfer_batch_to_device(self, batch: dict, device: torch.device, dataloader_idx: int) -> dict:
        # Only the tensors move; prompts and offsets are plain Python for the CPU-side selection.
        return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}

    def token_scores(self, input_ids, attention_mask, labels) -> torch.Tensor:
        return grad_x_input(self.model, input_ids, attention_mask, labels, self.attribution["aggregate"])

    def greedy(self, input_ids, attention_mask) -> torch.Tensor:
        return greedy_targets(
            self.model, input_ids, attention_mask, self.attribution["max_target_length"], self.tokenizer.pad_token_id
        )

    def predict_step(self, batch: dict, batch_idx: int = 0) -> dict:
        att = self.attribution
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        predicted = None
        if att["target"] == "prediction" or att["score_teacher"]:
            predicted = self.greedy(input_ids, attention_mask)
        labels = predicted if att["target"] == "prediction" else batch["labels"]
        scores = self.token_scores(input_ids, attention_mask, labels).cpu()
        answers = None
        if predicted is not None and att["score_teacher"]:
            answers = self.tokenizer.batch_decode(predicted.clamp(min=0).cpu(), skip_special_tokens=True)
        lengths = attention_mask.sum(dim=1).tolist()
        token_scores, rows = [], []
        for j, (row, example_id, prompt, offsets) in enumerate(
            zip(batch["rows"], batch["ids"], batch["prompts"], batch["offsets"])
        ):
            own = scores[j, : lengths[j]]
            token_scores.append(own)
            units = eligible_units(
                prompt, offsets, own.tolist(), att["unit"], att["word_score"], att["drop_stopwords"], att["drop_punctuation"]
            )
            ranked = rank_units(units, att["max_k"])
            answer = answers[j].strip() if answers is not None else None
            rows.append(
                {
                    "row": row,
                    "id": example_id,
                    "n_tokens": lengths[j],
                    "n_eligible": len(units),
                    "texts": [u.text for u in ranked],
                    "scores": [u.score for u in ranked],
                    "starts": [u.start for u in ranked],
                    "ends": [u.end for u in ranked],
                    "unit_starts": [u.start for u in units],
                    "unit_ends": [u.end for u in units],
                    "unit_scores": [u.score for u in units],
                    "teacher_answer": answer,
                    "teacher_correct": None if answer is None else answer_correct(answer, batch["golds"][j], self.answer_kind),
                }
            )
        return {"batch_id": batch["batch_id"], "token_scores": token_scores, "rows": rows}

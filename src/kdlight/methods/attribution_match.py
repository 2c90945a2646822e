"""Attribution matching (method=attribution_match): the student's own gradient x input over its input
words is pulled towards the teacher's cached word scores, across tokenizers.

The teacher's scores (rationale cache: unit_starts/unit_ends/unit_scores, character spans of the
teacher prompt) are moved onto the student's input through the content spans both renderings share;
each teacher word meets the student word with the same characters and, through the student
tokenizer's offsets, that word's tokens (sentencepiece, WordPiece or byte-level BPE alike). AD-KD
(Wu et al., 2023) matches attributions token by token within one tokenizer; words make the two
models comparable whatever their vocabularies.

The loss: L_label = (1 - weight) * cross-entropy + weight * KL(p_teacher || p_student), where p_teacher
normalises the teacher's |word scores| and p_student the student's word scores (the L2 norm over the
hidden size of gradient x input per token, summed over a word's tokens), computed with a graph of the
gradient (a second backward pass) so that the student learns where to look, not only what to answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from kdlight.attribution.selection import unit_spans
from kdlight.data.tasks import move_spans
from kdlight.methods.base import TrainingMethod, register_training_method
from kdlight.teacher.cache import split_cache
from kdlight.training.losses import attribution_match_kl

if TYPE_CHECKING:
    import torch

    from kdlight.data.tasks import Example, Rendered
    from kdlight.teacher.cache import RationaleCache


@register_training_method
class AttributionMatching(TrainingMethod):
    """The label task with the attribution term (its YAML sets method.distillation to AttributionMatch)."""

    name = "attribution_match"


class TeacherWordScores:
    """Train-only feature columns (kdlight.data.features.TrainColumns): the student's input tokens grouped
    by the teacher's words, with the teacher's normalised word scores (match_positions, match_words,
    match_weights), batched as {"match": {"positions", "words", "weights"}}."""

    key = "word_scores"  # its name in the features' cache key
    fields = (("match_positions", pa.list_(pa.int32())), ("match_words", pa.list_(pa.int32())),
              ("match_weights", pa.list_(pa.float32())))
    needs_offsets = True  # the student's token offsets and the teacher's prompts

    def __init__(self, caches: Mapping[str, RationaleCache] | None = None) -> None:
        self.caches = dict(caches or {})

    def fingerprint(self, split: str) -> str:
        return f"teacher-word-scores-{split_cache(self.caches, split, 'attribution matching').key}"

    def columns(self, split: str, start: int, examples: Sequence[Example], prompts: Sequence[Rendered],
                inputs: Sequence[Rendered], offsets: Sequence[Sequence[tuple[int, int]]]) -> dict[str, list]:
        rows = split_cache(self.caches, split, "attribution matching").rows_of(
            start, list(examples), ["unit_starts", "unit_ends", "unit_scores"])
        rows = [self.scored(split, start + i, row) for i, row in enumerate(rows)]
        matches = [word_targets(r, prompt, given, tokens) for r, prompt, given, tokens in zip(rows, prompts, inputs, offsets)]
        return {name: [m[name] if m else None for m in matches] for name, _ in self.fields}

    def scored(self, split: str, index: int, row: dict) -> dict:
        """The cached row whose unit_scores are matched (an ablation may change them)."""
        return row

    def collate(self, features: list[dict]) -> dict:
        if not any(f.get("match_weights") for f in features):
            return {}
        import torch  # lazy: off the config check's import path (tests/test_train.py)
        from torch.nn.utils.rnn import pad_sequence  # lazy: off the config check's import path (tests/test_train.py)

        from kdlight.families.base import pad_right  # lazy: off the config check's import path (tests/test_train.py)

        return {"match": {
            "positions": pad_right([f.get("match_positions") or [] for f in features], -1),
            "words": pad_right([f.get("match_words") or [] for f in features], -1),
            "weights": pad_sequence([torch.tensor(f.get("match_weights") or [], dtype=torch.float32) for f in features],
                                    batch_first=True, padding_value=-1.0),
        }}


def word_targets(row: dict, prompt: Rendered, student_input: Rendered, offsets: Sequence[tuple[int, int]]) -> dict | None:
    """One example's columns: the student token positions of each teacher word found in the student's
    input (in the teacher's unit order), that word's index, and the teacher's |score| distribution."""
    student_words = {(u.start, u.end): u.tokens for u in unit_spans(student_input, offsets, "word", drop_punctuation=False)}
    moved = move_spans(list(zip(row["unit_starts"], row["unit_ends"])), prompt, student_input)
    positions, words, weights = [], [], []
    for span, score in zip(moved, row["unit_scores"]):
        tokens = student_words.get(tuple(span))
        if not tokens:  # cut by the student's max_input_length
            continue
        positions += tokens
        words += [len(weights)] * len(tokens)
        weights.append(abs(float(score)))
    total = sum(weights)
    if not total:
        return None
    return {"match_positions": positions, "match_words": words, "match_weights": [w / total for w in weights]}


class AttributionMatch:
    """The label task's objective with the attribution term (a built object: method.distillation)."""

    method_name = "attribution_match"
    teacher_need = "rationale_cache"  # the teacher's word scores, every eligible word's

    def __init__(self, weight: float = 0.5) -> None:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
            raise ValueError(f"method.distillation.weight={weight!r} is not accepted; use a number with 0 <= weight <= 1")
        self.weight = float(weight)

    def prepare(self, teacher, student: tuple, caches: dict) -> list[TeacherWordScores]:
        """No teacher model in the step: its word scores become train columns."""
        return [TeacherWordScores(caches)]

    def to(self, device) -> None:
        """Nothing to move: no teacher model in the step."""

    def label_losses(self, model, family, batch: dict) -> dict[str, torch.Tensor]:
        """{"loss_label": the mixed label loss, "loss_label_ce": cross-entropy, "loss_match": the KL term}."""
        import torch  # lazy: off the config check's import path (tests/test_train.py)
        from torch.nn.attention import SDPBackend, sdpa_kernel  # lazy: off the config check's import path (tests/test_train.py)

        from kdlight.families.base import IGNORE_INDEX  # lazy: off the config check's import path (tests/test_train.py)

        label = batch["label"]
        targets = label.get("target_ids", label["labels"])  # a decoder-only batch keeps its targets apart
        embeds = family.prompt_embeddings(model, label["prompt_ids"]).requires_grad_(True)
        with sdpa_kernel(SDPBackend.MATH):  # fused attention kernels have no second derivative
            token_log_probs = family.target_token_log_probs(model, embeds, label["prompt_mask"], targets)
        present = targets[:, : token_log_probs.shape[1]].ne(IGNORE_INDEX)
        ce = -token_log_probs.sum() / present.sum().clamp(min=1)
        match = batch.get("match")
        if match is None:  # no row of this batch has teacher word scores
            return {"loss_label": ce, "loss_label_ce": ce}
        (grads,) = torch.autograd.grad(token_log_probs.sum(), embeds, create_graph=True)
        token_scores = torch.sqrt(((grads * embeds).float() ** 2).sum(dim=-1) + 1e-12)  # L2 as the teacher's default, eps: differentiable at 0
        kl = attribution_match_kl(token_scores, match["positions"], match["words"], match["weights"])
        return {"loss_label": (1.0 - self.weight) * ce + self.weight * kl, "loss_label_ce": ce, "loss_match": kl}

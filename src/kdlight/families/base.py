"""What a model family adapter does, and the tensor helpers every family shares.

An adapter is the only code that knows how its family embeds inputs, scores a target
teacher-forced, generates, computes the student's loss and is loaded. Everything else in kdlight
(selection, caches, DataModules, rationale sources, reports) sees token ids and these methods.

Batches are built from token-id lists by `task_batch`: `input_ids`/`attention_mask`/`labels` are
what the model trains on, `prompt_ids`/`prompt_mask` the prompt alone (right-padded) for generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch.nn.utils.rnn import pad_sequence

IGNORE_INDEX = -100  # target positions the loss and the score skip


def pad_right(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    return pad_sequence([torch.tensor(list(r), dtype=torch.long) for r in rows], batch_first=True, padding_value=value)


def lengths_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    return (torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]).long()


def to_left_padding(ids: torch.Tensor, mask: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded rows -> the same rows left-padded (decoder-only generation continues the last token)."""
    lengths = mask.sum(dim=1)
    width = ids.shape[1]
    shift = (width - lengths)[:, None]
    source = (torch.arange(width, device=ids.device)[None, :] - shift).clamp(min=0)
    left_mask = (torch.arange(width, device=ids.device)[None, :] >= shift).long()
    left_ids = torch.where(left_mask.bool(), ids.gather(1, source), torch.full_like(ids, pad_id))
    return left_ids, left_mask


def label_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(label token) at each target position [batch, targets], in fp32; 0 where IGNORE_INDEX."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    picked = log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return picked * labels.ne(IGNORE_INDEX)


def first_end_masked(tokens: torch.Tensor, end_id: int | None, pad_id: int | None) -> torch.Tensor:
    """Generated continuations as target labels: IGNORE_INDEX strictly after the first end token and on padding."""
    labels = tokens.clone()
    ignored = torch.zeros_like(labels, dtype=torch.bool)
    if end_id is not None:
        is_end = labels.eq(end_id)
        ignored |= (torch.cumsum(is_end, dim=1) - is_end.long()) > 0
    if pad_id is not None and pad_id != end_id:
        ignored |= labels.eq(pad_id)
    labels[ignored] = IGNORE_INDEX
    return labels


class ModelFamily:
    """Base of the adapters in kdlight.families (seq2seq, causal)."""

    name: ClassVar[str]
    auto_class: ClassVar[str]  # the transformers Auto class that loads this family
    generation_padding_side: ClassVar[str] = "right"  # how a tokenizer pads a batch of prompts to generate from

    # ------------------------------------------------------------ loading
    def matches(self, config) -> bool:
        raise NotImplementedError

    def prepare(self, model, tokenizer) -> None:
        """Complete what a model folder may lack (special ids, a pad token) from the tokenizer."""
        raise NotImplementedError

    # ------------------------------------------------------------ batches and training
    def task_batch(self, inputs: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], pad_id: int) -> dict:
        raise NotImplementedError

    def loss(self, model, batch: dict) -> torch.Tensor:
        """Mean cross-entropy over the target tokens of the batch."""
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss

    def task_losses(self, model, label: dict, rationale: dict | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The student's two losses (the rationale's None without a rationale batch, whose `rows` are
        the label rows it belongs to): one forward each; a family may share work between them."""
        return self.loss(model, label), None if rationale is None else self.loss(model, rationale)

    def generate(self, model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, max_new_tokens: int, **kwargs) -> torch.Tensor:
        """Greedy continuation ids [batch, new tokens] of right-padded prompts (no prompt, no start token)."""
        raise NotImplementedError

    # ------------------------------------------------------------ attribution
    def prompt_embeddings(self, model, input_ids: torch.Tensor) -> torch.Tensor:
        """The embeddings the prompt enters the model with (detached; attribution differentiates them)."""
        raise NotImplementedError

    def target_token_log_probs(self, model, embeds: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """log p(label_t | prompt, label_<t) [batch, targets], teacher-forced, fp32, from prompt embeddings."""
        raise NotImplementedError

    def target_log_probs(self, model, embeds: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """F: the target's summed log-probability per example [batch] (what attribution explains)."""
        return self.target_token_log_probs(model, embeds, attention_mask, labels).sum(dim=-1)

    def output_vocab_size(self, model) -> int:
        return int(model.get_output_embeddings().weight.shape[0])

"""Decoder-only language models: GPT-2, Llama, Qwen, Mistral, SmolLM and the like.

The target is a continuation of the prompt. Training uses one left-padded sequence per example,
`prompt + target` (explicit position ids), so that every row's target ends at the last position and
the language-model head runs only over the last `longest target + 1` positions (with 50k-150k-word
vocabularies the head over every prompt position was most of a step's cost); the loss is on the
target positions only. Generation left-pads the prompts so that every row continues from its last token. The teacher's score is
sum log p(target | prompt) on `prompt + target`, differentiated with respect to the prompt's
input embeddings (only prompt positions can be attributed).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence

import torch
from transformers import DynamicCache

from kdlight.families.base import IGNORE_INDEX, ModelFamily, label_log_probs, lengths_mask, pad_right, register_family, to_left_padding
from kdlight.families.text import end_token_id
from kdlight.utils.runtime import announce_once

log = logging.getLogger(__name__)


class CausalFamily(ModelFamily):
    name = "causal"
    auto_class = "AutoModelForCausalLM"
    generation_padding_side = "left"  # every row continues from its last token

    def matches(self, config, architectures) -> bool:
        return any(a.endswith(("ForCausalLM", "LMHeadModel")) and not a.endswith("WithLMHeadModel") for a in architectures)

    def prepare(self, model, tokenizer) -> None:
        """A missing pad token falls back to eos (with one warning); generation stops at the end token."""
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
            announce_once(("causal-pad", tokenizer.name_or_path), "tokenizer %r has no pad token: using its eos token %r",
                          tokenizer.name_or_path, tokenizer.eos_token, logger=log)
        end = end_token_id(tokenizer)
        model.config.pad_token_id = model.generation_config.pad_token_id = tokenizer.pad_token_id
        if model.generation_config.eos_token_id is None:
            model.generation_config.eos_token_id = end

    def task_batch(self, inputs: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], pad_id: int) -> dict:
        sequences = [list(x) + list(y) for x, y in zip(inputs, targets)]
        width = max(len(s) for s in sequences)
        input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
        labels = torch.full((len(sequences), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, (sequence, target) in enumerate(zip(sequences, targets)):
            input_ids[row, width - len(sequence) :] = torch.tensor(sequence)
            attention_mask[row, width - len(sequence) :] = 1
            labels[row, width - len(target) :] = torch.tensor(list(target))
        prompt_ids = pad_right(inputs, pad_id)
        prompt_mask = lengths_mask(torch.tensor([len(x) for x in inputs]), prompt_ids.shape[1])
        return {
            "input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
            "position_ids": (attention_mask.cumsum(dim=1) - 1).clamp(min=0),
            "prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "target_ids": pad_right(targets, IGNORE_INDEX),
        }

    def _logits_from(self, model, first: int, **inputs) -> tuple[torch.Tensor, int]:
        """Logits only from position `first` on (the positions that predict target tokens), when the
        model can: a 50k-150k-way head over every prompt position was most of a step's cost. Returns
        (logits, the position of logits[:, 0])."""
        width = (inputs.get("input_ids") if inputs.get("input_ids") is not None else inputs["inputs_embeds"]).shape[1]
        keep = _logits_to_keep(model, width - first)
        return model(**inputs, use_cache=False, **keep).logits, first if keep else 0

    def loss(self, model, batch: dict) -> torch.Tensor:
        """Mean cross-entropy over the target tokens (as the model's own loss), with logits only for the
        positions that predict them (targets are right-aligned by the left padding)."""
        labels = batch["labels"]
        width = labels.shape[1]
        longest = int(labels.ne(IGNORE_INDEX).sum(dim=1).max())
        logits, start = self._logits_from(model, max(width - longest - 1, 0), input_ids=batch["input_ids"],
                                          attention_mask=batch["attention_mask"], position_ids=batch["position_ids"])
        return _next_token_loss(logits, labels[:, start:])

    def target_logits(self, model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets are right-aligned (left padding): target j of a row of L targets is at position
        width - L + j, predicted by the logits one position before; gathered so that j is index j."""
        labels = batch["labels"]
        width = labels.shape[1]
        lengths = labels.ne(IGNORE_INDEX).sum(dim=1)
        longest = int(lengths.max())
        logits, start = self._logits_from(model, max(width - longest - 1, 0), input_ids=batch["input_ids"],
                                          attention_mask=batch["attention_mask"], position_ids=batch["position_ids"])
        j = torch.arange(longest, device=labels.device)[None, :]
        present = j < lengths[:, None]
        positions = (width - lengths[:, None] + j).clamp(max=width - 1)  # target j's position (clamped where absent)
        aligned = torch.where(present, labels.gather(1, positions), torch.full_like(positions, IGNORE_INDEX))
        index = (positions - 1 - start).clamp(min=0)[..., None].expand(-1, -1, logits.shape[-1])
        return logits.gather(1, index), aligned

    def task_losses(self, model, label: dict, rationale: dict | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Both tasks with their prompts' common beginning computed once: when the two inputs begin
        alike (dataset.task_word=after: `x` newline `predict:` / `explain:`), the common tokens run once
        with a key/value cache, then each task's continuation (the rest of its prompt and its target)
        runs from it. A decoder's token depends only on those before it, so the losses equal two
        separate forwards'; when less than half of the prompts is common (`predict: x`) it is two forwards."""
        if rationale is None:
            return self.loss(model, label), None
        rows = rationale["rows"]
        label_lengths, rationale_lengths = label["prompt_mask"].sum(dim=1), rationale["prompt_mask"].sum(dim=1)
        width = min(label["prompt_ids"].shape[1], rationale["prompt_ids"].shape[1])
        same = label["prompt_ids"][rows, :width].eq(rationale["prompt_ids"][:, :width])
        # at least one prompt token stays in each continuation: it predicts the first target token
        common = torch.minimum(same.long().cumprod(dim=1).sum(dim=1), torch.minimum(label_lengths[rows], rationale_lengths) - 1)
        if int(common.min()) < 1 or 2 * int(common.sum()) < int(label_lengths[rows].sum()):
            # nothing shared, or little (a begin token): a third forward would cost more than it saves
            return self.loss(model, label), self.loss(model, rationale)
        shared = label_lengths - 1  # a row without a rationale shares all but its last prompt token with nobody
        shared[rows] = common
        cache, shared_mask = self._shared_prefix(model, label["prompt_ids"], shared)

        rationale_cache = DynamicCache(ddp_cache_data=[(layer.keys[rows], layer.values[rows]) for layer in cache.layers], config=model.config)
        rationale_loss = self._continuation_loss(model, rationale, shared[rows], rationale_cache, shared_mask[rows])
        return self._continuation_loss(model, label, shared, cache, shared_mask), rationale_loss

    def _continuation_loss(self, model, batch: dict, shared: torch.Tensor, cache, shared_mask: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the targets of `batch`, each row continuing its first `shared` prompt
        tokens (already in `cache`) with the rest of its prompt and its target."""
        ids, targets = [], []
        for prompt, length, target, start in zip(batch["prompt_ids"], batch["prompt_mask"].sum(dim=1), batch["target_ids"], shared):
            kept = target[target.ne(IGNORE_INDEX)]
            ids.append(torch.cat([prompt[start:length], kept]))
            targets.append(torch.cat([torch.full((int(length - start),), IGNORE_INDEX, device=kept.device), kept]))
        lengths = torch.tensor([len(x) for x in ids], device=shared.device)
        continuation = pad_right(ids, model.generation_config.pad_token_id or 0).to(shared.device)
        labels = pad_right(targets, IGNORE_INDEX).to(shared.device)
        mask = torch.cat([shared_mask, lengths_mask(lengths, continuation.shape[1])], dim=1)
        positions = shared[:, None] + torch.arange(continuation.shape[1], device=shared.device)[None, :]
        logits = model(input_ids=continuation, attention_mask=mask, position_ids=positions, use_cache=True, **{_cache_argument(model): cache}).logits
        return _next_token_loss(logits, labels)

    def _shared_prefix(self, model, prompt_ids: torch.Tensor, lengths: torch.Tensor):
        """The first `lengths` tokens of each prompt, left-padded, through the model: its key/value cache
        (gradients flow through it) and the padded mask."""
        width = int(lengths.max())
        ids, mask = to_left_padding(prompt_ids[:, :width], lengths_mask(lengths, width), model.generation_config.pad_token_id or 0)
        out = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(dim=1) - 1).clamp(min=0), use_cache=True,
                    **_logits_to_keep(model, 1))
        return getattr(out, _cache_argument(model)), mask

    def generate(self, model, prompt_ids, prompt_mask, max_new_tokens: int, **kwargs) -> torch.Tensor:
        left_ids, left_mask = to_left_padding(prompt_ids, prompt_mask, model.generation_config.pad_token_id)
        generated = model.generate(
            input_ids=left_ids, attention_mask=left_mask, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
            **kwargs,
        )
        return generated[:, left_ids.shape[1]:]

    def prompt_embeddings(self, model, input_ids: torch.Tensor) -> torch.Tensor:
        return model.get_input_embeddings()(input_ids).detach()

    def target_token_log_probs(self, model, embeds, attention_mask, labels) -> torch.Tensor:
        batch, prompt_width, hidden = embeds.shape
        target_width = labels.shape[1]
        prompt_len = attention_mask.sum(dim=1)
        target_len = labels.ne(IGNORE_INDEX).sum(dim=1)
        target_embeds = model.get_input_embeddings()(labels.clamp(min=0)).to(embeds.dtype)
        source = torch.cat([embeds, target_embeds], dim=1)
        # Position j of row b: prompt token j, then target token j - n_b, then padding (masked out).
        width = prompt_width + target_width
        j = torch.arange(width, device=embeds.device)[None, :]
        n = prompt_len[:, None]
        index = torch.where(j < n, j, torch.where(j < n + target_len[:, None], prompt_width + j - n, 0))
        joined = source.gather(1, index[..., None].expand(batch, width, hidden))
        mask = (j < n + target_len[:, None]).long()
        first = max(int(prompt_len.min()) - 1, 0)
        logits, start = self._logits_from(model, first, inputs_embeds=joined, attention_mask=mask)
        # Target token t sits at position n + t and is predicted by the logits at n + t - 1.
        positions = (n - 1 - start + torch.arange(target_width, device=embeds.device)[None, :]).clamp(max=logits.shape[1] - 1)
        picked = logits.gather(1, positions[..., None].expand(batch, target_width, logits.shape[-1]))
        return label_log_probs(picked, labels)


def _cache_argument(model) -> str:
    """What the model's forward and output call the key/value cache (`cache` since transformers 5.x,
    `past_key_values` before)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _logits_to_keep(model, positions: int) -> dict:
    """Ask for the logits of the last `positions` positions only, where the model's forward can."""
    return {"logits_to_keep": positions} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}


def _next_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the labels' tokens, position p of `logits` predicting token p + 1 of
    `labels` (the two aligned); IGNORE_INDEX positions skipped."""
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX
    )


register_family(CausalFamily())

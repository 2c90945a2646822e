"""Decoder-only language models: GPT-2, Llama, Qwen, Mistral, SmolLM and the like.

The target is a continuation of the prompt. Training and scoring use one right-padded sequence per
example, `prompt + target`, with the loss (or the score) on the target positions only; generation
left-pads the prompts so that every row continues from its last token. The teacher's score is
sum log p(target | prompt) on `prompt + target`, differentiated with respect to the prompt's
input embeddings (only prompt positions can be attributed).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from kdlight.families.base import IGNORE_INDEX, ModelFamily, lengths_mask, pad_right, target_log_probs, to_left_padding
from kdlight.runtime import announce_once
from kdlight.text import end_token_id

log = logging.getLogger(__name__)


class CausalFamily(ModelFamily):
    name = "causal"
    auto_class = "AutoModelForCausalLM"

    def matches(self, config) -> bool:
        return not getattr(config, "is_encoder_decoder", False)

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
        input_ids = pad_right(sequences, pad_id)
        width = input_ids.shape[1]
        attention_mask = lengths_mask(torch.tensor([len(s) for s in sequences]), width)
        labels = pad_right([[IGNORE_INDEX] * len(x) + list(y) for x, y in zip(inputs, targets)], IGNORE_INDEX)
        prompt_ids = pad_right(inputs, pad_id)
        prompt_mask = lengths_mask(torch.tensor([len(x) for x in inputs]), prompt_ids.shape[1])
        return {
            "input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
            "prompt_ids": prompt_ids, "prompt_mask": prompt_mask,
        }

    def generate(self, model, prompt_ids, prompt_mask, max_new_tokens: int, **kwargs) -> torch.Tensor:
        left_ids, left_mask = to_left_padding(prompt_ids, prompt_mask, model.generation_config.pad_token_id)
        generated = model.generate(
            input_ids=left_ids, attention_mask=left_mask, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
            **kwargs,
        )
        return generated[:, left_ids.shape[1]:]

    def prompt_embeddings(self, model, input_ids: torch.Tensor) -> torch.Tensor:
        return model.get_input_embeddings()(input_ids).detach()

    def target_log_probs(self, model, embeds, attention_mask, labels) -> torch.Tensor:
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
        logits = model(inputs_embeds=joined, attention_mask=mask, use_cache=False).logits
        # Target token t sits at position n + t and is predicted by the logits at n + t - 1.
        positions = (n - 1 + torch.arange(target_width, device=embeds.device)[None, :]).clamp(max=width - 1)
        picked = logits.gather(1, positions[..., None].expand(batch, target_width, logits.shape[-1]))
        return target_log_probs(picked, labels)

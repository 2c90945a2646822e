"""Encoder-decoder models: T5/Flan-T5, BART, and EncoderDecoderModel built from BERT checkpoints.

The prompt is the encoder's input; the target is teacher-forced through the decoder. Attribution
differentiates the encoder's input-embeddings tensor itself (T5 ties one table between encoder and
decoder, so a hook on the layer would also see the decoder's tokens).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from kdlight.families.base import IGNORE_INDEX, ModelFamily, label_log_probs, lengths_mask, pad_right, register_family
from kdlight.families.text import end_token_id
from kdlight.utils.runtime import announce_once

log = logging.getLogger(__name__)


def _config_value(config, name: str):
    try:
        return getattr(config, name)
    except AttributeError:  # EncoderDecoderConfig has no eos_token_id at all
        return None


class Seq2SeqFamily(ModelFamily):
    name = "seq2seq"
    auto_class = "AutoModelForSeq2SeqLM"

    def matches(self, config, architectures) -> bool:
        # a generating encoder-decoder head (T5WithLMHeadModel: early T5 folders); the flag tells T5/BART
        # apart from multimodal decoder-only models that share the ForConditionalGeneration suffix
        return bool(getattr(config, "is_encoder_decoder", False)) and any(
            a.endswith(("ForConditionalGeneration", "WithLMHeadModel")) or a == "EncoderDecoderModel" for a in architectures
        )

    def prepare(self, model, tokenizer) -> None:
        """decoder start from bos (else cls), eos from the tokenizer's end token (eos, else sep), pad
        from the tokenizer: filled in where the folder lacks them, with one warning."""
        config, generation = model.config, model.generation_config
        wanted = {
            "decoder_start_token_id": tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id,
            "eos_token_id": end_token_id(tokenizer),
            "pad_token_id": tokenizer.pad_token_id,
        }
        completed = []
        for name, value in wanted.items():
            if value is None:
                continue
            if _config_value(config, name) is None:
                setattr(config, name, value)
                completed.append(f"{name}={value}")
            if getattr(generation, name, None) is None:
                setattr(generation, name, _config_value(config, name))
        if _config_value(config, "decoder_start_token_id") is None:
            raise ValueError(
                f"{type(model).__name__} has no decoder_start_token_id and the tokenizer has neither a bos nor a cls "
                "token to take it from; set model.config.decoder_start_token_id"
            )
        if completed:
            announce_once(
                ("seq2seq-ids", type(model).__name__, tuple(completed)),
                "%s: the model folder lacks special ids; completed from the tokenizer: %s",
                type(model).__name__, ", ".join(completed), logger=log,
            )

    def task_batch(self, inputs: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], pad_id: int) -> dict:
        input_ids = pad_right(inputs, pad_id)
        attention_mask = lengths_mask(torch.tensor([len(x) for x in inputs]), input_ids.shape[1])
        labels = pad_right(targets, IGNORE_INDEX)
        return {
            "input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
            "prompt_ids": input_ids, "prompt_mask": attention_mask,
        }

    def generate(self, model, prompt_ids, prompt_mask, max_new_tokens: int, **kwargs) -> torch.Tensor:
        generated = model.generate(
            input_ids=prompt_ids, attention_mask=prompt_mask, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
            **kwargs,
        )
        return generated[:, 1:]  # the decoder start token

    def prompt_embeddings(self, model, input_ids: torch.Tensor) -> torch.Tensor:
        return model.get_encoder().get_input_embeddings()(input_ids).detach()

    def decoder_inputs(self, model, labels: torch.Tensor) -> torch.Tensor:
        """labels shifted right behind the decoder start token (padding where the labels are ignored)."""
        start = _config_value(model.config, "decoder_start_token_id")
        pad = _config_value(model.config, "pad_token_id") or 0
        shifted = labels.new_full(labels.shape, pad)
        shifted[:, 1:] = labels[:, :-1]
        shifted[:, 0] = start
        return shifted.masked_fill(shifted.eq(IGNORE_INDEX), pad)

    def target_token_log_probs(self, model, embeds, attention_mask, labels) -> torch.Tensor:
        # decoder_input_ids rather than labels: the model would otherwise also compute its own loss.
        logits = model(
            inputs_embeds=embeds, attention_mask=attention_mask, decoder_input_ids=self.decoder_inputs(model, labels),
            use_cache=False,
        ).logits
        return label_log_probs(logits, labels)

    def target_logits(self, model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        labels = batch["labels"]
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       decoder_input_ids=self.decoder_inputs(model, labels), use_cache=False).logits
        return logits, labels


register_family(Seq2SeqFamily())

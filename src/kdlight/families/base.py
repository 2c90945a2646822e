"""What a model family adapter does, and the tensor helpers every family shares.

An adapter is the only code that knows how its family embeds inputs, scores a target
teacher-forced, generates, computes the student's loss and is loaded. Everything else in kdlight
(selection, caches, DataModules, rationale sources, reports) sees token ids and these methods.

Batches are built from token-id lists by `task_batch`: `input_ids`/`attention_mask`/`labels` are
what the model trains on, `prompt_ids`/`prompt_mask` the prompt alone (right-padded) for generation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import torch
from torch.nn.utils.rnn import pad_sequence
from transformers import GenerationConfig

from kdlight.families.hf_pipeline import Text2TextGenerationPipeline, register_pipeline
from kdlight.families.text import decode_answers, encode_inputs, encode_targets, end_token_id
from kdlight.utils.registry import Registry

if TYPE_CHECKING:
    from kdlight.data.tasks import Rationale, Rendered

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
    """Base of the adapters in kdlight.families (seq2seq, causal, encoder classifiers).

    The text-to-text families (seq2seq, causal) share the defaults below: a prompt is its rendered
    text, a target is the label's token ids, an answer is generated. A classifier family overrides
    the `encode_*`, `answers` and `predicted_targets` hooks (kdlight.families.encoder)."""

    name: ClassVar[str]
    auto_class: ClassVar[str]  # the transformers Auto class that loads this family
    generation_padding_side: ClassVar[str] = "right"  # how a tokenizer pads a batch of prompts to generate from
    needs_label_set: ClassVar[bool] = False  # a classifier head sized by the dataset's labels
    writes_rationales: ClassVar[bool] = True  # the student writes its rationale (a classifier tags input words instead)
    pipeline_tag: ClassVar[str] = "text2text-generation"  # the export's transformers pipeline task

    # ------------------------------------------------------------ loading
    def matches(self, config, architectures: Sequence[str]) -> bool:
        """Whether a model of these architectures (the folder's `architectures`, or a built model's
        class) belongs to this family: by explicit architecture, never by elimination."""
        raise NotImplementedError

    def bind(self, model, tokenizer) -> ModelFamily:
        """The adapter for this model and tokenizer: stateless families are shared; a classifier's
        adapter knows its labels and the tokenizer's special ids."""
        return self

    def identity(self) -> list:
        """What decides how this adapter encodes examples (tokenised features are keyed by it)."""
        return [self.name]

    def prepare(self, model, tokenizer) -> None:
        """Complete what a model folder may lack (special ids, a pad token) from the tokenizer."""
        raise NotImplementedError

    def prepare_student(self, model) -> None:
        """Add what the student's rationale task needs beyond the model (a classifier: a tagging head)."""

    def trained_heads(self, model) -> list[str]:
        """The model's modules that a LoRA run trains in full (a classifier's head, often new); none for
        a language model, whose output head is pretrained."""
        return []

    def export_state_dict(self, model) -> dict | None:
        """The weights an export saves (None: all of them)."""
        return None

    def save_export(self, model, tokenizer, folder, max_new_tokens: int) -> None:
        """Weights, tokenizer, greedy generation settings and the text2text pipeline that serves the
        generative families (transformers 5 serves that task only to a folder declaring its own)."""
        register_pipeline(self.auto_class)
        generation = GenerationConfig.from_model_config(model.config)
        generation.update(
            max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=model.generation_config.eos_token_id,
        )
        start = model.generation_config.decoder_start_token_id  # encoder-decoders have one (prepare completes it)
        if start is not None:
            generation.decoder_start_token_id = start
        model.generation_config = generation
        Text2TextGenerationPipeline(model=model, tokenizer=tokenizer).save_pretrained(str(folder))

    def card_usage(self, fmt: dict, words, example_input: str) -> list[str]:
        """The model card's input format and usage lines."""
        return [
            f"Inputs are rendered as in training: the `{fmt.get('rendering')}` rendering of a {fmt.get('dataset')} example, "
            f"as `{json.dumps(words.apply('label', '<input>'))[1:-1]}` for the answer (and "
            f"`{json.dumps(words.apply('rationale', '<input>'))[1:-1]}` for a rationale)."
            + (f" NLI inputs join premise and hypothesis with `{fmt.get('separator')}`." if fmt.get("separator") else ""),
            f"Inputs longer than {fmt.get('max_input_length')} tokens are cut; answers are at most {fmt.get('max_new_tokens')} tokens "
            "(greedy decoding, in generation_config.json).",
            "",
            "## Usage",
            "",
            "```python",
            "from kdlight.models.export import student_pipeline   # kdlight's own pipeline class: no code from this folder runs",
            "student = student_pipeline(\"PATH/TO/student\")",
            f"student({json.dumps(words.apply('label', example_input))})",
            "```",
            "",
            "Without kdlight, `pipeline(\"text2text-generation\", model=\"PATH/TO/student\", trust_remote_code=True)` runs the "
            "`hf_pipeline.py` saved in this folder: use it only for a folder whose origin you trust.",
        ]

    # ------------------------------------------------------------ text
    def encode_prompts(self, tokenizer, prompts: Sequence[Rendered], max_length: int, offsets: bool = False):
        """Token ids of rendered prompts (and each token's character span in its prompt when asked)."""
        return encode_inputs(tokenizer, [p.text for p in prompts], max_length, offsets=offsets,
                             templated=any(p.templated for p in prompts))

    def encode_targets(self, tokenizer, labels: Sequence[str], prompts: Sequence[Rendered], max_length: int) -> list[list[int]]:
        """What the label task learns and attribution explains: the label's tokens, ended once."""
        return encode_targets(tokenizer, labels, max_length)

    def pad_prompts(self, ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoded prompts as one right-padded batch: (input ids, attention mask)."""
        input_ids = pad_right(ids, pad_id)
        return input_ids, lengths_mask(torch.tensor([len(x) for x in ids]), input_ids.shape[1])

    def rationale_targets(
        self, tokenizer, rationales: Sequence[Rationale], sources: Sequence[Rendered], inputs: Sequence[Rendered],
        max_input_length: int, max_target_length: int,
    ) -> list[list[int]]:
        """The rationale task's targets for its inputs: here the rationale's text as tokens (`sources`,
        the prompts the rationale's spans refer to, are for families that tag their input's tokens)."""
        return encode_targets(tokenizer, [r.text for r in rationales], max_target_length)

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

    def answers(self, model, tokenizer, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, max_new_tokens: int) -> list[str]:
        """The model's answers as text (greedy decoding here)."""
        return decode_answers(tokenizer, self.generate(model, prompt_ids, prompt_mask, max_new_tokens))

    def predicted_targets(self, model, tokenizer, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, max_length: int) -> torch.Tensor:
        """The model's own answer as targets (IGNORE_INDEX after the end), without gradients."""
        with torch.no_grad():
            tokens = self.generate(model, prompt_ids, prompt_mask, max_length)
        return first_end_masked(tokens, end_token_id(tokenizer), tokenizer.pad_token_id)

    def target_answers(self, tokenizer, targets: torch.Tensor, prompt_ids: torch.Tensor) -> list[str]:
        """Targets (e.g. predicted_targets) as answer texts."""
        return decode_answers(tokenizer, targets.clamp(min=0).cpu())

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

    def target_logits(self, model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits over the label target, target-aligned: (logits [batch, targets, vocab or
        classes], labels [batch, targets] with IGNORE_INDEX where a row has no target token). Target j
        of every family sits at index j, so two models scoring the same targets line up (logit
        distillation compares them)."""
        raise NotImplementedError

    def target_identity(self, model, tokenizer) -> tuple[str, object]:
        """What the target logits range over, as (a description, a comparable value): two models whose
        values are equal score the same targets (the tokenizer's vocabulary; a classifier's labels)."""
        vocab = tokenizer.get_vocab()
        return f"a vocabulary of {self.output_vocab_size(model)} outputs ({len(vocab)} tokens)", (
            self.output_vocab_size(model), sorted(vocab.items()))

    def output_vocab_size(self, model) -> int:
        return int(model.get_output_embeddings().weight.shape[0])


FAMILIES: Registry = Registry("model family", "family")


def register_family(family: ModelFamily) -> ModelFamily:
    """Register a family adapter (an instance): kdlight.families' modules and plugins call it once each."""
    return FAMILIES.register(family.name, family)

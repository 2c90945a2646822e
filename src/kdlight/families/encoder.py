"""Encoder classifiers: BERT, RoBERTa, DeBERTa, MiniLM ... with a sequence-classification or a
multiple-choice head (AutoModelForSequenceClassification / AutoModelForMultipleChoice).

An encoder reads an example's content, not its template: a rendered prompt's content spans are its
segments. Sequence classification: one span is one text, two spans a text pair (NLI's premise and
hypothesis). Multiple choice: the first span (the question) is paired with each later span (a
choice), one row per choice, as AutoModelForMultipleChoice expects. Instructions and task words are
template, so an encoder never sees them (the student's two tasks are two heads on one forward).

Storage: an example is its token runs one after another, a pad token (attention 0) between runs:
`[CLS] a [SEP] | b [SEP]` for a pair, `[CLS] q [SEP] | c1 [SEP] | [CLS] q [SEP] | c2 [SEP] ...` for
multiple choice. The attention mask alone says where the rows and their segments are, so everything
that slices prompts by their mask (occlusion, integrated gradients) keeps working; the adapter
gathers the runs into model rows (segment ids from the run: 0 first, 1 second). Each token's offset
points into the rendered prompt, so selection, caches, quality and reports stay family-blind: a
question word appears in every choice row, its unit holds every copy, and its score merges them
(attribution.word_score: sum of the pieces of every copy by default).

Targets are class indices: by the label's name for sequence classification (the folder's id2label,
else the dataset's label set, compared case-insensitively), by the label's position among the
choices for multiple choice. F = log p(target class). The student's rationale task tags input tokens:
a linear head on the last hidden states, binary cross-entropy over the content tokens (1 inside the
rationale's words, 0 elsewhere), specials and gaps ignored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch

from kdlight.answers import normalize_answer
from kdlight.data.tasks import move_spans
from kdlight.families.base import IGNORE_INDEX, ModelFamily, pad_right, register_family

TAGGING_HEAD = "rationale_head"  # the student's token-tagging head, a submodule of the model (not exported)


def trained_labels(config) -> list[str] | None:
    """The class names a folder's config declares, None where they are transformers' placeholders (LABEL_0...)."""
    id2label = getattr(config, "id2label", None) or {}
    names = [str(id2label[key]) for key in sorted(id2label, key=int)]
    if not names or all(re.fullmatch(r"LABEL_\d+", name) for name in names):
        return None
    return names


def runs(mask_row: Sequence[int]) -> list[tuple[int, int]]:
    """[start, end) of each maximal run of attended positions."""
    found, start = [], None
    for position, on in enumerate(mask_row):
        if on and start is None:
            start = position
        elif not on and start is not None:
            found.append((start, position))
            start = None
    if start is not None:
        found.append((start, len(mask_row)))
    return found


@dataclass
class RowLayout:
    """Where the model rows of a batch are in its stored sequences: `index` [batch, rows, width] of
    stored positions, `mask` and `segments` of the same shape."""

    index: torch.Tensor
    mask: torch.Tensor
    segments: torch.Tensor

    def gather(self, flat: torch.Tensor) -> torch.Tensor:
        """[batch, positions, ...] -> [batch, rows, width, ...] (differentiable)."""
        batch = torch.arange(flat.shape[0], device=flat.device)[:, None, None]
        return flat[batch, self.index]


class EncoderFamily(ModelFamily):
    head: ClassVar[str]  # the architecture suffix that has this head
    rows_per_example: ClassVar[str]  # "one" or "choices"
    writes_rationales = False

    def __init__(self, labels: Sequence[str] = (), pad_id: int | None = None, segments: bool = False) -> None:
        self.labels, self.pad_id, self.segments = tuple(labels), pad_id, segments

    def matches(self, config, architectures) -> bool:
        return any(a.endswith(self.head) for a in architectures)

    def bind(self, model, tokenizer) -> EncoderFamily:
        if tokenizer.pad_token_id is None:
            raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no pad token; an encoder family separates rows with it")
        names = ()
        if self.needs_label_set:  # multiple choice has no classes of its own: the choices are the classes
            names = trained_labels(model.config) or [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
        return type(self)(names, int(tokenizer.pad_token_id), getattr(model.config, "type_vocab_size", 1) > 1)

    def identity(self) -> list:
        return [self.name, list(self.labels), self.segments]

    def target_identity(self, model, tokenizer) -> tuple[str, object]:
        if self.labels:
            return f"{self.name} over the classes {list(self.labels)}", (self.name, list(self.labels))
        return f"{self.name} over each example's choices", (self.name,)

    def prepare(self, model, tokenizer) -> None:
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        if getattr(model.config, "kdlight_pooling", "cls") == "mean":
            use_mean_pooling(model)

    def prepare_student(self, model) -> None:
        if not hasattr(model, TAGGING_HEAD):
            setattr(model, TAGGING_HEAD, torch.nn.Linear(model.config.hidden_size, 1))

    def trained_heads(self, model) -> list[str]:
        # everything beside the encoder with weights: the classifier (and a pooler or pre-classifier some have)
        return [name for name, child in model.named_children()
                if name not in (model.base_model_prefix, TAGGING_HEAD) and any(True for _ in child.parameters())]

    def export_state_dict(self, model) -> dict:
        return {k: v for k, v in model.state_dict().items() if not k.startswith(TAGGING_HEAD + ".")}

    def save_export(self, model, tokenizer, folder, max_new_tokens: int) -> None:
        model.save_pretrained(str(folder), state_dict=self.export_state_dict(model))
        tokenizer.save_pretrained(str(folder))

    def output_vocab_size(self, model) -> int:
        return int(model.get_input_embeddings().weight.shape[0])

    # ------------------------------------------------------------ text
    def segment_spans(self, prompt) -> list[tuple[tuple[int, int], tuple[int, int] | None]]:
        """The model rows of a rendered prompt as (first segment, second segment or None) spans."""
        raise NotImplementedError

    def encode_prompts(self, tokenizer, prompts, max_length: int, offsets: bool = False):
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"an encoder family needs a fast tokenizer (offsets and segments); {type(tokenizer).__name__} is not")
        rows = [(i, first, second) for i, p in enumerate(prompts) for first, second in self.segment_spans(p)]
        encoded: dict[int, tuple[list[int], list[tuple[int, int]]]] = {}
        for paired in (False, True):
            chosen = [r for r in range(len(rows)) if (rows[r][2] is not None) == paired]
            if not chosen:
                continue
            text = [prompts[rows[r][0]].text for r in chosen]
            firsts = [t[a:b] for t, (a, b) in zip(text, (rows[r][1] for r in chosen))]
            seconds = [t[a:b] for t, (a, b) in zip(text, (rows[r][2] for r in chosen))] if paired else None
            batch = tokenizer(firsts, seconds, truncation=True, max_length=max_length, return_offsets_mapping=True)
            for j, r in enumerate(chosen):
                encoded[r] = self._stored_row(batch["input_ids"][j], batch["offset_mapping"][j], batch.sequence_ids(j), rows[r])
        ids: list[list[int]] = [[] for _ in prompts]
        spans: list[list[tuple[int, int]]] = [[] for _ in prompts]
        for r, (i, _, _) in enumerate(rows):
            if ids[i]:
                ids[i].append(self.pad_id)  # the gap between two rows
                spans[i].append((0, 0))
            ids[i] += encoded[r][0]
            spans[i] += encoded[r][1]
        return (ids, spans) if offsets else ids

    def _stored_row(self, ids, offsets, sequence_ids, row) -> tuple[list[int], list[tuple[int, int]]]:
        """One model row as stored: its runs (a gap before the second segment) and offsets into the prompt."""
        _, first, second = row
        moved = []
        for (a, b), seq in zip(offsets, sequence_ids):
            if seq is None or a == b:
                moved.append((0, 0))
            else:
                shift = (first if seq == 0 else second)[0]
                moved.append((a + shift, b + shift))
        if second is None:
            return list(ids), moved
        # the second segment starts at its first token, or (emptied, e.g. by a sufficiency test) at its closing special
        split = next((t for t, seq in enumerate(sequence_ids) if seq == 1), len(ids) - 1)
        return [*ids[:split], self.pad_id, *ids[split:]], [*moved[:split], (0, 0), *moved[split:]]

    def pad_prompts(self, ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        input_ids = pad_right(ids, pad_id)
        return input_ids, input_ids.ne(pad_id).long()

    def class_index(self, label: str, prompt) -> int:
        raise NotImplementedError

    def encode_targets(self, tokenizer, labels, prompts, max_length: int) -> list[list[int]]:
        return [[self.class_index(label, prompt)] for label, prompt in zip(labels, prompts)]

    def rationale_targets(self, tokenizer, rationales, sources, inputs, max_input_length: int, max_target_length: int) -> list[list[int]]:
        """Per stored token: 1 inside a rationale word, 0 elsewhere in the content, IGNORE_INDEX on
        specials and gaps. The rationale's spans (in `sources`, e.g. the teacher's prompt) are moved
        onto each input through their content spans, so teacher and student tokenizers may differ."""
        _, offsets = self.encode_prompts(tokenizer, inputs, max_input_length, offsets=True)
        tags = []
        for rationale, source, target, token_spans in zip(rationales, sources, inputs, offsets):
            if rationale.spans is None:
                raise ValueError(
                    f"an encoder student tags the rationale's words in its input, but this rationale is free text "
                    f"({rationale.text[:60]!r}...): use method=saliency, random or human"
                )
            marked = move_spans(rationale.spans, source, target)
            tags.append([
                IGNORE_INDEX if a == b else int(any(a < end and start < b for start, end in marked)) for a, b in token_spans
            ])
        return tags

    # ------------------------------------------------------------ batches
    def task_batch(self, inputs, targets, pad_id: int) -> dict:
        input_ids, attention_mask = self.pad_prompts(inputs, pad_id)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": pad_right(targets, IGNORE_INDEX),
                "prompt_ids": input_ids, "prompt_mask": attention_mask}

    def layout(self, attention_mask: torch.Tensor) -> RowLayout:
        """The model rows of a batch from its attention mask: runs paired as (first, second) segments."""
        per_example = []
        for b, mask_row in enumerate(attention_mask.tolist()):
            found = runs(mask_row)
            if self.rows_per_example == "one":
                if len(found) not in (1, 2):
                    raise ValueError(f"row {b} of a {self.name} batch holds {len(found)} segments; expected one text or a pair")
                per_example.append([found])
            else:
                if not found or len(found) % 2:
                    raise ValueError(f"row {b} of a {self.name} batch holds {len(found)} segments; expected (question, choice) pairs")
                per_example.append([found[i : i + 2] for i in range(0, len(found), 2)])
        n_rows = {len(rows) for rows in per_example}
        if len(n_rows) != 1:
            raise ValueError(f"a {self.name} batch mixes examples of {sorted(n_rows)} choices; every example needs as many")
        width = max(sum(end - start for start, end in row) for rows in per_example for row in rows)
        shape = (len(per_example), n_rows.pop(), width)
        index = torch.zeros(shape, dtype=torch.long)
        mask = torch.zeros(shape, dtype=torch.long)
        segments = torch.zeros(shape, dtype=torch.long)
        for b, rows in enumerate(per_example):
            for r, row in enumerate(rows):
                at = 0
                for segment, (start, end) in enumerate(row):
                    index[b, r, at : at + end - start] = torch.arange(start, end)
                    segments[b, r, at : at + end - start] = segment
                    at += end - start
                mask[b, r, :at] = 1
        device = attention_mask.device
        return RowLayout(index.to(device), mask.to(device), segments.to(device))

    def _embed(self, model, input_ids: torch.Tensor) -> torch.Tensor:
        return model.get_input_embeddings()(input_ids)

    def forward(self, model, embeds: torch.Tensor, attention_mask: torch.Tensor, hidden: bool = False):
        """(model output, layout) for stored sequences given as embeddings [batch, positions, hidden]."""
        layout = self.layout(attention_mask)
        rows = layout.gather(embeds)
        segments = layout.segments if self.segments else None
        if self.rows_per_example == "one":  # AutoModelForSequenceClassification takes [batch, width]
            rows, mask = rows[:, 0], layout.mask[:, 0]
            segments = segments[:, 0] if segments is not None else None
        else:
            mask = layout.mask
        with pooling_mask(model, mask):
            output = model(inputs_embeds=rows, attention_mask=mask, token_type_ids=segments, output_hidden_states=hidden)
        return output, layout

    def logits(self, model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.forward(model, self._embed(model, input_ids), attention_mask)[0].logits

    def target_logits(self, model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The class (or choice) logits as a target of one position."""
        return self.logits(model, batch["input_ids"], batch["attention_mask"])[:, None, :], batch["labels"][:, :1]

    # ------------------------------------------------------------ training
    def loss(self, model, batch: dict) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(self.logits(model, batch["input_ids"], batch["attention_mask"]).float(), batch["labels"][:, 0])

    def task_losses(self, model, label: dict, rationale: dict | None):
        """One forward for both tasks: the label head's cross-entropy, and the tagging head's binary
        cross-entropy over the content tokens of the rows that have a rationale."""
        output, layout = self.forward(model, self._embed(model, label["input_ids"]), label["attention_mask"], hidden=rationale is not None)
        label_loss = torch.nn.functional.cross_entropy(output.logits.float(), label["labels"][:, 0])
        if rationale is None:
            return label_loss, None
        rows = rationale["rows"]
        hidden = output.hidden_states[-1].reshape(*layout.index.shape, -1)[rows]  # [rows, choices, width, hidden]
        tag_logits = getattr(model, TAGGING_HEAD)(hidden).squeeze(-1).float()
        return label_loss, tagging_loss(tag_logits, rationale["labels"], layout.index[rows], layout.mask[rows])

    # ------------------------------------------------------------ answers
    def predicted_targets(self, model, tokenizer, prompt_ids, prompt_mask, max_length: int) -> torch.Tensor:
        with torch.no_grad():
            return self.logits(model, prompt_ids, prompt_mask).argmax(dim=-1, keepdim=True)

    def answers(self, model, tokenizer, prompt_ids, prompt_mask, max_new_tokens: int) -> list[str]:
        return self.target_answers(tokenizer, self.predicted_targets(model, tokenizer, prompt_ids, prompt_mask, max_new_tokens), prompt_ids)

    def generate(self, model, prompt_ids, prompt_mask, max_new_tokens: int, **kwargs) -> torch.Tensor:
        raise NotImplementedError(f"a {self.name} model classifies; it does not generate text (use answers())")

    # ------------------------------------------------------------ attribution
    def prompt_embeddings(self, model, input_ids: torch.Tensor) -> torch.Tensor:
        return self._embed(model, input_ids).detach()

    def target_token_log_probs(self, model, embeds, attention_mask, labels) -> torch.Tensor:
        log_probs = torch.log_softmax(self.forward(model, embeds, attention_mask)[0].logits.float(), dim=-1)
        return log_probs.gather(-1, labels[:, :1].clamp(min=0)) * labels[:, :1].ne(IGNORE_INDEX)


POOLINGS = ("cls", "mean")


class MeanPooler(torch.nn.Module):
    """In place of a BERT-style [CLS] pooler: the mean of the token vectors over the attention mask (how a
    sentence encoder such as all-MiniLM-L6-v2 was trained to be read). The family hands it the mask of each
    forward (pooling_mask); called without one, it averages every position."""

    def __init__(self) -> None:
        super().__init__()
        self.mask: torch.Tensor | None = None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            return hidden_states.mean(dim=1)
        mask = self.mask.reshape(-1, self.mask.shape[-1]).to(hidden_states.dtype).unsqueeze(-1)  # multiple choice: rows flattened
        return (hidden_states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def use_mean_pooling(model) -> None:
    base = getattr(model, model.base_model_prefix, None)
    if base is None or not hasattr(base, "pooler"):
        raise ValueError(f"pooling=mean replaces a BERT-style pooler; {type(model).__name__} has none")
    if not isinstance(base.pooler, MeanPooler):
        base.pooler = MeanPooler()
    model.config.kdlight_pooling = "mean"


@contextmanager
def pooling_mask(model, mask: torch.Tensor):
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    pooler = getattr(base, "pooler", None)
    if not isinstance(pooler, MeanPooler):
        yield
        return
    pooler.mask = mask
    try:
        yield
    finally:
        pooler.mask = None


def tagging_loss(tag_logits: torch.Tensor, stored_tags: torch.Tensor, index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of per-token tag logits [rows, choices, width] against tags stored per
    position [rows, positions] (IGNORE_INDEX skipped), gathered into the same layout."""
    width = stored_tags.shape[1]
    tags = stored_tags.gather(1, index.clamp(max=width - 1).flatten(1)).view_as(index)
    valid = mask.bool() & tags.ne(IGNORE_INDEX) & index.lt(width)
    if not valid.any():
        return tag_logits.sum() * 0.0
    return torch.nn.functional.binary_cross_entropy_with_logits(tag_logits[valid], tags[valid].float())


class SequenceClassificationFamily(EncoderFamily):
    name = "sequence_classification"
    auto_class = "AutoModelForSequenceClassification"
    head = "ForSequenceClassification"
    pipeline_tag = "text-classification"
    rows_per_example = "one"
    needs_label_set = True

    def segment_spans(self, prompt):
        spans = list(prompt.spans)
        if len(spans) == 1:
            return [(spans[0], None)]
        if len(spans) == 2:
            return [(spans[0], spans[1])]
        raise ValueError(
            f"a sequence classifier reads one text or a pair; this example has {len(spans)} content spans "
            "(a question with choices needs family=multiple_choice)"
        )

    def class_index(self, label: str, prompt) -> int:
        folded = [name.casefold() for name in self.labels]
        if label.casefold() not in folded:
            raise ValueError(f"label {label!r} is not one of the classifier's labels {list(self.labels)}")
        return folded.index(label.casefold())

    def target_answers(self, tokenizer, targets, prompt_ids) -> list[str]:
        return [self.labels[int(t)] for t in targets[:, 0].tolist()]

    def card_usage(self, fmt: dict, words, example_input: str) -> list[str]:
        return [
            f"The classifier reads a {fmt.get('dataset')} example's content as one text or a pair (NLI: premise, hypothesis); "
            f"inputs longer than {fmt.get('max_input_length')} tokens are cut. It answers with one of its labels (config.json id2label).",
            "",
            "## Usage",
            "",
            "```python",
            "from transformers import pipeline",
            "student = pipeline(\"text-classification\", model=\"PATH/TO/student\")",
            "student({\"text\": \"<premise>\", \"text_pair\": \"<hypothesis>\"})   # or student(\"<text>\")",
            "```",
        ]


class MultipleChoiceFamily(EncoderFamily):
    name = "multiple_choice"
    auto_class = "AutoModelForMultipleChoice"
    head = "ForMultipleChoice"
    pipeline_tag = "multiple-choice"
    rows_per_example = "choices"

    def segment_spans(self, prompt):
        spans = list(prompt.spans)
        if len(spans) < 3:
            raise ValueError(f"a multiple-choice example needs a question and at least two choices; it has {len(spans)} content spans")
        return [(spans[0], choice) for choice in spans[1:]]

    def class_index(self, label: str, prompt) -> int:
        """The choice the label names: exactly, else ignoring case, else as answers are compared (an uncased
        tokenizer's decoded choice, e.g. a teacher's answer `friend ' s house`, names `friend's house`)."""
        choices = [prompt.text[a:b] for a, b in prompt.spans[1:]]
        for fold in (str, str.casefold, normalize_answer):
            folded = [fold(c) for c in choices]
            if fold(label) in folded:
                return folded.index(fold(label))
        raise ValueError(f"label {label!r} is not one of the choices {choices}")

    def card_usage(self, fmt: dict, words, example_input: str) -> list[str]:
        return [
            f"Each row pairs a {fmt.get('dataset')} question with one of its choices (at most {fmt.get('max_input_length')} tokens); "
            "the logits over the rows pick the answer.",
            "",
            "## Usage",
            "",
            "```python",
            "import torch",
            "from transformers import AutoModelForMultipleChoice, AutoTokenizer",
            "tokenizer = AutoTokenizer.from_pretrained(\"PATH/TO/student\")",
            "model = AutoModelForMultipleChoice.from_pretrained(\"PATH/TO/student\")",
            "question, choices = \"<question>\", [\"<a>\", \"<b>\", \"<c>\"]",
            "batch = tokenizer([question] * len(choices), choices, return_tensors=\"pt\", padding=True)",
            "best = model(**{k: v[None] for k, v in batch.items()}).logits.argmax(-1)",
            "```",
        ]

    def target_answers(self, tokenizer, targets, prompt_ids) -> list[str]:
        """The chosen choice's text as the tokenizer reads it (the second segment of its row)."""
        layout = self.layout(prompt_ids.ne(self.pad_id).long())
        answers = []
        for b, choice in enumerate(targets[:, 0].tolist()):
            positions = layout.index[b, choice][layout.mask[b, choice].bool() & layout.segments[b, choice].eq(1)]
            answers.append(tokenizer.decode(prompt_ids[b, positions].tolist(), skip_special_tokens=True).strip())
        return answers


register_family(SequenceClassificationFamily())
register_family(MultipleChoiceFamily())

"""One LightningDataModule per dataset, on a shared base that does the work."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from kdlight.data import sources
from kdlight.data.batching import DualTaskCollator, tokenize_columns
from kdlight.data.cue_words import CueWordsSpec, generate_rows
from kdlight.data.tasks import ANLITask, CQATask, CueWordsTask, ESNLITask, Example, Rendered, SVAMPTask, Task

log = logging.getLogger(__name__)

TRAIN_STAND_INS = ("valid",)
RENDERINGS = ("student", "teacher")  # which rendering the model reads: the student input or the teacher prompt


class RationaleSource(Protocol):
    """Gives each example of a split its rationale text (None: this example has none)."""

    def __call__(self, datamodule: "KDDataModule", split: str, examples: list[Example]) -> list[str | None]: ...


def _choice(name: str, value: Any, accepted: tuple) -> Any:
    if value not in accepted:
        raise ValueError(f"dataset.{name}={value!r} is not accepted; use one of {list(accepted)}")
    return value


class KDDataModule(pl.LightningDataModule):
    """Rows -> examples -> two renderings -> tokenised label and rationale tasks -> padded batches.

    `load_examples()` needs no tokenizer (inspection, teacher extraction); `setup()` needs one.
    """

    task: ClassVar[Task]
    accepted_sources: ClassVar[tuple[str, ...]] = sources.SOURCES

    def __init__(
        self,
        source: str = "dsbs",
        root: str | None = None,
        max_rows: int | None = None,
        on_bad_row: str = "error",
        train_stand_in: str | None = None,
        svamp_json: str | None = None,
        hub_timeout: float = 5.0,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        max_input_length: int = 1024,
        max_target_length: int = 256,
        label_prefix: str = "predict: ",
        rationale_prefix: str = "explain: ",
        rationale_splits: tuple[str, ...] = ("train",),
        rendering: str = "student",
        cache_dir: str | None = None,
        seed: int = 0,
        tokenizer: Any = None,
        rationale_source: RationaleSource | None = None,
    ) -> None:
        super().__init__()
        self.source = _choice("source", source, self.accepted_sources)
        self.on_bad_row = _choice("on_bad_row", on_bad_row, sources.BAD_ROW_POLICIES)
        self.train_stand_in = _choice("train_stand_in", train_stand_in, (None, *TRAIN_STAND_INS))
        if max_rows is not None and (not isinstance(max_rows, int) or max_rows < 1):
            raise ValueError(f"dataset.max_rows={max_rows!r} is not accepted; use a positive integer or null")
        if source == "dsbs" and not root:
            raise ValueError("dataset.root is required with dataset.source=dsbs (the step-by-step release folder)")
        self.root = Path(root).resolve() if root else None
        self.max_rows = max_rows
        self.svamp_json = svamp_json
        self.hub_timeout = hub_timeout
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.max_input_length = max_input_length
        self.max_target_length = max_target_length
        self.prefixes = {"label": label_prefix, "rationale": rationale_prefix}
        self.rationale_splits = tuple(rationale_splits)
        self.rendering = _choice("rendering", rendering, RENDERINGS)
        self.cache_dir = cache_dir
        self.seed = seed
        self.tokenizer = tokenizer
        self.rationale_source = rationale_source
        self._raw: dict[str, sources.SplitRows] | None = None
        self._examples: dict[str, list[Example]] | None = None
        self._rendered: dict[tuple, list[Rendered]] = {}  # renderings are asked for by several stages
        self.features: dict[str, list[dict]] = {}

    # ---------------------------------------------------------------- examples
    def _load_raw(self) -> dict[str, sources.SplitRows]:
        if self.source == "hub":
            raw = sources.load_hub_splits(self.task, self.on_bad_row, self.svamp_json, self.hub_timeout)
            if self.root is not None and self.root.is_dir():  # PaLM rationales live only in the release
                for split, rows in raw.items():
                    completions = sources.read_palm_completions(self.root, self.task, split)
                    if completions is not None:
                        rows.palm_completions = len(completions)
                        rows.palm_parsed = sources.attach_palm(
                            self.task, list(enumerate(rows.examples)), completions, f"hub[{split}]"
                        )
            return raw
        if not self.root.is_dir():
            raise sources.DataSourceError(
                f"dataset.root={self.root} does not exist. Expected the step-by-step release layout: "
                f"{sources.RELEASE_LAYOUT}."
            )
        raw = {}
        for split in self.task.release_splits:
            path = sources.release_file(self.root, self.task, split)
            if split == "train" and not path.is_file():
                if self.train_stand_in is None:
                    raise sources.DataSourceError(
                        f"missing file {path}: the {self.task.name} train split is not in {self.root}. "
                        f"Supply it as JSON Lines in the release layout ({sources.RELEASE_LAYOUT}), for example from "
                        f"the step-by-step datasets.zip, or load it from the hub with dataset.source=hub; "
                        f"or train on the valid split as a stand-in with dataset.train_stand_in=valid."
                    )
                continue
            raw[split] = sources.load_release_split(self.root, self.task, split, self.on_bad_row)
        return raw

    def load_examples(self) -> dict[str, list[Example]]:
        """The train/valid/test examples, built by the release's rules (loaded once)."""
        if self._examples is not None:
            return self._examples
        raw = self._load_raw()
        if "train" not in raw:
            log.warning(
                "!!! STAND-IN TRAINING DATA: %s has no train split here; training on 90%% of its %s split and "
                "validating on the other 10%%. Numbers are NOT comparable with the paper. !!!",
                self.task.name, self.train_stand_in,
            )
            train, valid = sources.carve_valid(raw[self.train_stand_in].examples)
        elif "valid" in raw:
            train, valid = raw["train"].examples, raw["valid"].examples
        else:
            train, valid = sources.carve_valid(raw["train"].examples)
        examples = {"train": train, "valid": valid, "test": raw["test"].examples}
        if self.max_rows is not None:
            log.warning("dataset.max_rows=%d: keeping only the first %d rows of every split", self.max_rows, self.max_rows)
            examples = {split: rows[: self.max_rows] for split, rows in examples.items()}
        self._raw, self._examples = raw, examples
        return examples

    def summary(self) -> dict:
        """What was loaded: sizes, labels, rejected rows, PaLM parse rates (JSON-ready)."""
        examples = self.load_examples()
        labels = {
            split: {
                "distinct_labels": len({ex.label for ex in rows}),
                "by_category": dict(Counter(self.task.label_category(ex) for ex in rows).most_common()),
            }
            for split, rows in examples.items()
        }
        rejected = [vars(r) for rows in self._raw.values() for r in rows.rejected]
        palm = {
            split: {
                "completions": rows.palm_completions,
                "parsed": rows.palm_parsed,
                "failed": rows.palm_completions - rows.palm_parsed,
                "parse_rate": round(rows.palm_parsed / rows.palm_completions, 4) if rows.palm_completions else None,
            }
            for split, rows in self._raw.items()
        }
        return {
            "dataset": self.task.name,
            "source": self.source,
            "root": str(self.root) if self.root else None,
            "max_rows": self.max_rows,
            "train_stand_in": self.train_stand_in if "train" not in self._raw else None,
            "split_sizes": {split: len(rows) for split, rows in examples.items()},
            "label_distribution": labels,
            "rejected": {"count": len(rejected), "on_bad_row": self.on_bad_row, "rows": rejected[:50]},
            "palm": palm,
        }

    @property
    def eos_token(self) -> str:
        return self.tokenizer.eos_token if self.tokenizer is not None else "</s>"

    def student_inputs(self, split: str) -> list[Rendered]:
        key = ("student", split, self.eos_token)  # the NLI separator is the tokenizer's eos token
        if key not in self._rendered:
            self._rendered[key] = [self.task.render_student(ex, self.eos_token) for ex in self.load_examples()[split]]
        return self._rendered[key]

    def teacher_prompts(self, split: str) -> list[Rendered]:
        key = ("teacher", split)
        if key not in self._rendered:
            self._rendered[key] = [self.task.render_teacher(ex) for ex in self.load_examples()[split]]
        return self._rendered[key]

    def model_inputs(self, split: str) -> list[Rendered]:
        """What the model trained here reads (dataset.rendering), before the task prefixes."""
        return self.student_inputs(split) if self.rendering == "student" else self.teacher_prompts(split)

    def corpus(self) -> list[str]:
        """Every text a model of this run reads or writes (for training a tiny tokenizer)."""
        texts = [" ".join(self.prefixes.values())]
        for split in ("train", "valid"):
            examples = self.load_examples()[split]
            texts += [r.text for r in self.student_inputs(split)] + [r.text for r in self.teacher_prompts(split)]
            texts += [ex.label for ex in examples] + [ex.palm_rationale for ex in examples if ex.palm_rationale]
        return texts

    # ---------------------------------------------------------------- tensors
    def rationales(self, split: str) -> list[str | None] | None:
        if self.rationale_source is None or split not in self.rationale_splits:
            return None
        return self.rationale_source(self, split, self.load_examples()[split])

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is None:
            raise RuntimeError(f"{type(self).__name__}.setup needs a tokenizer; pass tokenizer=...")
        if self.features:
            return
        for split, examples in self.load_examples().items():
            inputs = [r.text for r in self.model_inputs(split)]
            columns: dict[str, list[str | None]] = {
                "input_ids": [self.prefixes["label"] + text for text in inputs],
                "labels": [ex.label for ex in examples],
            }
            lengths = {"input_ids": self.max_input_length, "labels": self.max_target_length}
            rationales = self.rationales(split)
            if rationales is not None:
                columns["rationale_input_ids"] = [
                    None if r is None else self.prefixes["rationale"] + text for r, text in zip(rationales, inputs)
                ]
                columns["rationale_labels"] = rationales
                lengths.update(rationale_input_ids=self.max_input_length, rationale_labels=self.max_target_length)
            ids = tokenize_columns(self.tokenizer, columns, lengths, self.cache_dir, tag=f"{self.task.name}-{split}-")
            self.features[split] = [
                {
                    "index": i,
                    "label_text": ex.label,
                    "rationale_text": None if rationales is None else rationales[i],
                    **{name: ids[name][i] for name in ids},
                }
                for i, ex in enumerate(examples)
            ]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            self.features[split],
            batch_size=self.batch_size if shuffle else self.eval_batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=self.num_workers,
            collate_fn=DualTaskCollator(self.tokenizer.pad_token_id),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class ESNLIDataModule(KDDataModule):
    task = ESNLITask()


class ANLIDataModule(KDDataModule):
    task = ANLITask()


class CQADataModule(KDDataModule):
    task = CQATask()


class SVAMPDataModule(KDDataModule):
    task = SVAMPTask()


class CueWordsDataModule(KDDataModule):
    """The generated quickstart task: sizes, vocabulary, classes and noise are config, generation is seeded."""

    task = CueWordsTask()
    accepted_sources = ("generated",)

    def __init__(
        self,
        train_size: int = 64,
        valid_size: int = 100,
        test_size: int = 500,
        sample_seed: int = 0,
        n_classes: int = 4,
        cues_per_class: int = 6,
        filler_vocab_size: int = 150,
        min_words: int = 20,
        max_words: int = 30,
        min_cues: int = 1,
        max_cues: int = 2,
        label_noise: float = 0.0,
        task_seed: int = 0,
        source: str = "generated",
        **kwargs: Any,
    ) -> None:
        super().__init__(source=source, **kwargs)
        self.spec = CueWordsSpec(
            n_classes, cues_per_class, filler_vocab_size, min_words, max_words, min_cues, max_cues, label_noise, task_seed
        )
        self.sizes = {"train": train_size, "valid": valid_size, "test": test_size}
        for split, size in self.sizes.items():
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ValueError(f"dataset.{split}_size={size!r} is not accepted; use a positive integer")
        self.sample_seed = sample_seed

    def _load_raw(self) -> dict[str, sources.SplitRows]:
        return {
            split: sources.SplitRows(
                [self.task.example_from_row(row, i) for i, row in enumerate(generate_rows(self.spec, size, self.sample_seed, split))]
            )
            for split, size in self.sizes.items()
        }

"""One LightningDataModule per dataset, on a shared base that does the work.

Two uses, one class:
- without a model: `examples` (splits of the release, memory-mapped), `summary()`, renderings; this is
  what the teacher stage and the data CLI read;
- for a model: built with the examples already loaded, a tokenizer, the model's family and the
  rationales the run computed (`rationales`): `setup()` writes or opens the tokenised features.
The DataModule receives what it needs; nothing reads back from it while it is being built.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pyarrow as pa
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from kdlight.data import readers
from kdlight.data.collate import TaskCollator
from kdlight.data.cue_words import CueWordsSpec, generate_rows
from kdlight.data.features import (
    KEYED_COLUMN_SETS,
    FeatureRows,
    TrainColumns,
    feature_batch,
    feature_schema,
    features_key,
    tokenizer_fingerprint,
    write_features,
)
from kdlight.data.files import FilesTask, check_columns, file_format, read_rows, split_positions, typed_escapes
from kdlight.data.store import DigestMemo, ExampleSet, SplitExamples, build_or_open, open_table
from kdlight.data.tasks import (
    TASKS,
    ANLITask,
    CQATask,
    CueWordsTask,
    ESNLITask,
    Example,
    Rendered,
    SVAMPTask,
    Task,
    TaskWords,
    check_cot_prompt,
)
from kdlight.utils.runtime import collector_paused, tokenizing_worker_init

log = logging.getLogger(__name__)

TRAIN_STAND_INS = ("valid",)
RENDERINGS = ("student", "teacher")  # which rendering the model reads: the student input or the teacher prompt
SPLITS = ("train", "valid", "test")


class RationaleProvider(Protocol):
    """Gives each example of a chunk of a split its rationale text (None: this example has none)."""

    def fingerprint(self, split: str) -> str: ...

    def __call__(self, split: str, start: int, examples: list[Example], prompts: list[Rendered]) -> list[str | None]: ...


def _choice(name: str, value: Any, accepted: tuple) -> Any:
    if value not in accepted:
        raise ValueError(f"dataset.{name}={value!r} is not accepted; use one of {list(accepted)}")
    return value


class KDDataModule(pl.LightningDataModule):
    """Rows -> examples -> two renderings -> tokenised label and rationale tasks -> padded batches."""

    task: ClassVar[Task]
    accepted_sources: ClassVar[tuple[str, ...]] = readers.SOURCES

    def __init__(
        self,
        source: str = "dsbs",
        root: str | None = None,
        max_rows: int | None = None,
        on_bad_row: str = "error",
        train_stand_in: str | None = None,
        train_fraction: float | None = None,
        train_size: int | None = None,
        subsample_seed: int = 0,
        svamp_json: str | None = None,
        hub_timeout: float = 5.0,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        max_input_length: int = 1024,
        max_target_length: int = 256,
        label_prefix: str = "predict: ",
        rationale_prefix: str = "explain: ",
        task_word: str = "before",
        rationale_splits: tuple[str, ...] = ("train",),
        rendering: str = "student",
        cache_dir: str | None = None,
        seed: int = 0,
        chunk_rows: int = 4096,
        corpus_rows: int = 20000,
        examples: ExampleSet | None = None,
        tokenizer: Any = None,
        family: Any = None,
        rationales: RationaleProvider | None = None,
        label_source: Callable[[str, int, list[Example]], list[str | None]] | None = None,
        train_columns: Sequence[TrainColumns] = (),
        separator: str | None = None,
        prompt_wrapper: Callable[[Rendered], Rendered] | None = None,
        task: str | None = None,
        cot: dict | None = None,
    ) -> None:
        super().__init__()
        # the few-shot chain-of-thought prompt a generator continues (method=step_by_step method.source=generate)
        self.cot = {key: str(value) for key, value in dict(cot).items()} if cot else None
        if task is not None:  # a registered task by name (a plugin's): no DataModule subclass needed
            self.task = TASKS.lookup(task)
        if getattr(self, "task", None) is not None:
            check_cot_prompt(self.cot, self.task.template_names())
        self.source = _choice("source", source, self.accepted_sources)
        self.on_bad_row = _choice("on_bad_row", on_bad_row, readers.BAD_ROW_POLICIES)
        self.train_stand_in = _choice("train_stand_in", train_stand_in, (None, *TRAIN_STAND_INS))
        for name, value in (("max_rows", max_rows), ("chunk_rows", chunk_rows), ("corpus_rows", corpus_rows)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"dataset.{name}={value!r} is not accepted; use a positive integer" + (" or null" if name == "max_rows" else ""))
        if train_fraction is not None and train_size is not None:
            raise ValueError(f"dataset.train_fraction={train_fraction!r} and dataset.train_size={train_size!r} are both set; use one of them")
        if train_fraction is not None and (isinstance(train_fraction, bool) or not isinstance(train_fraction, (int, float))
                                           or not 0 < train_fraction <= 1):
            raise ValueError(f"dataset.train_fraction={train_fraction!r} is not accepted; use a number with 0 < fraction <= 1, or null")
        if train_size is not None and (isinstance(train_size, bool) or not isinstance(train_size, int) or train_size < 1):
            raise ValueError(f"dataset.train_size={train_size!r} is not accepted; use a positive integer, or null")
        self.train_fraction, self.train_size, self.subsample_seed = train_fraction, train_size, subsample_seed
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
        self.task_words = TaskWords(label_prefix, rationale_prefix, task_word)
        self.rationale_splits = tuple(rationale_splits)
        self.rendering = _choice("rendering", rendering, RENDERINGS)
        self.cache_dir = cache_dir
        self.seed = seed
        self.chunk_rows = chunk_rows
        self.corpus_rows = corpus_rows
        self._examples = examples
        self.tokenizer = tokenizer
        self.family = family
        self.rationales = rationales
        self.label_source = label_source  # the train rows' label targets instead of gold (kdlight.methods.label_sources); None: gold
        self.train_columns = tuple(train_columns)  # what the method adds to the train rows (kdlight.data.features.TrainColumns)
        self.separator = separator
        self.prompt_wrapper = prompt_wrapper
        self.features: dict[str, FeatureRows] = {}

    # ---------------------------------------------------------------- examples
    def _release_split(self, split: str, memo: DigestMemo) -> tuple[SplitExamples, readers.LoadReport]:
        files = readers.release_inputs(self.root, self.task, split)
        key_fields = {"source": "dsbs", "on_bad_row": self.on_bad_row, "files": [memo.digest(p) for p in files]}
        return self._stored(split, key_fields, lambda report: readers.release_examples(self.root, self.task, split, self.on_bad_row, report))

    def _stored(self, split: str, key_fields: dict, build) -> tuple[SplitExamples, readers.LoadReport]:
        table, report, key = build_or_open(self.task, split, key_fields, build, self.cache_dir)
        return SplitExamples(self.task, table, None, split, key), report

    def _hub_splits(self, memo: DigestMemo) -> dict[str, tuple[SplitExamples, readers.LoadReport]]:
        raw = {}
        if isinstance(self.task, SVAMPTask):
            location = self.svamp_json or readers.SVAMP_JSON_URL
            problems = readers.load_svamp_original(location, self.hub_timeout)
            for split, rows in readers.svamp_release_rows(problems).items():
                origin = f"SVAMP.json ({location})[{split}]"
                key_fields = {"source": "svamp_json", "on_bad_row": self.on_bad_row, "rows": rows}
                raw[split] = self._stored(split, key_fields, lambda report, rows=rows, origin=origin: readers.examples_from_rows(
                    self.task, rows, origin, self.on_bad_row, report, first_line=0))
            return raw
        name, config, split_map = readers.HUB_SPECS[self.task.name]
        for split, theirs in split_map.items():
            llm = readers.palm_files(self.root, self.task, split) if self.root is not None and self.root.is_dir() else []
            attach = (lambda examples, report, llm=llm, split=split: readers.attach_palm(
                self.task, examples, llm, f"hub[{split}]", report)) if llm else None
            raw[split] = self._hub_split(split, name, config, theirs, f"hub:{name}[{split}]", {"palm": [memo.digest(p) for p in llm]}, attach)
        return raw

    def _hub_split(self, split: str, name: str, config: str | None, theirs: str, origin: str, key_extra: dict,
                   then: Callable | None = None) -> tuple[SplitExamples, readers.LoadReport]:
        """One split of a hub dataset (datasets.load_dataset) through the task's row check into the store;
        `then(examples, report)` adds to its examples (the release's PaLM completions)."""
        dataset = readers.load_hub_dataset(name, config, theirs, f"{self.task.name} split {theirs!r} ({name})", self.hub_timeout)
        key_fields = {"source": "hub", "dataset": [name, config, theirs], "fingerprint": getattr(dataset, "_fingerprint", None),
                      "on_bad_row": self.on_bad_row, **key_extra}

        def build(report):
            examples = readers.examples_from_rows(self.task, iter(dataset), origin, self.on_bad_row, report, first_line=0)
            return then(examples, report) if then is not None else examples

        return self._stored(split, key_fields, build)

    def _raw_splits(self) -> dict[str, tuple[SplitExamples, readers.LoadReport]]:
        memo = DigestMemo(self.cache_dir)
        try:
            if self.source == "hub":
                return self._hub_splits(memo)
            problem = readers.missing_release(self.root, self.task, self.train_stand_in)
            if problem is not None:
                raise readers.DataSourceError(problem)
            raw = {}
            for split in self.task.release_splits:
                if split == "train" and not readers.release_file(self.root, self.task, split).is_file():
                    continue  # the stand-in (checked above)
                raw[split] = self._release_split(split, memo)
            return raw
        finally:
            memo.save()

    @property
    def examples(self) -> ExampleSet:
        """The train/valid/test examples, built by the release's rules (loaded once, memory-mapped)."""
        if self._examples is None:
            self._examples = self._assemble(self._raw_splits())
        return self._examples

    def _assemble(self, raw: dict[str, tuple[SplitExamples, readers.LoadReport]]) -> ExampleSet:
        stand_in = None
        if "train" not in raw:
            stand_in = self.train_stand_in
            log.warning(
                "!!! STAND-IN TRAINING DATA: %s has no train split here; training on 90%% of its %s split and "
                "validating on the other 10%%. Numbers are NOT comparable with the paper. !!!", self.task.name, stand_in,
            )
            train, valid = _carve(raw[stand_in][0])
        elif "valid" in raw:
            train, valid = raw["train"][0], raw["valid"][0]
        else:
            train, valid = _carve(raw["train"][0])
        splits = {"train": train, "valid": valid, "test": raw["test"][0]}
        if self.max_rows is not None:
            log.warning("dataset.max_rows=%d: keeping only the first %d rows of every split", self.max_rows, self.max_rows)
            splits = {name: rows.head(self.max_rows) for name, rows in splits.items()}
        for name, rows in splits.items():
            if len(rows) == 0:  # before training: a sampler of 0 rows fails far from the cause
                raise readers.DataSourceError(readers.empty_split_message(name, raw.get(name, raw.get("train", (None, None)))[1]))
        splits["train"] = self._subsample(splits["train"])
        for name, rows in splits.items():
            rows.name = name
        return ExampleSet(self.task, splits, {split: report for split, (_, report) in raw.items()}, stand_in)

    def _subsample(self, train: SplitExamples) -> SplitExamples:
        """dataset.train_fraction / train_size: a seeded subsample of the train split only (valid and test
        untouched); subsamples of one seed nest, so a data-size curve adds rows rather than redrawing them."""
        if self.train_fraction is None and self.train_size is None:
            return train
        size = self.train_size if self.train_size is not None else max(1, round(self.train_fraction * len(train)))
        if size > len(train):
            raise ValueError(f"dataset.train_size={size} is larger than the {len(train)} train rows; use at most {len(train)}")
        log.info("training on %d of %d train rows (seeded subsample, subsample_seed=%s)", size, len(train), self.subsample_seed)
        return train.select(readers.subsample_positions(len(train), size, self.subsample_seed), f"subsample-{self.subsample_seed}-{size}")

    def load_examples(self) -> dict[str, SplitExamples]:
        return self.examples.splits

    def chance_accuracy(self) -> float | None:
        """Accuracy of guessing uniformly among the possible answers; None for open answers (SVAMP)."""
        if self.task.name == "cqa":
            return 0.2  # five answer choices
        return round(1 / len(self.task.label_set), 4) if self.task.label_set else None

    def summary(self) -> dict:
        """What was loaded: sizes, labels, rejected rows, PaLM parse rates (JSON-ready)."""
        examples = self.examples
        labels = {
            split: {
                "distinct_labels": len(rows.counts("label")),
                "by_category": dict(rows.counts("category").most_common()),
            }
            for split, rows in examples.splits.items()
        }
        reports = examples.reports
        rejected = [r for report in reports.values() for r in report.rejected]
        palm = {
            split: {
                "completions": r.palm_completions,
                "parsed": r.palm_parsed,
                "failed": r.palm_completions - r.palm_parsed,
                "parse_rate": round(r.palm_parsed / r.palm_completions, 4) if r.palm_completions else None,
            }
            for split, r in reports.items()
        }
        return {
            "dataset": self.task.name,
            "source": self.source,
            "root": str(self.root) if self.root else None,
            "max_rows": self.max_rows,
            "train_stand_in": examples.stand_in,
            "train_subsample": None if self.train_fraction is None and self.train_size is None else {
                "fraction": self.train_fraction, "size": self.train_size, "seed": self.subsample_seed,
            },
            "split_sizes": {split: len(rows) for split, rows in examples.splits.items()},
            "label_distribution": labels,
            "rejected": {
                "count": sum(r.rejected_count for r in reports.values()), "on_bad_row": self.on_bad_row,
                "rows": [vars(r) for r in rejected[: readers.MAX_REJECTED_LISTED]],
            },
            "palm": palm,
        }

    # ---------------------------------------------------------------- renderings
    def student_input(self, example: Example) -> Rendered:
        return self.task.render_student(example, self.separator or "</s>")

    def teacher_prompt(self, example: Example) -> Rendered:
        rendered = self.task.render_teacher(example)
        return self.prompt_wrapper(rendered) if self.prompt_wrapper is not None else rendered

    def model_input(self, example: Example) -> Rendered:
        """What the model trained here reads (dataset.rendering), without the task words."""
        return self.student_input(example) if self.rendering == "student" else self.teacher_prompt(example)

    def teacher_prompts(self, split: str, start: int = 0, stop: int | None = None) -> list[Rendered]:
        rows = self.examples[split]
        return [self.teacher_prompt(ex) for ex in rows.chunk(start, len(rows) if stop is None else stop)]

    def model_inputs(self, split: str, start: int = 0, stop: int | None = None) -> list[Rendered]:
        rows = self.examples[split]
        return [self.model_input(ex) for ex in rows.chunk(start, len(rows) if stop is None else stop)]

    def corpus(self) -> Iterator[str]:
        """Texts a model of this run reads or writes, from the first corpus_rows rows of train and
        valid (what a tiny tokenizer trains on: a bounded sample, whatever the dataset's size)."""
        yield f"{self.task_words.label} {self.task_words.rationale}"
        for split in ("train", "valid"):
            for ex in self.examples[split].chunk(0, self.corpus_rows):
                yield self.student_input(ex).text
                yield self.task.render_teacher(ex).text
                yield ex.label
                if ex.palm_rationale:
                    yield ex.palm_rationale

    # ---------------------------------------------------------------- tensors
    def _features_fields(self, split: str, with_rationales: bool) -> dict:
        probe = self.examples[split].chunk(0, 1)
        return {
            "examples": self.examples[split].key, "rows": len(self.examples[split]), "task": self.task.name,
            "rendering": self.rendering, "task_words": vars(self.task_words), "separator": self.separator,
            "lengths": [self.max_input_length, self.max_target_length], "tokenizer": tokenizer_fingerprint(self.tokenizer),
            "rendered_first": self.model_input(probe[0]).text if probe else None,  # catches rendering changes
            "rationales": self.rationales.fingerprint(split) if with_rationales else None,
            "label_source": self.label_source.fingerprint(split) if _for_train(self.label_source, split) else None,
            **{key: None for key in KEYED_COLUMN_SETS},
            **{columns.key: columns.fingerprint(split) for columns in self.train_columns if split == "train"},
            "family": self.family.identity(),
        }

    def _feature_chunk(self, split: str, start: int, with_rationales: bool) -> pa.RecordBatch:
        """The feature columns of rows [start, start + chunk_rows) of a split (encoded by the model's family)."""
        examples = self.examples[split].chunk(start, start + self.chunk_rows)
        rendered = [self.model_input(ex) for ex in examples]
        labels = [ex.label for ex in examples]
        targets = labels
        if _for_train(self.label_source, split):
            given = self.label_source(split, start, examples)
            targets = [answer if answer is not None else gold for answer, gold in zip(given, labels)]
            if any(answer is None for answer in given):
                log.warning("%s rows %d-%d: %d of %d have no %s label; they keep their gold label", split, start,
                            start + len(examples), sum(a is None for a in given), len(examples), self.label_source.fingerprint(split))
        inputs = [self.task_words.render("label", r) for r in rendered]
        train_columns = self.train_columns if split == "train" else ()
        matched = any(columns.needs_offsets for columns in train_columns)
        teacher_prompts = [self.task.render_teacher(ex) for ex in examples] if matched or with_rationales else None
        encoded = self.family.encode_prompts(self.tokenizer, inputs, self.max_input_length, offsets=matched)
        columns = {
            "index": list(range(start, start + len(examples))),
            "label_text": labels,  # gold: what accuracy is measured against
            "input_ids": encoded[0] if matched else encoded,
            "labels": self.family.encode_targets(self.tokenizer, targets, rendered, self.max_target_length),
            "rationale_input_ids": [None] * len(examples),
            "rationale_labels": [None] * len(examples),
            "rationale_text": [None] * len(examples),
        }
        for extra in train_columns:
            columns.update(extra.columns(split, start, examples, teacher_prompts, inputs, encoded[1] if matched else None))
        if with_rationales:
            rationales = self.rationales(split, start, examples, teacher_prompts)
            present = [i for i, r in enumerate(rationales) if r]
            task_inputs = [self.task_words.render("rationale", rendered[i]) for i in present]
            ids = self.family.encode_prompts(self.tokenizer, task_inputs, self.max_input_length)
            targets = self.family.rationale_targets(
                self.tokenizer, [rationales[i] for i in present], [teacher_prompts[i] for i in present], task_inputs,
                self.max_input_length, self.max_target_length,
            )
            for i, input_ids, target in zip(present, ids, targets):
                columns["rationale_input_ids"][i], columns["rationale_labels"][i] = input_ids, target
                columns["rationale_text"][i] = rationales[i].text
        return feature_batch(columns, self._schema(split))

    def _schema(self, split: str) -> pa.Schema:
        return feature_schema(self.train_columns if split == "train" else ())

    def _feature_batches(self, split: str, with_rationales: bool) -> Iterator[pa.RecordBatch]:
        """A split's feature chunks in order, built by `num_workers` DataLoader workers in parallel (by
        this process when 0): tokenising is most of a fresh setup, and chunks are independent."""
        chunks = _Chunks(self._feature_chunk, split, range(0, len(self.examples[split]), self.chunk_rows), with_rationales)
        if self.num_workers == 0:
            yield from chunks
            return
        yield from DataLoader(chunks, batch_size=None, collate_fn=_unchanged, num_workers=min(self.num_workers, len(chunks)),
                              worker_init_fn=tokenizing_worker_init)

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is None or self.family is None:
            raise RuntimeError(f"{type(self).__name__}.setup needs a tokenizer and a model family; pass tokenizer=..., family=...")
        if self.features:
            return
        for split in SPLITS:
            with_rationales = self.rationales is not None and split in self.rationale_splits
            key = features_key(self._features_fields(split, with_rationales))
            path = None if self.cache_dir is None else Path(self.cache_dir) / "features" / f"{self.task.name}-{split}-{key}.arrow"
            if path is not None and path.is_file():
                log.info("tokenised features cache hit: %s", path)

                table = open_table(path)
            else:
                with collector_paused():
                    table = write_features(self._feature_batches(split, with_rationales), path, self._schema(split))
            self.features[split] = FeatureRows(table)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            self.features[split],
            batch_size=self.batch_size if shuffle else self.eval_batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=TaskCollator(self.family, self.tokenizer.pad_token_id, self.train_columns),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def eval_dataloader(self, split: str) -> DataLoader:
        """Any split in evaluation order (eval.py)."""
        return self._loader(split, shuffle=False)


def _for_train(part, split: str) -> bool:
    """Whether the label source applies to `split`: valid and test always score the gold labels."""
    return part is not None and split == "train"


class _Chunks(torch.utils.data.Dataset):
    """Chunk i of a split: build(split, starts[i], with_rationales) (a DataLoader fetches them in order)."""

    def __init__(self, build: Callable, split: str, starts: range, with_rationales: bool) -> None:
        self.build, self.split, self.starts, self.with_rationales = build, split, starts, with_rationales

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int):
        return self.build(self.split, self.starts[i], self.with_rationales)


def _unchanged(item):
    return item


def _carve(rows: SplitExamples) -> tuple[SplitExamples, SplitExamples]:
    train, valid = readers.carve_valid(len(rows))
    return rows.select(train, "carve-train"), rows.select(valid, "carve-valid")


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

    def chance_accuracy(self) -> float:
        return round(1 / self.spec.n_classes, 4)

    def _raw_splits(self) -> dict[str, tuple[SplitExamples, readers.LoadReport]]:
        raw = {}
        for split, size in self.sizes.items():
            key_fields = {"source": "generated", "spec": vars(self.spec), "size": size, "seed": self.sample_seed}

            def build(report, split=split, size=size):
                for i, row in enumerate(generate_rows(self.spec, size, self.sample_seed, split)):
                    report.rows += 1
                    report.kept += 1
                    yield self.task.example_from_row(row, i)

            raw[split] = self._stored(split, key_fields, build)
        return raw


class FilesDataModule(KDDataModule):
    """dataset=files: a task defined in config (kdlight.data.files.FilesTask) over local JSONL, CSV or
    Parquet files (one per split, or one split by seeded fractions) or a hub dataset."""

    accepted_sources = ("files", "hub")

    def __init__(
        self,
        name: str = "files",
        path: str | None = None,
        train: str | None = None,
        valid: str | None = None,
        test: str | None = None,
        format: str = "auto",  # noqa: A002 - the config key users write
        hub: dict | None = None,
        split_fractions: dict | None = None,
        split_seed: int = 0,
        fields: dict | None = None,
        label_kind: str = "class",
        labels: list | None = None,
        templates: dict | None = None,
        source: str = "files",
        **kwargs: Any,
    ) -> None:
        super().__init__(source=source, **kwargs)
        mapping = dict(fields or {})
        unknown = sorted(set(mapping) - {"inputs", "label", "id", "choices", "highlights", "rationale"})
        if unknown:
            raise ValueError(f"dataset.fields has no key {unknown[0]!r}; use inputs, label, id, choices, highlights, rationale")
        inputs = mapping.get("inputs", ["text"])
        choices = mapping.get("choices")
        self.task = FilesTask(
            name=name, inputs=(inputs,) if isinstance(inputs, str) else tuple(inputs), label=mapping.get("label", "label"),
            id=mapping.get("id"), choices=choices if choices is None or isinstance(choices, str) else tuple(choices),
            highlights=mapping.get("highlights"), rationale=mapping.get("rationale"), label_kind=label_kind,
            labels=tuple(str(label) for label in labels) if labels else None,
            **({"templates": {key: typed_escapes(str(value)) for key, value in dict(templates).items()}} if templates else {}),
            **{key: str(kwargs["cot"][key]) for key in ("answer_marker", "next_example") if (kwargs.get("cot") or {}).get(key)},
        )
        check_cot_prompt(self.cot, self.task.template_names())
        self.files = {"train": train, "valid": valid, "test": test}
        if source == "hub":
            if not hub or not hub.get("name"):
                raise ValueError("dataset.source=hub needs dataset.hub.name (and hub.splits: {train: ..., test: ...})")
        elif (path is None) == (train is None):
            raise ValueError("dataset=files needs either dataset.path (one file, split by dataset.split_fractions) or dataset.train "
                             "and dataset.test (one file per split; dataset.valid optional), not both")
        elif path is None and test is None:
            raise ValueError("dataset.test is not set: give the test file too (or one dataset.path to split)")
        self.path, self.format, self.hub = path, format, dict(hub or {})
        self.split_fractions, self.split_seed = dict(split_fractions or {"valid": 0.1, "test": 0.1}), split_seed

    def _file_split(self, name: str, path: str, memo: DigestMemo) -> tuple[SplitExamples, readers.LoadReport]:
        file = Path(path).expanduser().resolve()
        if not file.is_file():
            raise readers.DataSourceError(f"dataset.{name if name != 'all' else 'path'}={path}: no such file")
        kind = file_format(file, self.format)
        key_fields = {"source": "files", "task": self.task.definition(), "on_bad_row": self.on_bad_row, "file": memo.digest(file)}

        def build(report):
            check_columns(self.task, file, kind)
            rows, first_line = read_rows(file, kind)
            return readers.examples_from_rows(self.task, rows, str(file), self.on_bad_row, report, first_line=first_line)

        return self._stored(name, key_fields, build)

    def _raw_splits(self) -> dict[str, tuple[SplitExamples, readers.LoadReport]]:
        memo = DigestMemo(self.cache_dir)
        try:
            if self.source == "hub":
                return self._hub_task_splits()
            if self.path is not None:
                rows, report = self._file_split("all", self.path, memo)
                positions = split_positions(len(rows), self.split_fractions, self.split_seed)
                # the file's report (rows read, bad rows) once, with train; valid and test are selections of it
                return {name: (rows.select(where, f"{name}-{self.split_seed}-{self.split_fractions}"),
                               report if name == "train" else readers.LoadReport(len(where), len(where)))
                        for name, where in positions.items()}
            return {name: self._file_split(name, path, memo) for name, path in self.files.items() if path is not None}
        finally:
            memo.save()

    def _hub_task_splits(self) -> dict[str, tuple[SplitExamples, readers.LoadReport]]:
        name, config = self.hub["name"], self.hub.get("config")
        return {split: self._hub_split(split, name, config, theirs, f"hub:{name}[{theirs}]", {"task": self.task.definition()})
                for split, theirs in dict(self.hub.get("splits") or {"train": "train", "test": "test"}).items()}

    def chance_accuracy(self) -> float | None:
        if self.task.choices:
            return None  # as many answers as each example has choices
        return super().chance_accuracy()

"""Where a dataset's examples come from: the release's files, the hub, SVAMP.json, a user's files or the
generated cue-words task, read through the task's row check into the examples store, then assembled by
the release's rules (a carved validation slice, a stand-in train split, max_rows, a seeded train subsample).

An example source knows nothing of models: the DataModule (kdlight.data.datamodule) renders, tokenises and
batches the ExampleSet it gives. A dataset config builds both at once (its DataModule class names its
source class); `kdlight-data` and the teacher stage read the examples alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from kdlight.data import readers
from kdlight.data.cue_words import CueWordsSpec, generate_rows
from kdlight.data.files import FilesTask, check_columns, file_format, read_rows, split_positions, typed_escapes
from kdlight.data.store import DigestMemo, ExampleSet, SplitExamples, build_or_open
from kdlight.data.tasks import CueWordsTask, Task

log = logging.getLogger(__name__)

TRAIN_STAND_INS = ("valid",)
Raw = dict[str, tuple[SplitExamples, readers.LoadReport]]  # split -> (examples as read, what reading them found)


def checked_choice(name: str, value: Any, accepted: tuple) -> Any:
    """`value` if it is one of `accepted`, else the one-line error that names dataset.<name>."""
    if value not in accepted:
        raise ValueError(f"dataset.{name}={value!r} is not accepted; use one of {list(accepted)}")
    return value


class ExampleSource:
    """The examples of one task: read once (memory-mapped from the store), then the same ExampleSet."""

    accepted_sources: ClassVar[tuple[str, ...]] = readers.SOURCES
    reads_hub_node: ClassVar[bool] = True  # source=hub reads dataset.hub (SVAMP reads its SVAMP.json instead)

    def __init__(
        self,
        task: Task | None = None,
        source: str = "dsbs",
        root: str | None = None,
        max_rows: int | None = None,
        on_bad_row: str = "error",
        train_stand_in: str | None = None,
        train_fraction: float | None = None,
        train_size: int | None = None,
        subsample_seed: int = 0,
        hub: dict | None = None,
        hub_timeout: float = 5.0,
        cache_dir: str | None = None,
    ) -> None:
        self.task = task
        self.source = checked_choice("source", source, self.accepted_sources)
        self.on_bad_row = checked_choice("on_bad_row", on_bad_row, readers.BAD_ROW_POLICIES)
        self.train_stand_in = checked_choice("train_stand_in", train_stand_in, (None, *TRAIN_STAND_INS))
        if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1):
            raise ValueError(f"dataset.max_rows={max_rows!r} is not accepted; use a positive integer or null")
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
        self.hub = dict(hub or {})  # {name, config, splits: {ours: theirs}}: the dataset's YAML names its hub dataset
        if self.source == "hub" and self.reads_hub_node and not self.hub.get("name"):
            raise ValueError("dataset.source=hub needs dataset.hub.name (and hub.splits: {train: ..., test: ...})")
        self.hub_timeout = hub_timeout
        self.cache_dir = cache_dir
        self._examples: ExampleSet | None = None

    # ---------------------------------------------------------------- reading
    def raw_splits(self) -> Raw:
        """Every split this source has, as read (the release's files, or the hub's splits)."""
        memo = DigestMemo(self.cache_dir)
        try:
            if self.source == "hub":
                return self.hub_splits(memo)
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

    def _release_split(self, split: str, memo: DigestMemo) -> tuple[SplitExamples, readers.LoadReport]:
        files = readers.release_inputs(self.root, self.task, split)
        key_fields = {"source": "dsbs", "on_bad_row": self.on_bad_row, "files": [memo.digest(p) for p in files]}
        return self.stored(split, key_fields, lambda report: readers.release_examples(self.root, self.task, split, self.on_bad_row, report))

    def stored(self, split: str, key_fields: dict, build) -> tuple[SplitExamples, readers.LoadReport]:
        """A split from the examples store, built by `build(report)` the first time its key is seen."""
        table, report, key = build_or_open(self.task, split, key_fields, build, self.cache_dir)
        return SplitExamples(self.task, table, None, split, key), report

    def hub_splits(self, memo: DigestMemo) -> Raw:
        """dataset.source=hub: the hub dataset of dataset.hub, with the release's PaLM completions attached
        where the release folder has them."""
        raw = {}
        name, config = self.hub["name"], self.hub.get("config")
        for split, theirs in self.hub_split_names().items():
            llm = readers.palm_files(self.root, self.task, split) if self.root is not None and self.root.is_dir() else []
            attach = (lambda examples, report, llm=llm, split=split: readers.attach_palm(
                self.task, examples, llm, f"hub[{split}]", report)) if llm else None
            raw[split] = self.hub_split(split, name, config, theirs, f"hub:{name}[{split}]", {"palm": [memo.digest(p) for p in llm]}, attach)
        return raw

    def hub_split_names(self) -> dict[str, str]:
        """Our split -> the hub dataset's (default: train and test of the same names)."""
        return dict(self.hub.get("splits") or {"train": "train", "test": "test"})

    def hub_split(self, split: str, name: str, config: str | None, theirs: str, origin: str, key_extra: dict,
                  then: Callable | None = None) -> tuple[SplitExamples, readers.LoadReport]:
        """One split of a hub dataset (datasets.load_dataset) through the task's row check into the store;
        `then(examples, report)` adds to its examples (the release's PaLM completions)."""
        dataset = readers.load_hub_dataset(name, config, theirs, f"{self.task.name} split {theirs!r} ({name})", self.hub_timeout)
        key_fields = {"source": "hub", "dataset": [name, config, theirs], "fingerprint": getattr(dataset, "_fingerprint", None),
                      "on_bad_row": self.on_bad_row, **key_extra}

        def build(report):
            examples = readers.examples_from_rows(self.task, iter(dataset), origin, self.on_bad_row, report, first_line=0)
            return then(examples, report) if then is not None else examples

        return self.stored(split, key_fields, build)

    # ---------------------------------------------------------------- assembling
    @property
    def examples(self) -> ExampleSet:
        """The train/valid/test examples, built by the release's rules (loaded once, memory-mapped)."""
        if self._examples is None:
            self._examples = self._assemble(self.raw_splits())
        return self._examples

    def _assemble(self, raw: Raw) -> ExampleSet:
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

    # ---------------------------------------------------------------- describing
    def chance_accuracy(self) -> float | None:
        """Accuracy of guessing uniformly among the possible answers; None for open answers (SVAMP)."""
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


def _carve(rows: SplitExamples) -> tuple[SplitExamples, SplitExamples]:
    train, valid = readers.carve_valid(len(rows))
    return rows.select(train, "carve-train"), rows.select(valid, "carve-valid")


class MultipleChoiceExamples(ExampleSource):
    """CQA: five answer choices a question."""

    def chance_accuracy(self) -> float:
        return 0.2


class SVAMPExamples(ExampleSource):
    """SVAMP: on the hub it is the original SVAMP.json (dataset.svamp_json), split by the release's ids."""

    reads_hub_node = False

    def __init__(self, task: Task | None = None, svamp_json: str | None = None, **settings: Any) -> None:
        super().__init__(task, **settings)
        self.svamp_json = svamp_json  # a URL or a path; None: its GitHub URL

    def hub_splits(self, memo: DigestMemo) -> Raw:
        raw = {}
        location = self.svamp_json or readers.SVAMP_JSON_URL
        problems = readers.load_svamp_original(location, self.hub_timeout)
        for split, rows in readers.svamp_release_rows(problems).items():
            origin = f"SVAMP.json ({location})[{split}]"
            key_fields = {"source": "svamp_json", "on_bad_row": self.on_bad_row, "rows": rows}
            raw[split] = self.stored(split, key_fields, lambda report, rows=rows, origin=origin: readers.examples_from_rows(
                self.task, rows, origin, self.on_bad_row, report, first_line=0))
        return raw


class CueWordsExamples(ExampleSource):
    """The generated quickstart task: sizes, vocabulary, classes and noise are config, generation is seeded."""

    accepted_sources = ("generated",)

    def __init__(
        self,
        task: Task | None = None,
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
        **settings: Any,
    ) -> None:
        super().__init__(task or CueWordsTask(), source=source, **settings)
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

    def raw_splits(self) -> Raw:
        raw = {}
        for split, size in self.sizes.items():
            key_fields = {"source": "generated", "spec": vars(self.spec), "size": size, "seed": self.sample_seed}

            def build(report, split=split, size=size):
                for i, row in enumerate(generate_rows(self.spec, size, self.sample_seed, split)):
                    report.rows += 1
                    report.kept += 1
                    yield self.task.example_from_row(row, i)

            raw[split] = self.stored(split, key_fields, build)
        return raw


class FilesExamples(ExampleSource):
    """dataset=files: a task defined in config (kdlight.data.files.FilesTask) over local JSONL, CSV or
    Parquet files (one per split, or one split by seeded fractions) or a hub dataset."""

    accepted_sources = ("files", "hub")

    def __init__(
        self,
        task: Task | None = None,
        name: str = "files",
        path: str | None = None,
        train: str | None = None,
        valid: str | None = None,
        test: str | None = None,
        format: str = "auto",  # noqa: A002 - the config key users write
        split_fractions: dict | None = None,
        split_seed: int = 0,
        fields: dict | None = None,
        label_kind: str = "class",
        labels: list | None = None,
        templates: dict | None = None,
        cot: dict | None = None,
        source: str = "files",
        **settings: Any,
    ) -> None:
        mapping = dict(fields or {})
        unknown = sorted(set(mapping) - {"inputs", "label", "id", "choices", "highlights", "rationale"})
        if unknown:
            raise ValueError(f"dataset.fields has no key {unknown[0]!r}; use inputs, label, id, choices, highlights, rationale")
        inputs = mapping.get("inputs", ["text"])
        choices = mapping.get("choices")
        files_task = FilesTask(
            name=name, inputs=(inputs,) if isinstance(inputs, str) else tuple(inputs), label=mapping.get("label", "label"),
            id=mapping.get("id"), choices=choices if choices is None or isinstance(choices, str) else tuple(choices),
            highlights=mapping.get("highlights"), rationale=mapping.get("rationale"), label_kind=label_kind,
            labels=tuple(str(label) for label in labels) if labels else None,
            **({"templates": {key: typed_escapes(str(value)) for key, value in dict(templates).items()}} if templates else {}),
            **{key: str(cot[key]) for key in ("answer_marker", "next_example") if (cot or {}).get(key)},
        )
        super().__init__(files_task, source=source, **settings)
        self.files = {"train": train, "valid": valid, "test": test}
        if source != "hub" and (path is None) == (train is None):  # (source=hub reads dataset.hub, checked above)
            raise ValueError("dataset=files needs either dataset.path (one file, split by dataset.split_fractions) or dataset.train "
                             "and dataset.test (one file per split; dataset.valid optional), not both")
        if source != "hub" and path is None and test is None:
            raise ValueError("dataset.test is not set: give the test file too (or one dataset.path to split)")
        self.path, self.format = path, format
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

        return self.stored(name, key_fields, build)

    def raw_splits(self) -> Raw:
        memo = DigestMemo(self.cache_dir)
        try:
            if self.source == "hub":
                return self.hub_splits(memo)
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

    def hub_splits(self, memo: DigestMemo) -> Raw:
        name, config = self.hub["name"], self.hub.get("config")
        return {split: self.hub_split(split, name, config, theirs, f"hub:{name}[{theirs}]", {"task": self.task.definition()})
                for split, theirs in self.hub_split_names().items()}

    def chance_accuracy(self) -> float | None:
        if self.task.choices:
            return None  # as many answers as each example has choices
        return super().chance_accuracy()


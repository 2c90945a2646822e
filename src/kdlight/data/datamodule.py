"""One LightningDataModule per dataset: renderings, tokenised features and batches of the examples its
example source (kdlight.data.examples) finds.

A dataset config is instantiated once, without a model: `example_source` (the examples, their summary)
and the renderings are what the teacher stage and the data CLI read. `for_model` gives the DataModule a
model's tokenizer and family and what the method adds (rationales, a label source, train columns);
`setup()` then writes or opens the tokenised features.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pyarrow as pa
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from kdlight.data.collate import TaskCollator
from kdlight.data.examples import (
    CueWordsExamples,
    ExampleSource,
    FilesExamples,
    MultipleChoiceExamples,
    SVAMPExamples,
    checked_choice,
)
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
from kdlight.data.store import ExampleSet, open_table
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

RENDERINGS = ("student", "teacher")  # which rendering the model reads: the student input or the teacher prompt
SPLITS = ("train", "valid", "test")


class RationaleProvider(Protocol):
    """Gives each example of a chunk of a split its rationale text (None: this example has none)."""

    def fingerprint(self, split: str) -> str: ...

    def __call__(self, split: str, start: int, examples: list[Example], prompts: list[Rendered]) -> list[str | None]: ...


class KDDataModule(pl.LightningDataModule):
    """Examples -> two renderings -> tokenised label and rationale tasks -> padded batches."""

    task: ClassVar[Task]
    examples_class: ClassVar[type[ExampleSource]] = ExampleSource  # where this dataset's examples come from

    def __init__(
        self,
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
        tokenizer: Any = None,
        family: Any = None,
        rationales: RationaleProvider | None = None,
        label_source: Callable[[str, int, list[Example]], list[str | None]] | None = None,
        train_columns: Sequence[TrainColumns] = (),
        separator: str | None = None,
        prompt_wrapper: Callable[[Rendered], Rendered] | None = None,
        task: str | None = None,
        cot: dict | None = None,
        examples: ExampleSource | None = None,
        **example_settings: Any,
    ) -> None:
        """`example_settings` (source, root, max_rows, train_size, ...) go to the dataset's example source;
        `examples` shares one already made (another DataModule's) instead."""
        super().__init__()
        # the few-shot chain-of-thought prompt a generator continues (method=step_by_step method.source=generate)
        self.cot = {key: str(value) for key, value in dict(cot).items()} if cot else None
        if examples is None:
            # dataset.task: a registered task by name (a plugin's), so no DataModule subclass is needed
            examples = self.make_examples(TASKS.lookup(task) if task is not None else getattr(self, "task", None), cot,
                                          cache_dir=cache_dir, **example_settings)
        self.example_source = examples
        self.task = examples.task
        check_cot_prompt(self.cot, self.task.template_names())
        for name, value in (("chunk_rows", chunk_rows), ("corpus_rows", corpus_rows)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"dataset.{name}={value!r} is not accepted; use a positive integer")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.max_input_length = max_input_length
        self.max_target_length = max_target_length
        self.task_words = TaskWords(label_prefix, rationale_prefix, task_word)
        self.rationale_splits = tuple(rationale_splits)
        self.rendering = checked_choice("rendering", rendering, RENDERINGS)
        self.cache_dir = cache_dir
        self.seed = seed
        self.chunk_rows = chunk_rows
        self.corpus_rows = corpus_rows
        self.prompt_wrapper = prompt_wrapper
        self._bind(tokenizer, family, rationales, label_source, train_columns, separator)

    def make_examples(self, task: Task | None, cot: dict | None, **settings: Any) -> ExampleSource:
        """The example source of this dataset (`cot` is the DataModule's; a files task takes its markers)."""
        return self.examples_class(task, **settings)

    def _bind(self, tokenizer, family, rationales, label_source, train_columns, separator) -> None:
        self.tokenizer = tokenizer
        self.family = family
        self.rationales = rationales
        self.label_source = label_source  # the train rows' label targets instead of gold (kdlight.methods.label_sources); None: gold
        self.train_columns = tuple(train_columns)  # what the method adds to the train rows (kdlight.data.features.TrainColumns)
        self.separator = separator
        self.features: dict[str, FeatureRows] = {}

    def for_model(self, tokenizer: Any, family: Any, rationales: RationaleProvider | None = None,
                  label_source: Callable | None = None, train_columns: Sequence[TrainColumns] = (),
                  separator: str | None = None) -> KDDataModule:
        """This DataModule for one model: the same examples (not read again) and settings, with the model's
        tokenizer and family and what the training method adds."""
        bound = copy.copy(self)
        bound._bind(tokenizer, family, rationales, label_source, train_columns, separator)
        return bound

    @property
    def examples(self) -> ExampleSet:
        """The train/valid/test examples this DataModule renders and tokenises."""
        return self.example_source.examples

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


class ESNLIDataModule(KDDataModule):
    task = ESNLITask()


class ANLIDataModule(KDDataModule):
    task = ANLITask()


class CQADataModule(KDDataModule):
    task = CQATask()
    examples_class = MultipleChoiceExamples


class SVAMPDataModule(KDDataModule):
    task = SVAMPTask()
    examples_class = SVAMPExamples


class CueWordsDataModule(KDDataModule):
    """The generated quickstart task (kdlight.data.examples.CueWordsExamples: sizes, vocabulary, classes
    and noise are config, generation is seeded)."""

    task = CueWordsTask()
    examples_class = CueWordsExamples


class FilesDataModule(KDDataModule):
    """dataset=files: a task defined in config over local files or a hub dataset (kdlight.data.examples.FilesExamples)."""

    examples_class = FilesExamples

    def make_examples(self, task: Task | None, cot: dict | None, **settings: Any) -> ExampleSource:
        return FilesExamples(task, cot=cot, **settings)  # the prompt's answer marker and example separator are the task's

"""Your own data from config alone (`dataset=files`): JSONL, CSV or Parquet files, or a hub dataset.

A FilesTask is a Task whose fields, label kind and templates come from the config: `fields` maps the
row's columns (the inputs, the label, optional choices, human highlights, a free-text rationale and
an id), `label_kind` picks the answer checker, and `templates` are rendered as every task's are
(kdlight.data.tasks.render_template: what a template inserts from the row is content, the rest is
instruction; `{choices}` renders every choice with the `choice` template).
Bad rows are named file:line and, with on_bad_row=skip, dropped and counted.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kdlight.answers import evaluate_equation
from kdlight.data import readers
from kdlight.data.tasks import CHOICES, LETTERS, TASKS, BadRow, Example, PalmParse, Task, _require_text, parse_marked, template_fields

LABEL_KINDS = {"class": "text", "text": "text", "number": "equation"}  # label kind -> the answer checker's kind
FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class FilesTask(Task):
    """A task defined by config: which columns are what, how labels are checked, how examples render."""

    name: str = "files"
    inputs: tuple[str, ...] = ("text",)
    label: str = "label"
    id: str | None = None
    choices: str | tuple[str, ...] | None = None
    highlights: str | None = None
    rationale: str | None = None
    label_kind: str = "class"
    labels: tuple[str, ...] | None = None
    templates: dict = field(default_factory=lambda: {"student": "{text}", "teacher": "{text}\nAnswer:", "choice": "\n({letter}) {choice}"})
    answer_marker: str = "So the answer is"  # generated chains of thought: the answer follows this ...
    next_example: str = "Q:"  # ... and a completion is cut where it starts another example
    release_dir = "files"
    release_splits = ("train", "valid", "test")

    def __post_init__(self) -> None:
        if self.label_kind not in LABEL_KINDS:
            raise ValueError(f"dataset.label_kind={self.label_kind!r} is not accepted; use one of {list(LABEL_KINDS)}")
        if self.label_kind == "class" and not self.labels:
            raise ValueError("dataset.labels is required with dataset.label_kind=class: list the class names "
                             "(integer labels in the files index this list); free-text answers: label_kind=text")
        if not self.inputs:
            raise ValueError("dataset.fields.inputs is empty: name the column or columns the model reads")
        known = [*self.inputs, *([CHOICES] if self.choices else [])]
        for role in ("student", "teacher"):
            if role not in self.templates:
                raise ValueError(f"dataset.templates.{role} is missing: a format string over {known}")
            for name in template_fields(self.templates[role]):
                if name not in known and not (role == "student" and name == "eos"):
                    raise ValueError(f"dataset.templates.{role} names {{{name}}}, which is not an input field; use {known}")
        for key in ("choice", "student_choice", "teacher_choice"):
            for name in template_fields(self.templates.get(key, "")):
                if name not in ("letter", "choice"):
                    raise ValueError(f"dataset.templates.{key} names {{{name}}}; it may use {{letter}} and {{choice}}")

    # ------------------------------------------------------------ what the task is
    def template_names(self) -> list[str]:
        return [*self.inputs, *([CHOICES] if self.choices else [])]

    @property
    def label_set(self) -> tuple[str, ...] | None:
        return tuple(self.labels) if self.label_kind == "class" else None

    @property
    def answer_kind(self) -> str:
        return LABEL_KINDS[self.label_kind]

    def definition(self) -> dict:
        """Everything that defines the task, JSON-ready: store and cache keys, and the export's
        kdlight.json (kdlight-predict rebuilds the task from it)."""
        return {"name": self.name, "inputs": list(self.inputs), "label": self.label, "id": self.id,
                "choices": list(self.choices) if isinstance(self.choices, (list, tuple)) else self.choices,
                "highlights": self.highlights, "rationale": self.rationale, "label_kind": self.label_kind,
                "labels": list(self.labels) if self.labels else None, "templates": dict(self.templates),
                "answer_marker": self.answer_marker, "next_example": self.next_example}

    @classmethod
    def from_definition(cls, definition: dict) -> FilesTask:
        values = dict(definition)
        values["inputs"] = tuple(values["inputs"])
        if isinstance(values.get("choices"), list):
            values["choices"] = tuple(values["choices"])
        if values.get("labels"):
            values["labels"] = tuple(values["labels"])
        return cls(**values)

    # ------------------------------------------------------------ rows
    def example_from_row(self, row: dict, index: int) -> Example:
        fields: dict[str, Any] = {name: _text(row, name) for name in self.inputs}
        if self.choices:
            fields[CHOICES] = self._choices(row)
        label = self._label(row, fields.get(CHOICES))
        marked = _optional_list(row, self.highlights)
        if marked:
            fields["highlights"] = marked
        rationale = row.get(self.rationale) if self.rationale else None
        if rationale is not None and (not isinstance(rationale, str) or not rationale.strip()):
            rationale = None
        ident = str(row[self.id]) if self.id and row.get(self.id) not in (None, "") else f"{self.name}-{index}"
        return Example(ident, fields, label, rationale)

    def _choices(self, row: dict) -> list[str]:
        if isinstance(self.choices, (list, tuple)):  # one column per choice (CSV)
            return [_text(row, name) for name in self.choices]
        value = _decoded_list(row.get(self.choices))
        if not isinstance(value, list) or not value or not all(isinstance(c, str) and c.strip() for c in value):
            raise BadRow(f"field {self.choices!r} must be a non-empty list of texts, got {row.get(self.choices)!r:.80}")
        return value

    def _label(self, row: dict, choices: list[str] | None) -> str:
        if self.label not in row or row[self.label] in (None, ""):
            raise BadRow(f"missing field {self.label!r}")
        raw = row[self.label]
        if self.label_kind == "class":
            # by value first: 3 (a JSON number) or "3" (a CSV cell) is the class named "3" when there is one;
            # only a whole number that names no class is read as a 0-based position in dataset.labels
            integer = (isinstance(raw, (int, np.integer)) and not isinstance(raw, bool)) or (isinstance(raw, str) and raw.strip().isdigit())
            text = str(int(raw)) if integer else raw
            if isinstance(text, str) and text in self.labels:
                return text
            if integer and 0 <= int(raw) < len(self.labels):
                return self.labels[int(raw)]
            raise BadRow(f"label {raw!r} is not one of dataset.labels {list(self.labels)} (nor an index into them)")
        label = str(raw).strip()
        if self.label_kind == "number":
            if evaluate_equation(label) is None:
                raise BadRow(f"label {raw!r} is not a number or an arithmetic equation")
        if choices is not None and label not in choices:
            raise BadRow(f"label {raw!r} is not one of the choices {choices}")
        return label

    def placeholder_row(self, row: dict) -> dict:
        choices = _decoded_list(row.get(self.choices)) if isinstance(self.choices, str) else None
        if isinstance(choices, list) and choices:
            return {self.label: choices[0], **row}
        return {self.label: self.labels[0] if self.labels else "0", **row}

    def parse_palm(self, completion: str) -> PalmParse:
        # a generated chain of thought (method.source=generate), in the form of dataset.cot's exemplars
        return parse_marked(completion, self.next_example, self.answer_marker)

    def label_category(self, example: Example) -> str:
        if example.fields.get(CHOICES):
            return f"({LETTERS[example.fields[CHOICES].index(example.label)]})" if example.label in example.fields[CHOICES] else "other"
        return example.label if self.label_kind == "class" else self.label_kind


def _text(row: dict, name: str) -> str:
    """The release rows' text check (_require_text), also taking an empty cell (None) as missing and a
    number (a CSV or Parquet cell) as its text."""
    value = row.get(name)
    if value is None:
        raise BadRow(f"missing field {name!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return _require_text(row, name)


def typed_escapes(template: str) -> str:
    """\\n and \\t typed on a command line (where Hydra keeps them as two characters) as the newline and tab they mean."""
    return template.replace("\\n", "\n").replace("\\t", "\t")


def _decoded_list(value):
    """A list column, or (CSV) its JSON text."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return list(value) if isinstance(value, (tuple, np.ndarray)) else value


def _optional_list(row: dict, name: str | None) -> list[str]:
    if not name or row.get(name) in (None, ""):
        return []
    value = _decoded_list(row[name])
    if isinstance(value, str):
        value = [value]
    return [v for v in value if isinstance(v, str) and v.strip()] if isinstance(value, list) else []


# ---------------------------------------------------------------- reading files
def file_format(path: Path, declared: str = "auto") -> str:
    if declared != "auto":
        if declared not in set(FORMATS.values()):
            raise ValueError(f"dataset.format={declared!r} is not accepted; use auto or one of {sorted(set(FORMATS.values()))}")
        return declared
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: cannot tell the format from the extension {path.suffix!r}; use {sorted(FORMATS)} or set dataset.format")
    return kind


CSV_FIELD_LIMIT = 1 << 24  # characters in one CSV field (Python's default, 131,072, is less than a long document)


def read_rows(path: Path, kind: str) -> tuple[Iterator[object], int]:
    """(rows, the line of the first row): JSON Lines line by line, CSV records with the physical line each
    starts on (readers.At), Parquet by row (its "line" is the row number, from 1)."""
    if kind == "jsonl":
        return readers.read_json_lines(path), 1
    if kind == "csv":
        return read_csv(path), 2
    return read_parquet(path), 1


def file_columns(path: Path, kind: str, sample: int = 20) -> list[str]:
    """The columns a file has: a CSV's header, a Parquet schema, the keys of a JSONL file's first `sample` rows."""
    if kind == "parquet":
        return list(open_parquet(path).schema_arrow.names)
    columns: dict[str, None] = {}
    rows, _ = read_rows(path, kind)
    for _, row in zip(range(sample), rows):
        value = row.value if isinstance(row, readers.At) else row
        if isinstance(value, dict):
            columns.update(dict.fromkeys(str(k) for k in value))
    return list(columns)


def check_columns(task: FilesTask, path: Path, kind: str) -> None:
    """A column dataset.fields names that the file does not have is a config typo, not a bad row: named once,
    with the file's real columns."""
    wanted = {"inputs": list(task.inputs), "label": [task.label],
              "choices": list(task.choices) if isinstance(task.choices, tuple) else [task.choices] if task.choices else []}
    columns = file_columns(path, kind)
    if not columns:
        return  # an empty file: the empty-split check names it
    for key, names in wanted.items():
        missing = [n for n in names if n not in columns]
        if missing:
            raise readers.DataSourceError(f"dataset.fields.{key} names {missing[0]!r}, which is not a column of {path}; "
                                          f"its columns are {columns}")


def read_csv(path: Path) -> Iterator[readers.At]:
    """CSV records as {header: field} rows, each at the physical line it starts on. Bytes are read as UTF-8
    (a byte-order mark before the header dropped); a record that is not UTF-8 or not valid CSV becomes an
    InvalidLine at its line, so it is named and can be skipped, and reading goes on after it."""
    csv.field_size_limit(CSV_FIELD_LIMIT)
    with open(path, "rb") as handle:
        lines = (raw.decode("utf-8", "surrogateescape").lstrip("\ufeff") if number == 0 else raw.decode("utf-8", "surrogateescape")
                 for number, raw in enumerate(handle))
        reader = csv.reader(lines)
        header = next(reader, None)
        if header is None:
            return
        done = reader.line_num
        while True:
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                yield readers.At(done + 1, readers.InvalidLine(f"not valid CSV ({err})"))
                if reader.line_num == done:
                    return  # the reader cannot move past it
                done = reader.line_num
                continue
            line, done = done + 1, reader.line_num
            if not record:
                continue  # a blank line
            if readers.has_surrogates(record) or readers.has_surrogates(header):
                yield readers.At(line, readers.InvalidLine("invalid UTF-8 (bytes that are not UTF-8 text)"))
                continue
            row = dict(zip(header, record))
            row.update({name: None for name in header[len(record):]})  # csv.DictReader's restval for short records
            yield readers.At(line, row)


def open_parquet(path: Path):
    """A Parquet file to read; one that is not Parquet is named."""
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise readers.DataSourceError(f"{path}: not a readable Parquet file ({str(err).strip().splitlines()[0][:200]})") from None


def read_parquet(path: Path) -> Iterator[dict]:
    for batch in open_parquet(path).iter_batches(batch_size=4096):
        yield from batch.to_pylist()


def split_positions(n: int, fractions: dict, seed: int) -> dict[str, np.ndarray]:
    """train/valid/test positions of one file's n rows: a seeded permutation cut by the fractions, each
    split in file order."""
    valid, test = float(fractions.get("valid", 0.1)), float(fractions.get("test", 0.1))
    if not (0 < valid < 1 and 0 < test < 1 and valid + test < 1):
        raise ValueError(f"dataset.split_fractions={dict(fractions)} is not accepted; use valid and test fractions above 0 that sum below 1")
    order = np.random.default_rng(seed).permutation(n)
    n_valid, n_test = max(1, round(valid * n)), max(1, round(test * n))
    parts = {"valid": order[:n_valid], "test": order[n_valid : n_valid + n_test], "train": order[n_valid + n_test :]}
    return {name: np.sort(part).astype(np.int64) for name, part in parts.items()}


def missing_files(paths: Sequence[tuple[str, str | None]]) -> list[str]:
    """Config keys whose file is not there, one line each (checked before a run folder exists)."""
    return [f"{key}={value}: no such file (dataset=files reads JSONL, CSV or Parquet files)"
            for key, value in paths if value is not None and not Path(str(value)).expanduser().is_file()]


def task_from_format(fmt: dict) -> Task:
    """The task an export or checkpoint was trained on: a files dataset from its definition in the
    input format, else the registered task of that name."""
    if fmt.get("task_definition"):
        return FilesTask.from_definition(fmt["task_definition"])
    if fmt["dataset"] not in TASKS:
        raise ValueError(f"the student was trained on dataset {fmt['dataset']!r}, which is not a known task ({sorted(TASKS)}); "
                         "if a plugin defines it, import the plugin (config key plugins, or its entry point)")
    return TASKS[fmt["dataset"]]

"""Examples on disk: each split as one Arrow file, written once by streaming, then memory-mapped.

A split is never held as Python objects: `SplitExamples` is a view (a memory-mapped table and an
optional row selection) that decodes Examples a chunk at a time. Processes that open the same file
(DDP ranks, DataLoader workers) share its pages.

Files live under <cache_dir>/examples/<dataset>-<split>-<key>.arrow, keyed by what they were built
from (the content of the source files, not their paths) and the reading rules; a sidecar JSON holds
the load report (rows rejected and why, PaLM parse counts). Without a cache_dir the table is built in
memory (small tests).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from kdlight.data.readers import LoadReport
from kdlight.data.tasks import Example, Task
from kdlight.provenance import code_digest
from kdlight.utils.io import atomic_path, json_digest, write_json

log = logging.getLogger(__name__)

STORE_VERSION = 1
WRITE_ROWS = 8192  # rows per record batch while building
SCHEMA = pa.schema([
    ("id", pa.string()),
    ("label", pa.string()),
    ("fields", pa.string()),  # the example's own content as JSON (premise/hypothesis, question/choices, ...)
    ("palm_rationale", pa.string()),
    ("palm_label", pa.string()),
    ("category", pa.string()),  # what the label distribution counts (Task.label_category)
])


def _record_batch(task: Task, examples: list[Example]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "id": [ex.id for ex in examples],
            "label": [ex.label for ex in examples],
            "fields": [json.dumps(ex.fields, ensure_ascii=False) for ex in examples],
            "palm_rationale": [ex.palm_rationale for ex in examples],
            "palm_label": [ex.palm_label for ex in examples],
            "category": [task.label_category(ex) for ex in examples],
        },
        schema=SCHEMA,
    )


def write_examples(task: Task, examples: Iterable[Example], sink) -> int:
    """Stream examples into an Arrow IPC file (a path or a buffer); returns the row count."""
    rows = 0
    with pa.ipc.new_file(sink, SCHEMA) as writer:
        chunk: list[Example] = []
        for example in examples:
            chunk.append(example)
            if len(chunk) == WRITE_ROWS:
                writer.write_batch(_record_batch(task, chunk))
                rows += len(chunk)
                chunk = []
        if chunk:
            writer.write_batch(_record_batch(task, chunk))
            rows += len(chunk)
    return rows


def open_table(path: Path) -> pa.Table:
    """A memory-mapped Arrow IPC file as a table (no copy: pages are read on demand and shared)."""
    return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()


def take_rows(table: pa.Table, indices) -> pa.Table:
    """Rows of a (memory-mapped, many-chunk) table by position, as zero-copy one-row slices: Arrow's
    Table.take first concatenates every chunk of a column, which cost 0.45 s and 350 MB of memory
    per 64-row batch of a 549k-row features file."""
    if len(indices) == 0:
        return table.slice(0, 0)
    return pa.concat_tables([table.slice(int(i), 1) for i in indices])


def file_digest(path: Path, memo: dict | None = None) -> str:
    """sha256 of a file's content, remembered in `memo` so unchanged files are read once. The memo's stamp
    adds the inode's change time and number to size and mtime: tools that restore an mtime (cp -p, rsync -t,
    tar, touch -r) cannot restore the change time, which the kernel sets on every write, so an edit that
    keeps size and mtime is hashed again."""
    stat = path.stat()
    stamp = f"{stat.st_size}-{stat.st_mtime_ns}-{stat.st_ctime_ns}-{stat.st_ino}"
    key = str(path.resolve())
    if memo is not None and memo.get(key, {}).get("stamp") == stamp:
        return memo[key]["sha256"]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    if memo is not None:
        memo[key] = {"stamp": stamp, "sha256": digest.hexdigest()}
    return digest.hexdigest()


class DigestMemo:
    """File digests remembered across runs in <cache_dir>/examples/file-digests.json."""

    def __init__(self, cache_dir: str | Path | None) -> None:
        self.path = Path(cache_dir) / "examples" / "file-digests.json" if cache_dir else None
        self.data: dict = {}
        if self.path is not None and self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError):
                self.data = {}
        self.changed = False

    def digest(self, path: Path) -> str:
        before = dict(self.data.get(str(path.resolve()), {}))
        value = file_digest(path, self.data)
        self.changed |= before != self.data.get(str(path.resolve()))
        return value

    def save(self) -> None:
        if self.path is not None and self.changed:
            write_json(self.path, self.data)


def build_or_open(
    task: Task, split: str, key_fields: dict, build: Callable[[LoadReport], Iterator[Example]], cache_dir: str | Path | None
) -> tuple[pa.Table, LoadReport, str]:
    """The split's table from the store, building it (streamed, atomically) on a miss; the load report; the key."""
    key_fields = {**key_fields, "code": code_digest(type(task))}  # the parsing code: an edit rebuilds, never reuses
    key = json_digest({"version": STORE_VERSION, "task": task.name, "split": split, **key_fields}, 16)
    if cache_dir is None:
        report = LoadReport()
        sink = pa.BufferOutputStream()
        write_examples(task, build(report), sink)
        return pa.ipc.open_file(sink.getvalue()).read_all(), report, key
    path = Path(cache_dir) / "examples" / f"{task.name}-{split}-{key}.arrow"
    info = path.with_suffix(".json")
    if not (path.is_file() and info.is_file()):
        for older in built_by_other_code(path.parent, task.name, split, key_fields):
            log.warning("%s holds the same %s %s rows parsed by other code (%s changed since): not reused; it can be deleted",
                        older, task.name, split, type(task).__name__)
        report = LoadReport()
        with atomic_path(path, suffix=".arrow") as tmp:
            rows = write_examples(task, build(report), str(tmp))
        write_json(info, {"key": key, "task": task.name, "split": split, "built_from": key_fields, **report.as_dict()})
        log.info("%s %s: %d examples stored in %s", task.name, split, rows, path)
    report = LoadReport.from_dict(json.loads(info.read_text()))
    remove_orphans(path.parent)
    return open_table(path), report, key


ORPHAN_AGE = 600.0  # seconds without a write: a store file being built by a live process is written to much more often


def remove_orphans(folder: Path, age: float = ORPHAN_AGE) -> list[Path]:
    """Temporary store files a killed build left behind (.<name>.*.arrow.tmp, untouched for `age` seconds)."""
    removed = []
    for tmp in folder.glob(".*.arrow.tmp"):
        try:
            if time.time() - tmp.stat().st_mtime > age:
                tmp.unlink()
                removed.append(tmp)
                log.info("removed %s: a store file a killed run left unfinished", tmp)
        except OSError:
            continue
    return removed


def built_by_other_code(folder: Path, task: str, split: str, key_fields: dict) -> list[Path]:
    """Stored splits built from the same inputs and settings as `key_fields` by other parsing code."""
    same = json.dumps({k: v for k, v in key_fields.items() if k != "code"}, sort_keys=True, default=str)
    found = []
    for info in folder.glob(f"{task}-{split}-*.json"):
        try:
            built = json.loads(info.read_text()).get("built_from") or {}
        except (OSError, json.JSONDecodeError):
            continue
        if built.get("code") != key_fields["code"] and json.dumps({k: v for k, v in built.items() if k != "code"},
                                                                  sort_keys=True, default=str) == same:
            found.append(info.with_suffix(".arrow"))
    return found


class SplitExamples(Sequence[Example]):
    """A split as a view of a table: rows `indices` (all when None), decoded a chunk at a time.

    A plain class, not a dataclass: Hydra's instantiate would turn a dataclass argument into a config.
    """

    def __init__(self, task: Task, table: pa.Table, indices: np.ndarray | None = None, name: str = "", key: str = "") -> None:
        self.task, self.table, self.indices, self.name = task, table, indices, name
        self.key = key  # what these rows are: the store key and the selection (for cache keys)

    def __len__(self) -> int:
        return self.table.num_rows if self.indices is None else len(self.indices)

    def _rows(self, start: int, stop: int) -> pa.Table:
        if self.indices is None:
            return self.table.slice(start, max(0, stop - start))
        return take_rows(self.table, self.indices[start:stop])

    def _decode(self, table: pa.Table) -> list[Example]:
        data = table.to_pydict()
        return [
            Example(i, json.loads(f), label, rationale, palm_label)
            for i, label, f, rationale, palm_label in zip(
                data["id"], data["label"], data["fields"], data["palm_rationale"], data["palm_label"]
            )
        ]

    def chunk(self, start: int, stop: int) -> list[Example]:
        return self._decode(self._rows(start, min(stop, len(self))))

    def chunks(self, size: int = 4096) -> Iterator[tuple[int, list[Example]]]:
        """(start row, examples) for consecutive chunks of `size` rows."""
        for start in range(0, len(self), size):
            yield start, self.chunk(start, start + size)

    def __iter__(self) -> Iterator[Example]:
        for _, examples in self.chunks(1024):
            yield from examples

    def __getitem__(self, item):
        if isinstance(item, slice):
            start, stop, step = item.indices(len(self))
            if step != 1:
                raise ValueError("SplitExamples slices must be contiguous")
            return self.select(np.arange(start, stop), f"[{start}:{stop}]")
        if item < 0:
            item += len(self)
        if not 0 <= item < len(self):
            raise IndexError(item)
        return self.chunk(item, item + 1)[0]

    def select(self, positions: np.ndarray, what: str) -> SplitExamples:
        """The rows at `positions` of this view (positions index this view, not the table)."""
        rows = positions if self.indices is None else self.indices[positions]
        key = hashlib.sha256(f"{self.key}|{what}".encode()).hexdigest()[:16]
        return SplitExamples(self.task, self.table, np.asarray(rows, dtype=np.int64), self.name, key)

    def head(self, n: int) -> SplitExamples:
        return self if n >= len(self) else self[:n]

    def column(self, name: str, start: int = 0, stop: int | None = None) -> list:
        return self._rows(start, len(self) if stop is None else stop).column(name).to_pylist()

    def counts(self, column: str) -> Counter:
        """Value counts of a column over the view, a chunk at a time."""
        counter: Counter = Counter()
        for start in range(0, len(self), 65536):
            counter.update(self._rows(start, start + 65536).column(column).to_pylist())
        return counter


class ExampleSet:
    """A dataset's train/valid/test splits, and what loading its raw splits reported."""

    def __init__(self, task: Task, splits: dict[str, SplitExamples], reports: dict[str, LoadReport], stand_in: str | None = None) -> None:
        self.task, self.splits, self.reports = task, splits, reports
        self.stand_in = stand_in  # the split that stood in for a missing train split

    def __getitem__(self, split: str) -> SplitExamples:
        if split not in self.splits:
            raise KeyError(f"split {split!r} is not one of {sorted(self.splits)}")
        return self.splits[split]

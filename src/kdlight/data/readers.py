"""Reading raw rows as streams: the step-by-step release layout on disk, the hub, SVAMP's JSON.

Both paths end in the same splits, built by the release's rules:
- CQA: test = CoS-E validation; valid = 10% of the CoS-E train rows (train_test_split(0.1, seed=0));
- SVAMP: train/test = a seed-0 permutation of SVAMP.json (first 800 / last 200); valid = 10% of train;
- e-SNLI, ANLI R1: the official splits.
Nothing here holds a split in memory: rows are read line by line, PaLM completions file by file.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from kdlight.data.tasks import BadRow, Example, SVAMPTask, Task
from kdlight.utils.hub import HubUnavailableError, hub_endpoint, hub_offline_mode, require_reachable

log = logging.getLogger(__name__)

SOURCES = ("dsbs", "hub")
BAD_ROW_POLICIES = ("error", "skip")
VALID_FRACTION, SPLIT_SEED = 0.1, 0
SVAMP_JSON_URL = "https://raw.githubusercontent.com/arkilpatel/SVAMP/main/SVAMP.json"
MAX_REJECTED_LISTED = 50

RELEASE_LAYOUT = (
    "<root>/<name>/<name>_<split>.json (JSON Lines, one example a line) and, for PaLM rationales, "
    "<root>/<name>/llm/<split>_CoT_<i>.json (JSON arrays, concatenated in order of i)"
)

class DataSourceError(RuntimeError):
    """A missing root, file or split; the message names the path and the expected layout."""


class BadRowError(ValueError):
    """A malformed row under on_bad_row=error; the message names its file and line."""


@dataclass
class Rejected:
    file: str
    line: int
    reason: str


@dataclass
class LoadReport:
    """What reading one split found: rows kept and rejected, PaLM completions and parses."""

    rows: int = 0
    kept: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    rejected_count: int = 0
    palm_completions: int = 0
    palm_parsed: int = 0

    def as_dict(self) -> dict:
        return {
            "rows": self.rows, "kept": self.kept, "rejected_count": self.rejected_count,
            "rejected": [vars(r) for r in self.rejected], "palm_completions": self.palm_completions,
            "palm_parsed": self.palm_parsed,
        }

    @classmethod
    def from_dict(cls, data: dict) -> LoadReport:
        return cls(
            data["rows"], data["kept"], [Rejected(**r) for r in data["rejected"]], data["rejected_count"],
            data["palm_completions"], data["palm_parsed"],
        )


class PalmMismatch(DataSourceError):
    """The llm/ files hold a different number of completions than the split has rows."""

    def __init__(self, origin: str, completions: int, rows: int) -> None:
        super().__init__(f"{origin}: {completions} PaLM completions but {rows} rows")
        self.completions, self.rows = completions, rows


class InvalidLine:
    """Stands in for a line that is not a JSON object (bad JSON, bad UTF-8), keeping row i at line i."""

    def __init__(self, message: str) -> None:
        self.message = message


class At(NamedTuple):
    """A row with the physical line it starts on (a CSV record may span lines)."""

    line: int
    value: object


def has_surrogates(value) -> bool:
    """A lone surrogate (a JSON "\\ud800" escape, or bytes that were not UTF-8) anywhere in a parsed value:
    such text cannot be stored or encoded."""
    if isinstance(value, str):
        return any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, dict):
        return any(has_surrogates(k) or has_surrogates(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_surrogates(v) for v in value)
    return False


def parse_json_line(text: str) -> object:
    """One JSON Lines row, or an InvalidLine saying what is wrong with it."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        return InvalidLine(f"not valid JSON ({err.msg})")
    except RecursionError:
        return InvalidLine("not a row: its JSON is nested too deeply to read")
    if "\\u" in text and has_surrogates(value):
        return InvalidLine("a \\ud800-\\udfff escape (a lone surrogate) is not text")
    return value


def read_json_lines(path: Path) -> Iterator[object]:
    """One entry per line, streamed: the parsed row, or an InvalidLine saying what is wrong."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle):
            try:
                text = raw.decode("utf-8-sig" if number == 0 else "utf-8")  # a byte-order mark before the first row
            except UnicodeDecodeError as err:
                yield InvalidLine(f"invalid UTF-8 ({err.reason} at byte {err.start} of the line)")
                continue
            yield parse_json_line(text)


def empty_split_message(split: str, report: LoadReport | None) -> str:
    """One line for a split with no examples: how many rows were read and skipped, and the first skipped one."""
    if report is None or report.rows == 0:
        return f"0 {split} rows: the file holds no rows (an empty file, or a CSV with only its header)"
    first = report.rejected[0] if report.rejected else None
    where = f"; the first: {first.file}:{first.line}: {first.reason}" if first else ""
    return (f"0 {split} rows: {report.rows} read, {report.rejected_count} skipped by dataset.on_bad_row=skip{where}. "
            "Fix the rows (kdlight-data lists them), or point at another file")


def release_file(root: Path, task: Task, split: str) -> Path:
    return root / task.release_dir / f"{task.release_dir}_{split}.json"


DATA_DIR_HINT = "point kdlight at the release with KDLIGHT_DATA_DIR=/path/to/dsbs or paths.data_dir=/path/to/dsbs"


def missing_release(root: Path, task: Task, train_stand_in: str | None) -> str | None:
    """Why the release under `root` cannot give `task`'s splits (one line), or None. Checked before a
    run folder exists and again where the files are read."""
    if not root.is_dir():
        first = release_file(root, task, task.release_splits[0]).relative_to(root)
        return (f"no data for {task.name}: dataset.root={root} does not exist (kdlight looks there for {first} and the "
                f"other files of the step-by-step release); {DATA_DIR_HINT}")
    for split in task.release_splits:
        path = release_file(root, task, split)
        if path.is_file() or (split == "train" and train_stand_in is not None):
            continue
        if split == "train":
            return (f"missing file {path}: the {task.name} train split is not in {root}. "
                    f"Supply it as JSON Lines in the release layout ({RELEASE_LAYOUT}), for example from "
                    f"the step-by-step datasets.zip, or load it from the hub with dataset.source=hub; "
                    f"or train on the valid split as a stand-in with dataset.train_stand_in=valid.")
        return f"missing file {path}: the {task.name} {split} split is not in {root} ({RELEASE_LAYOUT}); {DATA_DIR_HINT}"
    return None


def palm_files(root: Path, task: Task, split: str) -> list[Path]:
    found = list((root / task.release_dir / "llm").glob(f"{split}_CoT_*.json"))
    return sorted(found, key=lambda p: int(p.stem.rsplit("_", 1)[1]))


def iter_palm_completions(files: list[Path]) -> Iterator[str]:
    """Completions in row order, one llm file in memory at a time (e-SNLI has 100 of them)."""
    for path in files:
        with open(path, encoding="utf-8") as handle:
            yield from json.load(handle)


def examples_from_rows(
    task: Task,
    rows: Iterable[object],
    origin: str,
    on_bad_row: str,
    report: LoadReport,
    completions: Iterator[str] | None = None,
    first_line: int = 1,
) -> Iterator[Example]:
    """Examples from raw rows, streamed. Completion i (if given) is parsed into row i's PaLM fields,
    whether row i is kept or rejected, so a skipped row never shifts the alignment."""
    rows = iter(rows)
    for index, row in enumerate(rows):
        line = index + first_line
        if isinstance(row, At):  # a reader that knows the physical line (CSV records may span lines)
            line, row = row.line, row.value
        report.rows += 1
        completion = None
        if completions is not None:
            completion = next(completions, None)
            if completion is None:
                raise PalmMismatch(origin, index, index + 1 + sum(1 for _ in rows))
            report.palm_completions += 1
        try:
            if isinstance(row, InvalidLine):
                raise BadRow(row.message)
            if not isinstance(row, dict):
                raise BadRow(f"row is not a JSON object: {row!r:.80}")
            example = task.example_from_row(row, index)
        except BadRow as err:
            if on_bad_row == "error":
                raise BadRowError(f"{origin}:{line}: {err}. Fix the row, or set dataset.on_bad_row=skip to drop such rows.") from None
            report.rejected_count += 1
            if len(report.rejected) < MAX_REJECTED_LISTED:
                report.rejected.append(Rejected(origin, line, str(err)))
            if completion is not None:
                report.palm_parsed += task.parse_palm(completion).ok
            continue
        if completion is not None:
            parsed = task.parse_palm(completion)
            example.palm_rationale, example.palm_label = parsed.rationale, parsed.label
            report.palm_parsed += parsed.ok
        report.kept += 1
        yield example
    if completions is not None and next(completions, None) is not None:
        raise PalmMismatch(origin, report.palm_completions + 1 + sum(1 for _ in completions), report.rows)
    if report.rejected_count:
        log.warning("%s: skipped %d malformed rows (dataset.on_bad_row=skip)", origin, report.rejected_count)


def release_examples(root: Path, task: Task, split: str, on_bad_row: str, report: LoadReport) -> Iterator[Example]:
    """The examples of one release file, with its PaLM completions when the llm/ files exist."""
    path = release_file(root, task, split)
    if not path.is_file():
        raise DataSourceError(f"missing file {path}. Expected the step-by-step release layout: {RELEASE_LAYOUT}.")
    llm = palm_files(root, task, split)
    completions = iter_palm_completions(llm) if llm else None
    try:
        yield from examples_from_rows(task, read_json_lines(path), str(path), on_bad_row, report, completions)
    except PalmMismatch as err:
        raise DataSourceError(
            f"{root / task.release_dir / 'llm'}: {err.completions} PaLM completions for split {split!r} but {err.rows} rows "
            f"in {path}; row i of the llm files must be row i of the split file."
        ) from None


def release_inputs(root: Path, task: Task, split: str) -> list[Path]:
    """The files a release split is read from (for fingerprints)."""
    return [release_file(root, task, split), *palm_files(root, task, split)]


def attach_palm(task: Task, examples: Iterable[Example], files: list[Path], origin: str, report: LoadReport) -> Iterator[Example]:
    """Hub rows have no PaLM completions; the release's llm/ files give them, row for row."""
    completions = iter_palm_completions(files)
    for index, example in enumerate(examples):
        completion = next(completions, None)
        if completion is None:
            raise PalmMismatch(origin, index, index + 1)
        parsed = task.parse_palm(completion)
        example.palm_rationale, example.palm_label = parsed.rationale, parsed.label
        report.palm_completions += 1
        report.palm_parsed += parsed.ok
        yield example


def carve_valid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of train and valid exactly as the release splits 10% off: datasets' train_test_split(0.1, seed=0)."""
    import datasets  # lazy: off the config check's import path (tests/test_train.py)

    parts = datasets.Dataset.from_dict({"i": np.arange(n)}).train_test_split(test_size=VALID_FRACTION, seed=SPLIT_SEED)
    return np.asarray(parts["train"]["i"], dtype=np.int64), np.asarray(parts["test"]["i"], dtype=np.int64)


def subsample_positions(n: int, size: int, seed: int) -> np.ndarray:
    """`size` of `n` rows drawn by a seeded permutation, in their original order. The first rows of one
    permutation: a smaller subsample of the same seed is always inside a larger one (data-size curves nest)."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:size]).astype(np.int64)


LOCAL_HINT = (
    "point at a local copy in the step-by-step release layout with dataset.source=dsbs dataset.root=DIR, "
    "or set HF_DATASETS_OFFLINE=1 to read the local datasets cache."
)


def load_hub_dataset(name: str, config: str | None, split: str, what: str, timeout: float):
    if not hub_offline_mode():
        require_reachable(hub_endpoint(), what, LOCAL_HINT, timeout)
    import datasets  # lazy: off the config check's import path (tests/test_train.py)

    try:
        return datasets.load_dataset(name, config, split=split)
    except Exception as err:  # the library raises many types for "not there"
        raise HubUnavailableError(f"Cannot load {what}: {type(err).__name__}: {err}. To work offline, {LOCAL_HINT}") from err


def load_svamp_original(location: str, timeout: float) -> list[dict]:
    """The original SVAMP.json (1,000 problems) from a URL or a local path."""
    if location.startswith(("http://", "https://")):
        require_reachable(location, f"SVAMP from {location}", "set dataset.svamp_json=PATH/TO/SVAMP.json.", timeout)
        with urllib.request.urlopen(location, timeout=timeout) as response:  # noqa: S310 - fixed https URL
            return json.loads(response.read())
    path = Path(location)
    if not path.is_file():
        raise DataSourceError(f"missing file {path}: dataset.svamp_json must be the original SVAMP.json.")
    return json.loads(path.read_text(encoding="utf-8"))


def svamp_release_rows(problems: list[dict]) -> dict[str, list[dict]]:
    """The release's train/test rows from SVAMP.json: a seed-0 permutation, the last 200 are test."""
    order = np.random.RandomState(SPLIT_SEED).permutation(len(problems))  # == np.random.seed(0); permutation
    rows = [SVAMPTask.row_from_original(problems[i]) for i in order]
    cut = len(rows) - 200
    return {"train": rows[:cut], "test": rows[cut:]}

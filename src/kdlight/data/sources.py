"""Reading raw rows: the step-by-step release layout on disk, or the Hugging Face hub.

Both paths end in the same splits, built by the release's rules:
- CQA: test = CoS-E validation; valid = 10% of the CoS-E train rows (train_test_split(0.1, seed=0));
- SVAMP: train/test = a seed-0 permutation of SVAMP.json (first 800 / last 200); valid = 10% of train;
- e-SNLI, ANLI R1: the official splits.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kdlight.data.tasks import BadRow, Example, SVAMPTask, Task
from kdlight.hub import HubUnavailableError, hub_endpoint, hub_offline_mode, require_reachable

log = logging.getLogger(__name__)

SOURCES = ("dsbs", "hub")
BAD_ROW_POLICIES = ("error", "skip")
SPLITS = ("train", "valid", "test")
VALID_FRACTION, SPLIT_SEED = 0.1, 0
SVAMP_JSON_URL = "https://raw.githubusercontent.com/arkilpatel/SVAMP/main/SVAMP.json"

RELEASE_LAYOUT = (
    "<root>/<name>/<name>_<split>.json (JSON Lines, one example a line) and, for PaLM rationales, "
    "<root>/<name>/llm/<split>_CoT_<i>.json (JSON arrays, concatenated in order of i)"
)

# Hub dataset name, configuration, and our split -> hub split.
HUB_SPECS: dict[str, tuple[str, str | None, dict[str, str]]] = {
    "esnli": ("esnli", None, {"train": "train", "valid": "validation", "test": "test"}),
    "anli": ("anli", None, {"train": "train_r1", "valid": "dev_r1", "test": "test_r1"}),
    "cqa": ("cos_e", "v1.11", {"train": "train", "test": "validation"}),
}


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
class SplitRows:
    examples: list[Example]
    rejected: list[Rejected] = field(default_factory=list)
    palm_completions: int = 0
    palm_parsed: int = 0


class _InvalidJSON:
    """Stands in for a line that did not parse, so that row i stays line i for PaLM alignment."""

    def __init__(self, message: str) -> None:
        self.message = message


def _examples_from_rows(
    task: Task, rows: list, origin: str, on_bad_row: str, first_line: int = 1
) -> tuple[list[tuple[int, Example]], list[Rejected]]:
    """Examples with their row index (for aligning PaLM completions), and the rows rejected."""
    kept, rejected = [], []
    for index, row in enumerate(rows):
        line = index + first_line
        try:
            if isinstance(row, _InvalidJSON):
                raise BadRow(f"not valid JSON ({row.message})")
            if not isinstance(row, dict):
                raise BadRow(f"row is not a JSON object: {row!r:.80}")
            kept.append((index, task.example_from_row(row, index)))
        except BadRow as err:
            if on_bad_row == "error":
                raise BadRowError(
                    f"{origin}:{line}: {err}. Fix the row, or set dataset.on_bad_row=skip to drop such rows."
                ) from None
            rejected.append(Rejected(origin, line, str(err)))
    if rejected:
        log.warning("%s: skipped %d malformed rows (dataset.on_bad_row=skip)", origin, len(rejected))
    return kept, rejected


def read_json_lines(path: Path) -> list:
    """One entry per line: the parsed row, or an _InvalidJSON marker."""
    rows: list = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                rows.append(_InvalidJSON(err.msg))
    return rows


def release_file(root: Path, task: Task, split: str) -> Path:
    return root / task.release_dir / f"{task.release_dir}_{split}.json"


def palm_files(root: Path, task: Task, split: str) -> list[Path]:
    found = list((root / task.release_dir / "llm").glob(f"{split}_CoT_*.json"))
    return sorted(found, key=lambda p: int(p.stem.rsplit("_", 1)[1]))


def read_palm_completions(root: Path, task: Task, split: str) -> list[str] | None:
    files = palm_files(root, task, split)
    if not files:
        return None
    completions: list[str] = []
    for path in files:
        with open(path, encoding="utf-8") as handle:
            completions.extend(json.load(handle))
    return completions


def attach_palm(task: Task, indexed: list[tuple[int, Example]], completions: list[str], origin: str) -> int:
    """Parse completion i into example i's PaLM rationale and label; return how many parsed."""
    parsed = 0
    for index, example in indexed:
        if index >= len(completions):
            raise DataSourceError(
                f"{origin}: row {index + 1} has no PaLM completion (only {len(completions)} in the llm/ files)."
            )
        result = task.parse_palm(completions[index])
        example.palm_rationale, example.palm_label = result.rationale, result.label
        parsed += result.ok
    return parsed


def load_release_split(root: Path, task: Task, split: str, on_bad_row: str) -> SplitRows:
    path = release_file(root, task, split)
    if not path.is_file():
        raise DataSourceError(f"missing file {path}. Expected the step-by-step release layout: {RELEASE_LAYOUT}.")
    rows = read_json_lines(path)
    indexed, rejected = _examples_from_rows(task, rows, str(path), on_bad_row)
    split_rows = SplitRows([ex for _, ex in indexed], rejected)
    completions = read_palm_completions(root, task, split)
    if completions is not None:
        if len(completions) != len(rows):
            raise DataSourceError(
                f"{root / task.release_dir / 'llm'}: {len(completions)} PaLM completions for split {split!r} "
                f"but {len(rows)} rows in {path}; row i of the llm files must be row i of the split file."
            )
        split_rows.palm_completions = len(completions)
        split_rows.palm_parsed = attach_palm(task, indexed, completions, str(path))
    return split_rows


def carve_valid(examples: list[Example]) -> tuple[list[Example], list[Example]]:
    """Split off 10% as valid exactly as the release does: datasets' train_test_split(0.1, seed=0)."""
    import datasets  # heavy import, only where needed

    parts = datasets.Dataset.from_dict({"i": list(range(len(examples)))}).train_test_split(
        test_size=VALID_FRACTION, seed=SPLIT_SEED
    )
    return [examples[i] for i in parts["train"]["i"]], [examples[i] for i in parts["test"]["i"]]


def _load_hub_dataset(name: str, config: str | None, split: str, what: str, timeout: float):
    local_hint = (
        "point at a local copy in the step-by-step release layout with dataset.source=dsbs dataset.root=DIR, "
        "or set HF_DATASETS_OFFLINE=1 to read the local datasets cache."
    )
    if not hub_offline_mode():
        require_reachable(hub_endpoint(), what, local_hint, timeout)
    import datasets

    try:
        return datasets.load_dataset(name, config, split=split)
    except Exception as err:  # the library raises many types for "not there"
        raise HubUnavailableError(f"Cannot load {what}: {type(err).__name__}: {err}. To work offline, {local_hint}") from err


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


def load_hub_splits(task: Task, on_bad_row: str, svamp_json: str | None, timeout: float) -> dict[str, SplitRows]:
    """Raw splits as the release built them, from the hub (or SVAMP's own JSON)."""
    if isinstance(task, SVAMPTask):
        problems = load_svamp_original(svamp_json or SVAMP_JSON_URL, timeout)
        order = np.random.RandomState(SPLIT_SEED).permutation(len(problems))  # == np.random.seed(0); permutation
        rows = [task.row_from_original(problems[i]) for i in order]
        cut = len(rows) - 200
        raw = {"train": rows[:cut], "test": rows[cut:]}
        origin = f"SVAMP.json ({svamp_json or SVAMP_JSON_URL})"
    else:
        name, config, split_map = HUB_SPECS[task.name]
        raw = {
            ours: list(_load_hub_dataset(name, config, theirs, f"{task.name} split {theirs!r} ({name})", timeout))
            for ours, theirs in split_map.items()
        }
        origin = f"hub:{name}"
    splits = {}
    for split, rows in raw.items():
        indexed, rejected = _examples_from_rows(task, rows, f"{origin}[{split}]", on_bad_row, first_line=0)
        splits[split] = SplitRows([ex for _, ex in indexed], rejected)
    return splits

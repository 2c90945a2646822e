"""Finding runs below folders and reading their results.json; the mean +- std every table uses."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from kdlight.utils.results import RESULTS


@dataclass
class Runs:
    finished: list[dict] = field(default_factory=list)  # results.json contents, with "path"
    failed: list[dict] = field(default_factory=list)  # {"path", "error"}
    unfinished: list[str] = field(default_factory=list)  # run folders without results.json

    @property
    def teacher_runs(self) -> int:
        """Jobs that had to run the teacher (a rationale cache miss)."""
        return sum(1 for r in self.finished if r.get("rationale_cache") == "miss")


def is_run_dir(path: Path) -> bool:
    return (path / RESULTS).is_file() or (path / ".hydra" / "config.yaml").is_file()


def _is_nested_stage(path: Path) -> bool:
    """Folders a run creates inside itself (the exported student, W&B files) are not runs."""
    return any(part in {"student", "wandb", "checkpoints", "tokenizer"} for part in path.parts[-2:])


def find_run_dirs(paths: list[Path]) -> list[Path]:
    found: set[Path] = set()
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; pass run folders or sweep folders")
        candidates = [path] if path.is_dir() else [path.parent]
        if path.is_dir():
            candidates += [p.parent for p in path.rglob(RESULTS)] + [p.parent.parent for p in path.rglob(".hydra/config.yaml")]
        found.update(p.resolve() for p in candidates if is_run_dir(p) and not _is_nested_stage(p))
    return sorted(found)


RUN_RECORDS = "runs.jsonl"  # a study's finished runs as committed records (kdlight.reports.study.StudyResults)


def collect_runs(paths: list[str | Path]) -> Runs:
    runs = Runs()
    for path in (Path(p) for p in paths):  # committed study records: one finished run a line
        records = [path] if path.name == RUN_RECORDS else sorted(path.rglob(RUN_RECORDS)) if path.is_dir() else []
        for file in records:
            for record in (json.loads(line) for line in file.read_text().splitlines() if line.strip()):
                runs.finished.append({**record, "path": f"{file.parent}/{record['run']}", "record": True})
    for run_dir in find_run_dirs([Path(p) for p in paths if Path(p).name != RUN_RECORDS]):
        results_path = run_dir / RESULTS
        if not results_path.is_file():
            runs.unfinished.append(str(run_dir))
            continue
        try:
            results = json.loads(results_path.read_text())
        except json.JSONDecodeError as err:
            runs.failed.append({"path": str(run_dir), "error": f"unreadable results.json: {err}"})
            continue
        if results.get("status") != "finished":
            runs.failed.append({"path": str(run_dir), "error": results.get("error", f"status {results.get('status')!r}")})
            continue
        runs.finished.append({**results, "path": str(run_dir)})
    return runs


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None with fewer than two values)."""
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def format_mean_std(mean: float | None, std: float | None = None, digits: int = 4, missing: str = "") -> str:
    """"0.6500 +- 0.0707"; the spread only where there is one (two or more seeds)."""
    if mean is None:
        return missing
    return f"{mean:.{digits}f}" + (f" +- {std:.{digits}f}" if std is not None else "")

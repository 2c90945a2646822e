"""A run's results.json: its name, reading it, and what a finished run says (light: no torch)."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = "results.json"


def run_folder_of(path: str | Path) -> Path:
    """The run folder a checkpoint (<run>/checkpoints/x.ckpt) or an export (<run>/student) belongs to."""
    path = Path(path)
    return path.parent.parent if path.is_file() else path.parent


def read_results(run_dir: str | Path) -> dict | None:
    """The run folder's results.json, or None when it is missing or unreadable."""
    try:
        return json.loads((Path(run_dir) / RESULTS).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def finished_results(run_dir: str | Path) -> dict | None:
    results = read_results(run_dir)
    return results if results is not None and results.get("status") == "finished" else None


def already_finished_message(run_dir: str | Path) -> str:
    return (
        f"this run already finished: its results are in {Path(run_dir) / RESULTS}; nothing was retrained or rewritten. "
        "For a fresh run add resume=false (retrains in the same folder) or choose another folder "
        "(hydra.run.dir=... or a new override)."
    )

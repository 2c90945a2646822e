"""Hydra callback for multiruns: <sweep dir>/sweep_summary.json after every job and at the end.

It counts jobs, finished/failed/unfinished runs and how many jobs ran the teacher (a sweep over k
or alpha should show one teacher run per dataset: the other jobs hit the rationale cache).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from kdlight.io import write_json
from kdlight.report import collect_runs

log = logging.getLogger(__name__)


def write_sweep_summary(sweep_dir: str | Path) -> dict:
    runs = collect_runs([sweep_dir])
    summary = {
        "sweep_dir": str(sweep_dir),
        "finished": len(runs.finished),
        "failed": runs.failed,
        "unfinished": runs.unfinished,
        "teacher_runs": runs.teacher_runs,
        "cache_hits": sum(1 for r in runs.finished if r.get("rationale_cache") == "hit"),
        "jobs": [
            {key: r.get(key) for key in ("path", "dataset", "method", "k", "alpha", "seed", "test_acc", "rationale_cache")}
            for r in runs.finished
        ],
    }
    write_json(Path(sweep_dir) / "sweep_summary.json", summary)
    return summary


class SweepSummary(Callback):
    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            write_sweep_summary(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        summary = write_sweep_summary(config.hydra.sweep.dir)
        log.info(
            "sweep %s: %d finished, %d failed, %d unfinished; teacher ran in %d jobs",
            config.hydra.sweep.dir, summary["finished"], len(summary["failed"]), len(summary["unfinished"]),
            summary["teacher_runs"],
        )

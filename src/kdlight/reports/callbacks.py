"""Hydra callbacks for multiruns: progress (one line per job), sweep_summary.json, the report at the end.

- JobProgress prints `[job 3/9] method=saliency seed=1: finished in 21 s, test acc 0.61` as each job
  ends (the per-step progress bar is off in sweeps, so this is the sweep's progress);
- SweepSummary rewrites <sweep dir>/sweep_summary.json after every job and at the end: finished,
  failed and unfinished runs, and how many jobs ran the teacher (a sweep over k or alpha should show
  one teacher run per dataset: the other jobs hit the rationale cache);
- SweepReport writes kdlight-report's folder into <sweep dir>/report when the sweep ends.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from kdlight.reports.report import build_report
from kdlight.reports.runs import collect_runs
from kdlight.utils.io import write_json

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
            {key: r.get(key) for key in ("path", "dataset", "method", "attribution", "k", "alpha", "seed", "test_acc", "rationale_cache")}
            for r in runs.finished
        ],
    }
    write_json(Path(sweep_dir) / "sweep_summary.json", summary)
    return summary


def sweep_size(config: DictConfig) -> int | None:
    """How many jobs the basic sweeper will launch (the product of the swept values), if it can be told."""
    try:
        params = config.hydra.sweeper.get("params")
        params = OmegaConf.to_container(params) if params else {}  # none: a grid from the command line only
        overrides = list(config.hydra.overrides.task)

        by_key = {}  # a key swept in the config and on the command line: the command line's values (as the sweeper does)
        for override in OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()] + overrides):
            by_key[override.get_key_element()] = override
        total = 1
        for override in by_key.values():
            if override.is_sweep_override():
                total *= len(list(override.sweep_string_iterator()))
        return total
    except Exception:  # noqa: BLE001 - Optuna and other sweepers decide as they go
        return None


class JobProgress(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.total = sweep_size(config)
        self.started: dict[int, float] = {}

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            self.started = getattr(self, "started", {})
            self.started[config.hydra.job.num] = time.monotonic()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        number = config.hydra.job.num
        seconds = time.monotonic() - getattr(self, "started", {}).get(number, time.monotonic())
        overrides = " ".join(config.hydra.overrides.task) or "defaults"
        try:
            results = json.loads((Path(config.hydra.runtime.output_dir) / "results.json").read_text())
        except (OSError, json.JSONDecodeError):
            results = {}
        if results.get("status") == "finished":
            outcome = f"finished in {seconds:.0f} s, test acc {results.get('test_acc')}, teacher cache {results.get('rationale_cache') or '-'}"
        else:
            outcome = f"FAILED after {seconds:.0f} s: {results.get('error', 'no results.json')}"
        total = getattr(self, "total", None)
        print(f"[job {number + 1}/{total or '?'}] {overrides}: {outcome}", flush=True)


class SweepSummary(Callback):
    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            write_sweep_summary(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        summary = write_sweep_summary(config.hydra.sweep.dir)
        log.info(
            "sweep %s: %d finished, %d failed, %d unfinished; teacher ran in %d jobs",
            config.hydra.sweep.dir, summary["finished"], len(summary["failed"]), len(summary["unfinished"]), summary["teacher_runs"],
        )


class SweepReport(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        build_report([sweep_dir], sweep_dir / "report")
        print(f"report: {sweep_dir / 'report'} (table.md, k_curve.png, methods.png, quality.png when measured)", flush=True)

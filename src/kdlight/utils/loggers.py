"""Loggers and progress for runs that get killed, resumed, swept and read in log files.

- ResumableCSVLogger: Lightning's CSVLogger deletes metrics.csv when it starts and writes rows every
  100 steps; a killed and resumed run lost its rows. This one appends each row as it is logged and
  keeps the file; the run trims the rows after the checkpoint's step (they are computed again), so
  every step appears once.
- ProgressLog: a line at most every `every_s` seconds (30) over a long stage where no bar is shown
  (the teacher's fine-tuning, a sweep job's training), so a log never goes quiet for long:
  "[teacher fine-tuning] step 120/300 {'train/loss': 0.41, 'val/acc': 0.91}".
- StepProgressBar: one bar over the run's optimizer steps ("train 120/200"), not per epoch (a
  step-based run printed "Epoch 24/-2"); no validation and test bars; in a log file (not a terminal)
  about 20 updates per run instead of one per step.
"""

from __future__ import annotations

import csv
import logging
import os
import sys
import time
from pathlib import Path

import wandb
from pytorch_lightning.callbacks import Callback, TQDMProgressBar
from pytorch_lightning.callbacks.progress.tqdm_progress import Tqdm
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

from kdlight.utils.io import atomic_path

log = logging.getLogger(__name__)


class _KeepingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):  # appended to, with the header it already has
            with open(self.metrics_file_path, newline="") as handle:
                self.metrics_keys = list(csv.DictReader(handle).fieldnames or [])


class ResumableCSVLogger(CSVLogger):
    def log_metrics(self, metrics, step=None) -> None:
        super().log_metrics(metrics, step)
        self.save()  # appended at once: a killed run keeps every row it logged

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment


def trim_metrics(path: str | Path, global_step: int) -> int:
    """Drop the rows of a metrics.csv that a run resumed at `global_step` logs again; returns how many.

    Lightning logs the batch that makes optimizer step S (and the validation after it) under step
    S - 1, so the checkpoint's state holds exactly the rows with step < global_step."""
    path = Path(path)
    if not path.is_file():
        return 0
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames or [], list(reader)
    kept = [r for r in rows if r.get("step") in (None, "") or int(float(r["step"])) < global_step]
    with atomic_path(path, suffix=".csv") as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(kept)
    return len(rows) - len(kept)


class ProgressLog(Callback):
    def __init__(self, what: str, every_s: float = 30.0) -> None:
        self.what, self.every_s = what, float(every_s)
        self._last: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.monotonic()
        last_step = trainer.max_steps and trainer.global_step >= trainer.max_steps
        if not trainer.is_global_zero or (self._last is not None and now - self._last < self.every_s and not last_step):
            return
        self._last = now
        metrics = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items() if k in ("train/loss", "val/acc")}
        total = f"/{trainer.max_steps}" if trainer.max_steps and trainer.max_steps > 0 else ""
        print(f"[{self.what}] step {trainer.global_step}{total} {metrics}", flush=True)


class StepProgressBar(TQDMProgressBar):
    def __init__(self) -> None:
        super().__init__(refresh_rate=1, leave=False)
        self._terminal = sys.stderr.isatty()

    def init_validation_tqdm(self):
        return self._disabled()

    def init_test_tqdm(self):
        return self._disabled()

    def init_sanity_tqdm(self):
        return self._disabled()

    def _disabled(self):
        return Tqdm(disable=True)

    def init_train_tqdm(self):
        trainer = self.trainer
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        quiet = {} if self._terminal else {"miniters": max(1, (total or 100) // 20), "mininterval": 0}
        return Tqdm(desc="train steps", total=total, initial=trainer.global_step, position=2 * self.process_position,
                    disable=self.is_disabled, leave=True, dynamic_ncols=True, file=sys.stderr, smoothing=0, **quiet)

    def on_train_start(self, trainer, *_):
        self.train_progress_bar = self.init_train_tqdm()

    def on_train_epoch_start(self, trainer, *_):
        pass  # one bar over all steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        bar = self.train_progress_bar
        if bar is not None and not bar.disable:
            bar.n = trainer.global_step
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            bar.update(0)

    def on_train_epoch_end(self, trainer, pl_module):
        pass

    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


def finish_wandb() -> None:
    """Close the W&B run so that the next stage or job starts its own."""
    if "wandb" in sys.modules:
        if wandb.run is not None:
            wandb.finish()

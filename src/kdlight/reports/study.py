"""An experiment's attribution study and its closing summary (experiment=minilm_cqa).

`AttributionStudy` is a Hydra callback of a multirun:
- before the first job, each attribution method explains the teacher on the first `study_rows` rows of
  a seeded train subsample (nested in the students' subsample) with `kdlight-attribute`, in a process
  of its own, measuring the rationale quality (faithfulness, CoS-E plausibility) of its words; the
  teacher is fine-tuned once there (cached) and every job after it reuses it;
- after the last job, it writes <sweep>/study.md and study.json: the teacher's accuracy, the quality
  of each method's words against random words, and the students' table (kdlight-report's, with each
  method's paired difference from fine-tuning), and prints them.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from itertools import product
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from kdlight.reports.report import build_report, paired_text, results_table, run_overrides, test_results
from kdlight.reports.runs import RUN_RECORDS, collect_runs
from kdlight.utils.io import atomic_path, write_json, write_text
from kdlight.utils.markdown import markdown_table

log = logging.getLogger(__name__)

METHODS = ("grad_x_input", "integrated_gradients", "gradient", "occlusion")


def _round(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def study_overrides(config: DictConfig) -> list[str]:
    """The command line of the sweep without the swept keys (each study run picks its own attribution)."""
    swept = set((config.hydra.sweeper.get("params") or {}).keys())
    kept = [o for o in config.hydra.overrides.task if o.split("=", 1)[0].lstrip("+~") not in swept]
    experiment = config.hydra.runtime.choices.get("experiment")
    return ([f"experiment={experiment}"] if experiment and not any(o.startswith("experiment=") for o in kept) else []) + kept


def quality_table(study: dict, k: int) -> str:
    """One row per attribution method (and random words): faithfulness at k and AOPC, plausibility."""
    rows = []
    for method, result in study["methods"].items():
        quality = result.get("quality") or {}
        by_k = (quality.get("sources") or {}).get("teacher", {}).get(str(k), {})
        aopc = (quality.get("aopc") or {}).get("teacher", {})
        rows.append([method, _round(by_k.get("comprehensiveness")), _round(by_k.get("sufficiency")),
                     f"{_round(aopc.get('comprehensiveness'))} / {_round(aopc.get('sufficiency'))}",
                     _round(by_k.get("plausibility_f1")), _round(by_k.get("auprc")), *_whole(quality, "teacher", k),
                     _seconds(result)])
    first = (next(iter(study["methods"].values()), {}).get("quality")) or {}
    random = (first.get("sources") or {}).get("random", {}).get(str(k), {})
    random_aopc = (first.get("aopc") or {}).get("random", {})
    rows.append([f"{k} random words", _round(random.get("comprehensiveness")), _round(random.get("sufficiency")),
                 f"{_round(random_aopc.get('comprehensiveness'))} / {_round(random_aopc.get('sufficiency'))}",
                 _round(random.get("plausibility_f1")), _round(random.get("auprc")), *_whole(first, "random", k), "-"])
    partial = ((first.get("plausibility") or {}).get("teacher") or {}).get("partial", {}).get("examples")
    whole = ((first.get("plausibility") or {}).get("teacher") or {}).get("whole", {}).get("examples")
    header = ["method", f"comprehensiveness, k={k}", f"sufficiency, k={k}", "AOPC compr. / suff.",
              f"CoS-E F1, k={k} ({partial} rows)", "AUPRC", f"whole-question rows ({whole}): F1, k={k} / AUPRC", "extraction"]
    return "\n".join(markdown_table(header, rows)) + "\n"


def _seconds(result: dict) -> str:
    """The extraction's own time (the first study run also fine-tunes the teacher: not counted here)."""
    seconds = ((result.get("splits") or {}).get("train") or {}).get("seconds")
    return "-" if seconds is None else f"{seconds:.0f} s"


def _whole(quality: dict, source: str, k: int) -> list[str]:
    whole = ((quality.get("plausibility") or {}).get(source) or {}).get("whole", {})
    return [f"{_round((whole.get(str(k)) or {}).get('f1'))} / {_round(whole.get('auprc'))}"]


class AttributionStudy(Callback):
    def __init__(self, study_rows: int = 128, methods: list[str] | tuple[str, ...] = METHODS) -> None:
        self.study_rows, self.methods = int(study_rows), list(methods)
        self.started = 0.0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.monotonic()
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        base = study_overrides(config)
        study: dict[str, Any] = {"rows": self.study_rows, "overrides": base, "methods": {}}
        for method in self.methods:
            command = [sys.executable, "-m", "kdlight.commands.attribute", *base, f"attribution={method}",
                       f"dataset.train_size={self.study_rows}", "attribution.quality.enabled=true"]
            print(f"[study] {method}: extraction and rationale quality on {self.study_rows} train rows", flush=True)
            started = time.monotonic()
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                tail = "\n".join(done.stderr.strip().splitlines()[-5:])
                raise RuntimeError(f"the attribution study's {method} run failed ({' '.join(command)}):\n{tail}")
            summary = json.loads(done.stdout)
            study["methods"][method] = {"seconds": round(time.monotonic() - started, 1), "quality": summary.get("quality"),
                                        "splits": summary.get("splits"), "finetune": summary.get("finetune")}
        write_json(sweep_dir / "attribution_study.json", study)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        study = json.loads((sweep_dir / "attribution_study.json").read_text())
        report = build_report([sweep_dir], sweep_dir / "report")
        finetune = next((m["finetune"] for m in study["methods"].values() if m.get("finetune")), None) or {}
        k = int(config.get("k", 5))
        lines = [
            f"# {config.get('task_name', 'study')}: the method on real weights\n",
            f"Teacher ({config.teacher.name}, fine-tuned {finetune.get('steps')} steps on {finetune.get('train_examples')} "
            f"train labels): accuracy valid {_round(finetune.get('val_acc'))}, test {_round(finetune.get('test_acc'))}.\n",
            f"## Which attribution method picks the best words? (the first {quality_examples(study)} of {study['rows']} train rows; "
            "faithfulness in nats of log p(gold); plausibility on the rows whose CoS-E highlight is a part of the question, "
            "the whole-question rows apart)\n",
            quality_table(study, k),
            "## Students\n",
            results_table(report["rows"]),
            "\n".join(f"- {r['method']}{' [' + r['attribution'] + ']' if r.get('attribution') else ''}: {paired_text(r.get('vs_reference'))}"
                      for r in report["rows"] if r.get("vs_reference")) + "\n",
            f"Wall time of the whole command: {(time.monotonic() - self.started) / 60:.1f} min.\n",
        ]
        text = "\n".join(lines)
        write_text(sweep_dir / "study.md", text)
        write_json(sweep_dir / "study.json", {"study": study, "students": report["rows"],
                                              "minutes": round((time.monotonic() - self.started) / 60, 1)})
        print(f"\n{text}\nresults: {sweep_dir} (study.md, report/, one folder per run)\n", flush=True)


def quality_examples(study: dict) -> int | None:
    first = next(iter(study["methods"].values()), {})
    return (first.get("quality") or {}).get("examples")


def planned_jobs(config: DictConfig) -> list[dict[str, str]]:
    """Each job of the basic sweeper's grid as {key: value} (the command line's values win over the config's)."""
    params = config.hydra.sweeper.get("params")
    params = OmegaConf.to_container(params) if params else {}
    by_key = {}
    for override in OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)):
        by_key[override.get_key_element()] = override
    keys = list(by_key)
    values = [list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()] for o in by_key.values()]
    return [dict(zip(keys, combo)) for combo in product(*values)]


def finished_jobs(jobs: list[dict[str, str]], finished_overrides: list[dict[str, str]]) -> list[bool]:
    """Whether each job has a finished run in the sweep folder: one whose overrides hold every key=value of the
    job (a folder's other methods, seeds or settings do not count for it)."""
    return [any(all(overrides.get(key) == value for key, value in job.items()) for overrides in finished_overrides) for job in jobs]


def study_estimate(jobs: list[dict[str, str]], done: list[bool], minutes_per_job: dict[str, float], parallel: int,
                   default_method: str) -> tuple[list[str], float]:
    """Lines per method (planned, finished, left) and the minutes left with `parallel` jobs at a time."""
    planned: dict[str, list[bool]] = {}
    for job, finished in zip(jobs, done):
        planned.setdefault(job.get("method", default_method), []).append(finished)
    lines, minutes = [], 0.0
    for method, finished in planned.items():
        count, left = len(finished), finished.count(False)
        per_job = float(minutes_per_job.get(method, max(minutes_per_job.values(), default=10.0)))
        minutes += left * per_job
        lines.append(f"{method}: {count} jobs, {count - left} finished, {left} to run (~{per_job:.0f} min each)")
    return lines, minutes / max(1, parallel)


def run_record(run: dict) -> dict:
    """A finished run as one committed line: its results, its command-line overrides and its per-test-row
    results as a 0/1 string in test order (what seed-level comparisons need, without the run folder)."""
    correct = test_results(run)
    keep = ("dataset", "method", "attribution", "k", "alpha", "seed", "label_source", "teacher", "student", "split_sizes",
            "train_subsample", "train_stand_in", "val_acc_best", "test_acc", "steps", "seconds", "best_checkpoint", "chance_acc",
            "rationale_cache", "status")
    return {**{key: run.get(key) for key in keep}, "run": Path(run["path"]).name, "overrides": run_overrides(run),
            "correct": None if correct is None else "".join("1" if c else "0" for c in correct)}


def commit_study(sweep_dir: str | Path, out_dir: str | Path) -> dict:
    """A study command's finished runs as committed records: <out_dir>/runs.jsonl (each run's results,
    overrides and per-test-row results) and kdlight-report's tables and charts beside them, so a later
    session on a fresh machine can merge the parts (kdlight-report benchmarks/results/studies/...)."""
    out = Path(out_dir)
    runs = collect_runs([Path(sweep_dir)])
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / RUN_RECORDS) as tmp:
        tmp.write_text("".join(json.dumps(run_record(r)) + "\n" for r in sorted(runs.finished, key=lambda r: r["path"])))
    summary = build_report([out], out)
    print(f"[study] {len(runs.finished)} finished runs ({len(runs.failed)} failed, {len(runs.unfinished)} unfinished) -> "
          f"{out} (runs.jsonl, table.md, report.json, charts): commit them", flush=True)
    return summary


class StudyResults(Callback):
    """commit_study when a study's command ends (python -m kdlight.reports.study SWEEP OUT does the same by hand)."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        commit_study(config.hydra.sweep.dir, self.out_dir)


class StudyPlan(Callback):
    """Prints, before the first job, how many jobs the command holds, how many already finished in its
    (fixed) sweep folder, and an estimate of the time left; the per-job minutes are measured and stated
    in the experiment's config."""

    def __init__(self, minutes_per_job: dict[str, float] | None = None, teacher_minutes: float = 0.0) -> None:
        self.minutes_per_job = dict(minutes_per_job or {})
        self.teacher_minutes = float(teacher_minutes)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        finished = [run_overrides(run) for run in collect_runs([sweep_dir]).finished] if sweep_dir.is_dir() else []
        jobs = planned_jobs(config)
        parallel = int(config.hydra.launcher.get("n_jobs", 1) or 1)
        lines, minutes = study_estimate(jobs, finished_jobs(jobs, finished), self.minutes_per_job, parallel, str(config.method.name))
        print(f"[plan] {config.get('task_name')}: {len(jobs)} jobs in {sweep_dir}, {parallel} at a time", flush=True)
        for line in lines:
            print(f"[plan]   {line}", flush=True)
        print(f"[plan] estimated time left: ~{minutes:.0f} min for the students"
              + (f", plus ~{self.teacher_minutes:.0f} min if the teacher is not cached yet" if self.teacher_minutes else ""), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdlight.reports.study", description=commit_study.__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="the study command's sweep folder (multirun/studies/<name>)")
    parser.add_argument("out_dir", type=Path, help="where the records go (benchmarks/results/studies/<name>)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"error: {args.sweep_dir} is not a folder", file=sys.stderr)
        return 2
    commit_study(args.sweep_dir, args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The quickstart's summary (`python train.py experiment=quickstart`): one table at the end of the sweep.

Printed and written to <sweep dir>/quickstart.md and quickstart.json, with kdlight-report's
folder beside them (<sweep dir>/report).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from kdlight.io import write_json, write_text
from kdlight.reports.markdown import markdown_table
from kdlight.reports.report import build_report
from kdlight.reports.runs import collect_runs, format_mean_std, mean_std

log = logging.getLogger(__name__)


def _fmt(mean: float | None, std: float | None = None) -> str:
    return format_mean_std(mean, std, digits=3, missing="-")


def quickstart_summary(finished: list[dict]) -> dict:
    """Teacher accuracy, planted-word recall of each method's rationales, student accuracy per method."""
    teacher = next((r["teacher_stage"] for r in finished if r.get("teacher_stage")), None) or {}
    splits = teacher.get("splits", {})
    settings = sorted({(r["method"], r.get("k"), r.get("alpha")) for r in finished}, key=str)
    several = {m for m, _, _ in settings if sum(1 for s in settings if s[0] == m) > 1}
    methods: dict[str, Any] = {}
    for method, k, alpha in settings:  # one row per setting; the name alone where a method has one setting
        runs = [r for r in finished if (r["method"], r.get("k"), r.get("alpha")) == (method, k, alpha)]
        accuracy = mean_std([r["test_acc"] for r in runs if r.get("test_acc") is not None])
        recall = [r["rationale_recall"] for r in runs if r.get("rationale_recall")]
        name = f"{method} k={k} alpha={alpha:g}" if method in several else method
        methods[name] = {
            "method": method,
            "runs": len(runs),
            "seeds": sorted(r["seed"] for r in runs),
            "k": k,
            "alpha": alpha,
            "test_acc_mean": accuracy[0],
            "test_acc_std": accuracy[1],
            "planted_recall": mean_std([x["recall"] for x in recall])[0],
            "planted_recall_chance": mean_std([x["chance"] for x in recall])[0],
        }
    return {
        "teacher": {
            "finetune_train_examples": (teacher.get("finetune") or {}).get("train_examples"),
            "finetune_steps": (teacher.get("finetune") or {}).get("steps"),
            "valid_acc": (teacher.get("finetune") or {}).get("val_acc"),
            "test_acc": splits.get("test", {}).get("teacher_accuracy"),
            "train_acc": splits.get("train", {}).get("teacher_accuracy"),
        },
        "methods": methods,
    }


def quickstart_table(summary: dict) -> str:
    t = summary["teacher"]
    lines = [
        f"Teacher (tiny T5 fine-tuned on {t['finetune_train_examples']} generated examples, {t['finetune_steps']} steps): "
        f"accuracy valid {_fmt(t['valid_acc'])}, test {_fmt(t['test_acc'])}, on the student's train rows {_fmt(t['train_acc'])}",
        "",
        *markdown_table(
            ["student method", "k", "alpha", "seeds", "planted words in the rationale (recall)", "chance", "student test accuracy"],
            ([name, m["k"] if m["k"] is not None else "-", f"{m['alpha']:g}", len(m["seeds"]), _fmt(m["planted_recall"]),
              _fmt(m["planted_recall_chance"]), _fmt(m["test_acc_mean"], m["test_acc_std"])] for name, m in summary["methods"].items()),
        ),
    ]
    return "\n".join(lines) + "\n"


class QuickstartTable(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        runs = collect_runs([sweep_dir])
        summary = quickstart_summary(runs.finished)
        table = quickstart_table(summary)
        problems = [f["path"] for f in runs.failed] + runs.unfinished
        if problems:
            table += f"\nRuns without results: {problems}\n"
        write_json(sweep_dir / "quickstart.json", summary)
        write_text(sweep_dir / "quickstart.md", "# kdlight quickstart\n\n" + table)
        build_report([sweep_dir], sweep_dir / "report")
        print(f"\n{table}\nresults: {sweep_dir} (quickstart.md, report/, one folder per run)\n", flush=True)

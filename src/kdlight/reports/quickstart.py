"""The quickstarts' summaries, printed at the end of their sweep: `experiment=quickstart` (generated
cue words: the teacher's recall of the planted words, student accuracy) and `experiment=minilm_taste`
(real weights on CQA: teacher and student accuracy, the teacher's words beside CoS-E's highlights).

Printed and written to <sweep dir>/<name>.md and <name>.json, with kdlight-report's folder beside
them (<sweep dir>/report).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from kdlight.reports.report import build_report
from kdlight.reports.runs import collect_runs, format_mean_std, mean_std
from kdlight.utils.io import write_json, write_text
from kdlight.utils.markdown import markdown_table

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


def taste_table(summary: dict, finished: list[dict]) -> str:
    """The taste's summary: the teacher's accuracy, each student's, and the teacher's words for the first
    test questions beside the words CoS-E's annotators highlighted."""
    run = next((r for r in finished if r.get("teacher_stage")), finished[0])
    stage = run.get("teacher_stage") or {}
    tuned, test = stage.get("finetune") or {}, (stage.get("splits") or {}).get("test") or {}
    sizes, chance = run.get("split_sizes") or {}, run.get("chance_acc")
    lines = [
        f"Teacher ({run.get('teacher')}, fine-tuned {tuned.get('steps')} steps on {tuned.get('train_examples')} train labels): "
        f"accuracy valid {_fmt(tuned.get('val_acc'))}, test {_fmt(test.get('teacher_accuracy'))} (the students' "
        f"{test.get('examples', '?')} test questions); chance {_fmt(chance)}",
        "",
        *markdown_table(
            ["student method", "k", "alpha", "train labels", "steps", "student test accuracy"],
            ([name, m["k"] if m["k"] is not None else "-", f"{m['alpha']:g}", sizes.get("train", "-"),
              next((r.get("steps") for r in finished if r["method"] == m["method"]), "-"), _fmt(m["test_acc_mean"], m["test_acc_std"])]
             for name, m in summary["methods"].items()),
        ),
    ]
    shown = test.get("shown") or []
    if shown:
        lines += ["", f"The teacher's words for the first {len(shown)} test questions (best first) beside the words people highlighted:", "",
                  *markdown_table(
                      ["question", "gold", "teacher's answer", "teacher's words", "highlighted by people"],
                      ([row["input"].split(" | ")[0], row["gold"], row["teacher_answer"] or "-", ", ".join(row["words"]),
                        "-" if row["highlight"] is None else ", ".join(row["highlight"]) + (" (all of it)" if row["highlight_is_whole"] else "")]
                       for row in shown),
                  )]
    return "\n".join(lines) + "\n"


class _SweepSummary(Callback):
    """At the end of the sweep: the summary printed, and written as <name>.md/.json beside report/."""

    name = ""
    title = ""

    def render(self, finished: list[dict]) -> tuple[dict, str]:
        raise NotImplementedError

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        runs = collect_runs([sweep_dir])
        summary, table = self.render(runs.finished) if runs.finished else ({}, "No run finished.\n")
        problems = [f["path"] for f in runs.failed] + runs.unfinished
        if problems:
            table += f"\nRuns without results: {problems}\n"
        write_json(sweep_dir / f"{self.name}.json", summary)
        write_text(sweep_dir / f"{self.name}.md", f"# {self.title}\n\n" + table)
        build_report([sweep_dir], sweep_dir / "report")
        print(f"\n{table}\nresults: {sweep_dir} ({self.name}.md, report/, one folder per run)\n", flush=True)


class QuickstartTable(_SweepSummary):
    name, title = "quickstart", "kdlight quickstart"

    def render(self, finished: list[dict]) -> tuple[dict, str]:
        summary = quickstart_summary(finished)
        return summary, quickstart_table(summary)


class TasteSummary(_SweepSummary):
    name, title = "taste", "kdlight: a taste of real weights"

    def render(self, finished: list[dict]) -> tuple[dict, str]:
        summary = quickstart_summary(finished)
        return summary, taste_table(summary, finished)

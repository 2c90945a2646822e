"""`kdlight-report PATH...`: every results.json below the paths as a table and two charts.

    kdlight-report multirun/2026-11-28/10-00-00            # a sweep (also while it still runs)
    kdlight-report outputs/train multirun --out reports/all  # any mix of run and sweep folders

Writes into --out (default: <first PATH>/report): table.md and table.csv (dataset x method x k x
alpha: test accuracy mean +- std over seeds, runs, best validation accuracy), k_curve.png,
methods.png and report.json. A run folder (one with .hydra/ or results.json) without a finished
results.json is listed by path as failed or unfinished, never dropped.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from kdlight.io import atomic_path, write_json, write_text

RESULTS = "results.json"
KEY = ("dataset", "method", "k", "alpha")


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


def _is_nested_stage(path: Path) -> bool:
    """Folders a run creates inside itself (the exported student, W&B files) are not runs."""
    return any(part in {"student", "wandb", "checkpoints"} for part in path.parts[-2:])


def collect_runs(paths: list[str | Path]) -> Runs:
    runs = Runs()
    for run_dir in find_run_dirs([Path(p) for p in paths]):
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


def table_rows(finished: list[dict]) -> list[dict]:
    """One row per (dataset, method, k, alpha), aggregated over seeds."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in finished:
        groups[tuple(r.get(key) for key in KEY)].append(r)
    rows = []
    for key, members in groups.items():
        test = [r["test_acc"] for r in members if r.get("test_acc") is not None]
        val = [r["val_acc_best"] for r in members if r.get("val_acc_best") is not None]
        test_mean, test_std = mean_std(test)
        val_mean, _ = mean_std(val)
        rows.append(
            {
                **dict(zip(KEY, key)),
                "test_acc_mean": test_mean,
                "test_acc_std": test_std,
                "runs": len(members),
                "seeds": sorted({r.get("seed") for r in members}, key=str),
                "val_acc_best_mean": val_mean,
            }
        )
    return sorted(rows, key=lambda r: (str(r["dataset"]), str(r["method"]), r["k"] or 0, r["alpha"] or 0))


def _fmt(value, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def format_mean_std(mean: float | None, std: float | None = None, digits: int = 4, missing: str = "") -> str:
    """"0.6500 +- 0.0707"; the spread only where there is one (two or more seeds)."""
    if mean is None:
        return missing
    return f"{mean:.{digits}f}" + (f" +- {std:.{digits}f}" if std is not None else "")


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| dataset | method | k | alpha | test acc (mean +- std) | runs | best val acc (mean) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['method']} | {_fmt(r['k']) or '-'} | {_fmt(r['alpha'], 2)} | "
            f"{format_mean_std(r['test_acc_mean'], r['test_acc_std'])} | {r['runs']} | {_fmt(r['val_acc_best_mean'])} |"
        )
    return "\n".join(lines) + "\n"


def csv_table(rows: list[dict]) -> str:
    columns = [*KEY, "test_acc_mean", "test_acc_std", "runs", "val_acc_best_mean"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _series_label(row: dict) -> str:
    return f"{row['method']} (alpha {row['alpha']:g})"


def plot_k_curve(rows: list[dict], path: Path) -> None:
    """Test accuracy against k per dataset; methods without k (finetune, step_by_step) as levels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["dataset"] for r in rows})
    fig, axes = plt.subplots(1, max(1, len(datasets)), figsize=(5 * max(1, len(datasets)), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        mine = [r for r in rows if r["dataset"] == dataset and r["test_acc_mean"] is not None]
        curves: dict[str, list[dict]] = defaultdict(list)
        for r in mine:
            if r["k"] is not None:
                curves[_series_label(r)].append(r)
        for label, points in sorted(curves.items()):
            points.sort(key=lambda r: r["k"])
            ax.errorbar(
                [p["k"] for p in points], [p["test_acc_mean"] for p in points],
                yerr=[p["test_acc_std"] or 0.0 for p in points], marker="o", capsize=3, label=label,
            )
        for style, r in zip(("--", ":", "-.", (0, (1, 3))), [r for r in mine if r["k"] is None]):
            ax.axhline(r["test_acc_mean"], linestyle=style, color="grey", label=f"{_series_label(r)} level")
        ks = sorted({r["k"] for r in mine if r["k"] is not None})
        if ks:
            ax.set_xticks(ks)
        ax.set_title(dataset)
        ax.set_xlabel("k (rationale words)")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def best_setting_per_method(rows: list[dict]) -> list[dict]:
    """For each (dataset, method), the k/alpha with the best mean validation accuracy (chosen on
    validation, never on test)."""
    best: dict[tuple, dict] = {}
    for r in rows:
        key = (r["dataset"], r["method"])
        score = r["val_acc_best_mean"] if r["val_acc_best_mean"] is not None else -1.0
        if key not in best or score > (best[key]["val_acc_best_mean"] or -1.0):
            best[key] = r
    return [best[key] for key in sorted(best)]


def plot_methods(rows: list[dict], path: Path) -> None:
    """Methods side by side per dataset (each at its best validation setting), with seed spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [r for r in best_setting_per_method(rows) if r["test_acc_mean"] is not None]
    datasets = sorted({r["dataset"] for r in chosen})
    methods = sorted({r["method"] for r in chosen})
    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(datasets) * max(1, len(methods))), 4))
    width = 0.8 / max(1, len(methods))
    for m, method in enumerate(methods):
        for d, dataset in enumerate(datasets):
            r = next((r for r in chosen if r["dataset"] == dataset and r["method"] == method), None)
            if r is None:
                continue
            x = d + (m - (len(methods) - 1) / 2) * width
            ax.bar(x, r["test_acc_mean"], width, yerr=r["test_acc_std"] or 0.0, capsize=3,
                   color=f"C{m}", label=method if d == 0 or dataset == datasets[0] else None)
            setting = f"k={r['k']}" if r["k"] is not None else ""
            ax.annotate(setting, (x, r["test_acc_mean"]), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(datasets)), datasets)
    ax.set_ylabel("test accuracy (best validation setting)")
    ax.grid(axis="y", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    if unique:
        ax.legend(unique.values(), unique.keys(), fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def build_report(paths: list[str | Path], out_dir: str | Path) -> dict:
    """Collect, aggregate and write the report; returns what report.json holds."""
    runs = collect_runs(paths)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = table_rows(runs.finished)
    problems = [f"- failed: `{f['path']}`: {f['error']}" for f in runs.failed]
    problems += [f"- unfinished (no results.json yet): `{p}`" for p in runs.unfinished]
    markdown = [
        "# kdlight report\n",
        f"{len(runs.finished)} finished runs, {len(runs.failed)} failed, {len(runs.unfinished)} unfinished; "
        f"the teacher ran in {runs.teacher_runs} of them (rationale cache misses).\n",
        markdown_table(rows),
    ]
    if problems:
        markdown += ["\n## Runs without results\n", "\n".join(problems) + "\n"]
    write_text(out / "table.md", "\n".join(markdown))
    write_text(out / "table.csv", csv_table(rows))
    if rows:
        plot_k_curve(rows, out / "k_curve.png")
        plot_methods(rows, out / "methods.png")
    summary = {
        "paths": [str(p) for p in paths],
        "finished": len(runs.finished),
        "failed": runs.failed,
        "unfinished": runs.unfinished,
        "teacher_runs": runs.teacher_runs,
        "rows": rows,
    }
    write_json(out / "report.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kdlight-report", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="sweep folders, run folders or results.json files")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: <first path>/report)")
    args = parser.parse_args(argv)
    out = args.out or (args.paths[0] if args.paths[0].is_dir() else args.paths[0].parent) / "report"
    try:
        summary = build_report(args.paths, out)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print((out / "table.md").read_text())
    print(f"report written to {out}")
    return 0 if summary["finished"] or summary["failed"] or summary["unfinished"] else 1


if __name__ == "__main__":
    sys.exit(main())

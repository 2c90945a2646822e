"""`kdlight-report PATH...`: every results.json below the paths as tables and charts.

    kdlight-report multirun/2026-11-28/10-00-00            # a sweep (also while it still runs)
    kdlight-report outputs/train multirun --out reports/all  # any mix of run and sweep folders

Writes into --out (default: <first PATH>/report): table.md and table.csv (dataset x method x
attribution x k x alpha x train rows: test accuracy mean +- sample std over seeds with a 95% t
interval, runs, best validation accuracy; each method against `finetune` with the same seeds and
test rows: the mean of the per-seed paired differences with its t interval and p-value over seeds,
and the row-level permutation p-value as a second column), k_curve.png,
methods.png (the paired differences marked), data_size.png (accuracy against train rows, when the
runs have several sizes), quality.png (rationale quality against k per attribution method beside the
students' accuracy, when the runs measured it) and report.json (also each run's accuracy with a
bootstrap interval over its test rows). A run folder
without a finished results.json is listed by path as failed or unfinished, never dropped.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import yaml

from kdlight.reports.runs import collect_runs, format_mean_std, mean_std
from kdlight.reports.statistics import bootstrap_interval, paired_comparison, seed_level_comparison, t_interval
from kdlight.utils.io import atomic_path, write_json, write_text
from kdlight.utils.markdown import markdown_table

KEY = ("dataset", "method", "attribution", "k", "alpha", "train_rows", "variant")
# Overrides that KEY already names (or that are the seed): never a variant of their own.
NOT_VARIANTS = {"seed", "method", "alpha", "k", "attribution", "attribution.method", "dataset", "dataset.train_size",
                "dataset.train_fraction", "experiment", "hydra/launcher", "resume", "threads"}
REFERENCE = "finetune"  # what every method is compared with, pairwise
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
QUALITY_PANELS = (("comprehensiveness", "comprehensiveness (drop of log p(gold))"),
                  ("sufficiency", "sufficiency (drop with only the top-k)"),
                  ("plausibility_f1", "plausibility F1 vs human highlights"))


def train_rows(run: dict) -> int | None:
    return (run.get("split_sizes") or {}).get("train")


def run_overrides(run: dict) -> dict[str, str]:
    """The command-line overrides of a run (its .hydra/overrides.yaml, read as data), key -> value."""
    if run.get("record"):
        return dict(run.get("overrides") or {})
    path = Path(run.get("path", "")) / ".hydra" / "overrides.yaml"
    try:
        listed = yaml.safe_load(path.read_text()) or []
    except (OSError, yaml.YAMLError):
        return {}
    pairs = (str(o).split("=", 1) for o in listed if isinstance(o, str) and "=" in o)
    return {key.lstrip("+~"): value for key, value in pairs}


def add_variants(finished: list[dict]) -> None:
    """run["variant"]: the overrides that tell apart runs KEY would pool (e.g. a learning-rate grid,
    `lr=0.0002`); empty where every run shares them."""
    overrides = [run_overrides(r) for r in finished]
    keys = {k for o in overrides for k in o} - NOT_VARIANTS
    varying = sorted(k for k in keys if len({o.get(k) for o in overrides}) > 1)
    for run, own in zip(finished, overrides):
        run["variant"] = " ".join(f"{k.rsplit('.', 1)[-1]}={own[k]}" for k in varying if k in own)


def table_rows(finished: list[dict]) -> list[dict]:
    """One row per (dataset, method, attribution, k, alpha, train rows, variant), aggregated over seeds."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in finished:
        groups[tuple(train_rows(r) if key == "train_rows" else r.get(key) for key in KEY)].append(r)
    rows = []
    for key, members in groups.items():
        test = [r["test_acc"] for r in members if r.get("test_acc") is not None]
        val = [r["val_acc_best"] for r in members if r.get("val_acc_best") is not None]
        test_mean, test_std = mean_std(test)
        rows.append({
            **dict(zip(KEY, key)),
            "test_acc_mean": test_mean, "test_acc_std": test_std, "test_acc_t95": t_interval(test), "runs": len(members),
            "seeds": sorted({r.get("seed") for r in members}, key=str), "val_acc_best_mean": mean_std(val)[0],
            "steps": [r.get("steps") for r in sorted(members, key=lambda r: str(r.get("seed")))],
            "chance_acc": next((r.get("chance_acc") for r in members if r.get("chance_acc") is not None), None),
        })
    return sorted(rows, key=lambda r: (str(r["dataset"]), r["train_rows"] or 0, str(r["method"]), str(r["attribution"]),
                                       r["k"] or 0, r["alpha"] or 0, str(r["variant"] or "")))


def test_results(run: dict) -> list[float] | None:
    """A run's per-test-row results (1 correct, 0 wrong) in test order, from predictions-test.jsonl (or a
    committed study record's 0/1 string)."""
    if run.get("record"):
        return None if run.get("correct") is None else [float(c == "1") for c in run["correct"]]
    path = Path(run["path"]) / "predictions-test.jsonl"
    if not path.is_file():
        return None

    rows = sorted((json.loads(line) for line in path.read_text().splitlines() if line.strip()), key=lambda p: p["index"])
    return [float(bool(p["correct"])) for p in rows]


def run_intervals(finished: list[dict]) -> list[dict]:
    """Each run's test accuracy with a 95% bootstrap interval over its test rows."""
    out = []
    for r in finished:
        results = test_results(r)
        out.append({"path": r["path"], "method": r.get("method"), "seed": r.get("seed"), "test_acc": r.get("test_acc"),
                    "test_acc_bootstrap95": bootstrap_interval(results) if results else None})
    return out


def validation_score(row: dict) -> float:
    """A row's mean best validation accuracy, what every choice is made on (-1 where it has none)."""
    return row["val_acc_best_mean"] if row["val_acc_best_mean"] is not None else -1.0


def reference_row(row: dict, rows: list[dict], reference: str = REFERENCE) -> dict | None:
    """The reference method's row a row is compared with: same dataset and train rows, the same variant
    where the reference ran it, else the reference's variant with the best mean validation accuracy
    (chosen on validation, never on test)."""
    partners = [o for o in rows if o["method"] == reference and o["dataset"] == row["dataset"] and o["train_rows"] == row["train_rows"]]
    same = [o for o in partners if o.get("variant") == row.get("variant")]
    if same or not partners:
        return (same or [None])[0]
    return max(partners, key=validation_score)


def add_paired_comparisons(rows: list[dict], finished: list[dict], reference: str = REFERENCE) -> None:
    """Each row against the reference method's row of the same dataset and train rows, over the seeds
    both ran and the test rows they share: row["vs_reference"] is the seed-level comparison (the unit is
    the seed), with the row-level test under "row_level"; None where there is no pair."""
    by_key: dict[tuple, list[dict]] = defaultdict(list)
    for r in finished:
        by_key[tuple(train_rows(r) if key == "train_rows" else r.get(key) for key in KEY)].append(r)
    for row in rows:
        row["vs_reference"] = None
        if row["method"] == reference:
            continue
        partner = reference_row(row, rows, reference)
        if partner is None:
            continue
        results = [{r.get("seed"): test_results(r) for r in by_key[tuple(x[key] for key in KEY)]} for x in (row, partner)]
        if any(v is None for side in results for v in side.values()):
            continue
        compared = seed_level_comparison(*results)
        if compared is not None:
            row["vs_reference"] = {"reference": reference, "reference_variant": partner.get("variant") or None, **compared,
                                   "row_level": paired_comparison(*results)}


def setting_label(setting: dict) -> str:
    """A grid point as a choice line names it: its alpha and its varying overrides; neither: the method's
    defaults (attribution_match's default weight is not an alpha)."""
    return ", ".join(s for s in (f"alpha {setting['alpha']:g}" if setting.get("alpha") else "", setting.get("variant") or "") if s) or "defaults"


def _fmt(value, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _interval(interval, digits: int = 3) -> str:
    return "-" if not interval else f"[{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def paired_text(paired: dict | None) -> str:
    """The seed-level comparison: mean difference [95% t interval over seeds], p (t over per-seed differences)."""
    if not paired:
        return "-"
    if paired.get("p_value") is None:
        return f"{paired['difference']:+.4f} (1 seed: no interval)"
    return (f"{paired['difference']:+.4f} [{paired['low']:+.3f}, {paired['high']:+.3f}], p={paired['p_value']:.2g}"
            f" ({len(paired['seeds'])} seeds)")


def row_level_text(paired: dict | None) -> str:
    """The row-level test (test rows pooled over seeds), shown only as a second check."""
    row_level = (paired or {}).get("row_level")
    return "-" if not row_level else f"p={row_level['p_value']:.2g} ({len(row_level['seeds'])} x {row_level['rows']} rows)"


def results_table(rows: list[dict], reference: str = REFERENCE) -> str:
    lines = markdown_table(
        ["dataset", "train rows", "method", "attribution", "k", "alpha", "setting", "test acc (mean +- std)", "95% t interval (seeds)",
         "runs", "best val acc (mean)", "steps (per seed)", f"vs {reference}, seed level: difference [95% t CI], p",
         "row-level p (rows pooled over seeds)"],
        ([r["dataset"], r["train_rows"] if r["train_rows"] is not None else "-", r["method"], r["attribution"] or "-",
          _fmt(r["k"]) or "-", _fmt(r["alpha"], 2), r.get("variant") or "-", format_mean_std(r["test_acc_mean"], r["test_acc_std"]),
          _interval(r.get("test_acc_t95")), r["runs"], _fmt(r["val_acc_best_mean"]),
          ", ".join(str(s) for s in r.get("steps") or [] if s is not None) or "-", paired_text(r.get("vs_reference")), row_level_text(r.get("vs_reference"))]
         for r in rows),
    )
    return "\n".join(lines) + "\n"


def csv_table(rows: list[dict]) -> str:
    columns = [*KEY, "test_acc_mean", "test_acc_std", "runs", "val_acc_best_mean", "difference_vs_reference", "p_value_vs_reference"]
    rows = [{**r, "difference_vs_reference": (r.get("vs_reference") or {}).get("difference"),
             "p_value_vs_reference": (r.get("vs_reference") or {}).get("p_value")} for r in rows]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _series_label(row: dict) -> str:
    name = row["method"] + (f" [{row['attribution']}]" if row.get("attribution") else "")
    return f"{name} (alpha {row['alpha']:g}{', ' + row['variant'] if row.get('variant') else ''})"


def _seeds_caption(rows: list[dict], levels: bool) -> str:
    """`levels`: the chart draws methods without k (fine-tuning) as horizontal lines."""
    counts = sorted({r["runs"] for r in rows})
    n = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    lines = "Horizontal lines: methods without k (dashed: labels-only fine-tuning); dotted: chance." if levels else "Dotted: chance."
    return f"Points and bars: test accuracy, mean +- sample std over seeds (n = {n} per point; no bar with one seed). {lines}"


def _caption(fig, text: str) -> None:
    """A caption under the panels, wrapped to the figure's width (~16 characters an inch at 7.5 pt),
    with the room it needs kept free of the axes."""
    width_in, height_in = fig.get_size_inches()
    lines = textwrap.wrap(text, width=max(40, int(width_in * 16)))
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=7.5, color="0.25", va="bottom")
    fig.tight_layout(rect=(0, min(0.3, (0.13 * len(lines) + 0.05) / height_in), 1, 1))


def _pyplot():
    matplotlib.use("Agg")

    return plt


def _levels(ax, rows: list[dict], x_span: tuple[float, float] | None = None) -> None:
    """Fine-tuning (and other methods without k) as horizontal levels, chance as a dotted line, each labelled."""
    styles = {"finetune": "--", "step_by_step": "-."}
    for r in rows:
        if r["k"] is None and r["test_acc_mean"] is not None:
            ax.axhline(r["test_acc_mean"], linestyle=styles.get(r["method"], (0, (3, 1, 1, 1))), color="0.35", linewidth=1.2,
                       label=f"{r['method']} level ({r['test_acc_mean']:.3f})")
    chance_line(ax, rows)


def chance_line(ax, rows: list[dict]) -> bool:
    """Chance accuracy as a dotted, labelled line (where the rows know it)."""
    chance = next((r["chance_acc"] for r in rows if r.get("chance_acc") is not None), None)
    if chance is not None:
        ax.axhline(chance, linestyle=":", color="0.55", linewidth=1.2, label=f"chance ({chance:.3f})")
    return chance is not None


def plot_k_curve(rows: list[dict], path: Path) -> None:
    _save(draw_k_curve(rows), path)


def draw_k_curve(rows: list[dict]):
    """Test accuracy against k per dataset (a matplotlib figure; the notebook shows the same one):
    y from 0 to 1, the swept k as ticks, distinct markers and small x offsets keep equal points apart."""
    plt = _pyplot()
    datasets = sorted({r["dataset"] for r in rows})
    fig, axes = plt.subplots(1, max(1, len(datasets)), figsize=(5.5 * max(1, len(datasets)), 4.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        mine = [r for r in rows if r["dataset"] == dataset and r["test_acc_mean"] is not None]
        curves: dict[str, list[dict]] = defaultdict(list)
        for r in mine:
            if r["k"] is not None:
                curves[_series_label(r)].append(r)
        ks = sorted({r["k"] for r in mine if r["k"] is not None})
        width = min((b - a for a, b in zip(ks, ks[1:])), default=1)
        for i, (label, points) in enumerate(sorted(curves.items())):
            points.sort(key=lambda r: r["k"])
            offset = (i - (len(curves) - 1) / 2) * 0.08 * width
            ax.errorbar(
                [p["k"] + offset for p in points], [p["test_acc_mean"] for p in points],
                yerr=[p["test_acc_std"] or 0.0 for p in points], marker=MARKERS[i % len(MARKERS)], markersize=6,
                capsize=3, linewidth=1.4, label=label, clip_on=False,  # a point at 0 or 1 drawn whole
            )
        _levels(ax, mine)
        if ks:  # half a step of room either side, so that offset points at the ends stay near their tick
            ax.set_xticks(ks)
            ax.set_xlim(ks[0] - 0.5 * width, ks[-1] + 0.5 * width)
        ax.set_ylim(0.0, 1.0)
        ax.set_title(dataset)
        ax.set_xlabel("k (rationale words)")
        ax.set_ylabel("student test accuracy")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best", framealpha=0.85)
    _caption(fig, _seeds_caption(rows, levels=any(r["k"] is None and r["test_acc_mean"] is not None for r in rows)))
    return fig


def best_on_validation(rows: list[dict], fields: tuple[str, ...]) -> list[dict]:
    """For each value of `fields`, the row with the best mean validation accuracy (the first on a tie;
    chosen on validation, never on test), in the order of the fields' values."""
    best: dict[tuple, dict] = {}
    for r in rows:
        key = tuple(r[field] for field in fields)
        if key not in best or validation_score(r) > validation_score(best[key]):
            best[key] = r
    return [best[key] for key in sorted(best, key=str)]


def best_setting_per_method(rows: list[dict]) -> list[dict]:
    """For each (dataset, method, attribution), the k/alpha/variant with the best mean validation accuracy."""
    return best_on_validation(rows, ("dataset", "method", "attribution"))


def validation_choices(rows: list[dict]) -> list[dict]:
    """For each (dataset, train rows, method, attribution) run at several settings (alpha, a grid variant such
    as a learning rate): the grid with each setting's mean best validation accuracy, and the setting chosen
    by it. Only validation fields are read: the choice is made before any test accuracy is looked at."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["dataset"], r["train_rows"], r["method"], r["attribution"])].append(r)
    choices = []
    for (dataset, size, method, attribution), members in sorted(groups.items(), key=lambda item: str(item[0])):
        if len(members) < 2:
            continue
        grid = [{"alpha": m["alpha"], "variant": m.get("variant") or "", "val_acc_best_mean": m["val_acc_best_mean"], "runs": m["runs"]}
                for m in members]
        best = max(grid, key=validation_score)
        choices.append({"dataset": dataset, "train_rows": size, "method": method, "attribution": attribution, "grid": grid,
                         "chosen": {"alpha": best["alpha"], "variant": best["variant"]}})
    return choices


def attribution_choices(rows: list[dict]) -> list[dict]:
    """For each (dataset, train rows, method) run with several attribution methods: each method's best
    validation setting and the attribution method chosen by it (the study's "which attribution method gives
    the best rationales", answered on validation rows; test accuracy is not read)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r["attribution"]:
            groups[(r["dataset"], r["train_rows"], r["method"])].append(r)
    choices = []
    for (dataset, size, method), members in sorted(groups.items(), key=lambda item: str(item[0])):
        best = best_on_validation(members, ("attribution",))
        if len(best) < 2:
            continue
        grid = [{"attribution": b["attribution"], "alpha": b["alpha"], "variant": b.get("variant") or "",
                 "val_acc_best_mean": b["val_acc_best_mean"], "runs": b["runs"]} for b in best]
        chosen = max(grid, key=validation_score)
        choices.append({"dataset": dataset, "train_rows": size, "method": method, "grid": grid, "chosen": chosen["attribution"]})
    return choices


def plot_methods(rows: list[dict], path: Path, reference: str = REFERENCE) -> None:
    """Methods side by side per dataset (each at its best validation setting, named under its bar)."""
    plt = _pyplot()
    chosen = [r for r in best_setting_per_method(rows) if r["test_acc_mean"] is not None]
    datasets = sorted({r["dataset"] for r in chosen})
    fig, axes = plt.subplots(1, max(1, len(datasets)), figsize=(max(4.5, 1.3 * len(chosen) + 2), 4.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        mine = [r for r in chosen if r["dataset"] == dataset]
        labels = []
        for i, r in enumerate(mine):
            ax.bar(i, r["test_acc_mean"], 0.7, yerr=r["test_acc_std"] or 0.0, capsize=4, color=f"C{i}")
            top = r["test_acc_mean"] + (r["test_acc_std"] or 0.0)
            ax.text(i, min(top + 0.02, 0.97), f"{r['test_acc_mean']:.3f}", ha="center", fontsize=8)  # a bar of 0 still reads
            paired = r.get("vs_reference")
            if paired and paired.get("p_value") is not None:  # the seed-level difference from the reference, starred where p < 0.05
                ax.text(i, min(top + 0.06, 0.93), f"{paired['difference']:+.3f}{'*' if paired['p_value'] < 0.05 else ''}\np={paired['p_value']:.2g}",
                        ha="center", fontsize=6.5, color="0.3")
            setting = ", ".join(s for s in (f"k={r['k']}" if r["k"] is not None else "", f"a={r['alpha']:g}") if s)
            labels.append(f"{r['method']}" + (f"\n[{r['attribution']}]" if r["attribution"] else "") + f"\n{setting}")
        if chance_line(ax, mine):
            ax.legend(fontsize=7, loc="upper right")
        ax.set_xticks(range(len(mine)), labels, fontsize=7.5)
        ax.set_ylim(0.0, 1.0)
        ax.set_title(dataset)
        ax.set_ylabel("student test accuracy (best validation setting)")
        ax.grid(axis="y", alpha=0.3)
    caption = _seeds_caption(chosen, levels=False)  # fine-tuning has its own bar here
    if any(r.get("vs_reference") for r in chosen):
        caption += f"; grey: difference from {reference} paired by seed (t over the per-seed differences), * p < 0.05"
    _caption(fig, caption)
    _save(fig, path)


def chosen_per_size(rows: list[dict]) -> list[dict]:
    """For each (dataset, method, attribution, train rows), the setting (k, alpha, variant) with the best mean
    validation accuracy: the points of a data-size curve."""
    return best_on_validation(rows, ("dataset", "method", "attribution", "train_rows"))


def plot_data_size(rows: list[dict], path: Path) -> bool:
    """Test accuracy against the number of train rows, one line per method (and attribution), each point at
    the setting chosen on validation for that size, per dataset with at least two sizes (dataset.train_fraction
    / train_size sweeps); False when there is nothing to draw."""
    datasets = sorted({r["dataset"] for r in rows if len({o["train_rows"] for o in rows if o["dataset"] == r["dataset"]}) > 1})
    if not datasets:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        mine = [r for r in chosen_per_size(rows) if r["dataset"] == dataset and r["test_acc_mean"] is not None and r["train_rows"]]
        series: dict[str, list[dict]] = defaultdict(list)
        for r in mine:
            series[r["method"] + (f" [{r['attribution']}]" if r.get("attribution") else "")].append(r)
        for i, (label, points) in enumerate(sorted(series.items())):
            points.sort(key=lambda r: r["train_rows"])
            sizes_ = [r["train_rows"] for r in points]
            ax.plot(sizes_, [r["test_acc_mean"] for r in points], marker=MARKERS[i % len(MARKERS)], color=f"C{i}", label=label)
            banded = [r for r in points if r.get("test_acc_t95")]
            if banded:  # the 95% t interval over seeds as a band
                ax.fill_between([r["train_rows"] for r in banded], [r["test_acc_t95"][0] for r in banded],
                                [r["test_acc_t95"][1] for r in banded], color=f"C{i}", alpha=0.15, linewidth=0)
        chance_line(ax, mine)
        ax.set_xscale("log", base=2)
        sizes = sorted({r["train_rows"] for r in mine})
        ax.set_xticks(sizes, [f"{s:,}" for s in sizes])  # the sizes themselves, not powers of two
        ax.minorticks_off()
        ax.set_ylim(0.0, 1.0)
        ax.set_xlabel("train rows (labelled examples the student learns from)")
        ax.set_ylabel("student test accuracy")
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    counts = sorted({r["runs"] for r in rows})
    _caption(fig, f"Lines: test accuracy, mean over seeds (n = {'-'.join(str(c) for c in (counts[0], counts[-1]) if c) if counts[0] != counts[-1] else counts[0]}"
                  " per point), each point at its setting chosen on validation; bands: the 95% t interval over seeds"
                  " (none with one seed). Dotted: chance.")
    _save(fig, path)
    return True


def quality_rows(finished: list[dict]) -> list[dict]:
    """Rationale quality per (dataset, attribution method, k) from the runs that measured it, with
    the random-word reference, and the students' mean accuracy at that k."""
    seen: dict[tuple, dict] = {}
    for r in finished:
        quality = r.get("rationale_quality")
        if not quality:
            continue
        for source, per_k in quality["sources"].items():
            for k, values in per_k.items():
                seen.setdefault((r["dataset"], r.get("attribution") if source == "teacher" else "random", int(k)), values)
    rows = []
    for (dataset, method, k), values in sorted(seen.items(), key=lambda item: (item[0][0], str(item[0][1]), item[0][2])):
        accuracy = mean_std([r["test_acc"] for r in finished if r["dataset"] == dataset and r.get("attribution") == method
                             and r.get("k") == k and r.get("test_acc") is not None])
        rows.append({"dataset": dataset, "attribution": method, "k": k, **values,
                     "student_acc_mean": accuracy[0], "student_acc_std": accuracy[1]})
    return rows


def quality_table(rows: list[dict]) -> str:
    measures = ("comprehensiveness", "sufficiency", "comprehensiveness_acc", "sufficiency_acc", "plausibility_f1", "auprc")
    lines = markdown_table(
        ["dataset", "attribution", "k", "comprehensiveness", "sufficiency", "compr. (accuracy)", "suff. (accuracy)", "plausibility F1",
         "AUPRC", "student test acc"],
        ([r["dataset"], r["attribution"], r["k"], *(_fmt(r.get(m)) for m in measures),
          format_mean_std(r["student_acc_mean"], r["student_acc_std"], missing="-")] for r in rows),
    )
    if any("eraser_comprehensiveness" in r for r in rows):
        eraser = ("eraser_comprehensiveness", "eraser_sufficiency", "token_f1", "iou_f1")
        lines += ["", "ERASER's convention (probability of the teacher's predicted answer; token F1 and IOU F1 at 0.5 against "
                      "human highlights; analysis.md adds AOPC over 1-50% of the words, AUPRC, average precision and tau):", ""]
        lines += markdown_table(
            ["dataset", "attribution", "k", "comprehensiveness (prob)", "sufficiency (prob)", "token F1", "IOU F1"],
            ([r["dataset"], r["attribution"], r["k"], *(_fmt(r.get(m)) for m in eraser)] for r in rows),
        )
    return "\n".join(lines) + "\n"


def plot_quality(rows: list[dict], path: Path) -> None:
    """Per dataset: comprehensiveness, sufficiency and plausibility against k, one line per attribution
    method (random words grey, dashed), beside the students' test accuracy against k."""
    plt = _pyplot()
    datasets = sorted({r["dataset"] for r in rows})
    panels = [p for p in QUALITY_PANELS if any(r.get(p[0]) is not None for r in rows)] + [("student_acc_mean", "student test accuracy")]
    fig, axes = plt.subplots(len(datasets), len(panels), figsize=(4.2 * len(panels), 3.6 * len(datasets)), squeeze=False)
    for row_axes, dataset in zip(axes, datasets):
        mine = [r for r in rows if r["dataset"] == dataset]
        methods = sorted({r["attribution"] for r in mine if r["attribution"] != "random"}, key=str) + ["random"]
        for ax, (key, title) in zip(row_axes, panels):
            for i, method in enumerate(methods):
                points = sorted((r for r in mine if r["attribution"] == method and r.get(key) is not None), key=lambda r: r["k"])
                if not points:
                    continue
                style = {"color": "0.5", "linestyle": "--"} if method == "random" else {}
                ax.plot([p["k"] for p in points], [p[key] for p in points], marker=MARKERS[i % len(MARKERS)], label=method, **style)
            if key == "student_acc_mean" or key == "plausibility_f1":
                ax.set_ylim(0.0, 1.0)
            ax.axhline(0.0, color="0.8", linewidth=0.8)
            ax.set_title(f"{dataset}: {title}", fontsize=9)
            ax.set_xlabel("k")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    _caption(fig, "Faithfulness in nats of the teacher's gold log-probability (higher comprehensiveness, lower "
                  "sufficiency = more faithful); random: as many random eligible words.")
    _save(fig, path)


def _save(fig, path: Path) -> None:
    plt = _pyplot()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def build_report(paths: list[str | Path], out_dir: str | Path, reference: str = REFERENCE) -> dict:
    """Collect, aggregate and write the report, each method compared with `reference` (fine-tuning by
    default; e.g. random for the ablation's question: the teacher's words or any words?); returns what
    report.json holds."""
    runs = collect_runs(paths)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    add_variants(runs.finished)
    rows = table_rows(runs.finished)
    add_paired_comparisons(rows, runs.finished, reference)
    quality = quality_rows(runs.finished)
    problems = [f"- failed: `{f['path']}`: {f['error']}" for f in runs.failed]
    problems += [f"- unfinished (no results.json yet): `{p}`" for p in runs.unfinished]
    markdown = [
        "# kdlight report\n",
        f"{len(runs.finished)} finished runs, {len(runs.failed)} failed, {len(runs.unfinished)} unfinished; "
        f"the teacher ran in {runs.teacher_runs} of them (rationale cache misses).\n",
        results_table(rows, reference),
    ]
    if quality:
        markdown += ["\n## Rationale quality (training rationales; kdlight's convention: nats of log p(gold) at absolute k)\n", quality_table(quality)]
    if problems:
        markdown += ["\n## Runs without results\n", "\n".join(problems) + "\n"]
    choices = validation_choices(rows)
    by_attribution = attribution_choices(rows)
    if by_attribution:
        markdown += ["\n## Attribution method chosen on validation (each at its best setting; test accuracy not read)\n",
                     "\n".join(f"- {c['dataset']}, {c['train_rows']} train rows, {c['method']}: "
                               + ", ".join(f"{g['attribution']} ({setting_label(g)}) {_fmt(g['val_acc_best_mean'])}" for g in c["grid"])
                               + f" -> **{c['chosen']}**" for c in by_attribution) + "\n"]
    if choices:
        markdown += ["\n## Settings chosen on validation (mean best validation accuracy over seeds; test accuracy not read)\n",
                     "\n".join(f"- {c['dataset']}, {c['train_rows']} train rows, {c['method']}"
                               + (f" [{c['attribution']}]" if c["attribution"] else "") + ": "
                               + ", ".join(f"{setting_label(g)} {_fmt(g['val_acc_best_mean'])}" for g in c["grid"])
                               + f" -> **{setting_label(c['chosen'])}**" for c in choices) + "\n"]
    write_text(out / "table.md", "\n".join(markdown))  # once, every section in
    write_text(out / "table.csv", csv_table(rows))
    if rows:
        plot_k_curve(rows, out / "k_curve.png")
        plot_methods(rows, out / "methods.png", reference)
        plot_data_size(rows, out / "data_size.png")
    if quality:
        plot_quality(quality, out / "quality.png")
    summary = {
        "paths": [str(p) for p in paths], "reference": reference, "finished": len(runs.finished), "failed": runs.failed,
        "unfinished": runs.unfinished, "teacher_runs": runs.teacher_runs, "rows": rows, "quality": quality,
        "choices": choices, "attribution_choices": by_attribution, "runs": run_intervals(runs.finished),
    }
    write_json(out / "report.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kdlight-report", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="sweep folders, run folders or results.json files")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: <first path>/report)")
    parser.add_argument("--reference", default=REFERENCE, help=f"the method every other is compared with, paired by seed (default {REFERENCE})")
    args = parser.parse_args(argv)
    out = args.out or (args.paths[0] if args.paths[0].is_dir() else args.paths[0].parent) / "report"
    if args.reference != REFERENCE:  # a named reference must be one of the runs' methods (fine-tuning may be absent)
        methods = sorted({r["method"] for r in collect_runs(args.paths).finished})
        if args.reference not in methods:
            print(f"error: --reference {args.reference!r} names no method of these runs; use one of {methods}", file=sys.stderr)
            return 2
    try:
        summary = build_report(args.paths, out, args.reference)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print((out / "table.md").read_text())
    print(f"report written to {out}")
    return 0 if summary["finished"] or summary["failed"] or summary["unfinished"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""kdlight-report on hand-made run folders: aggregation over seeds, failed and unfinished runs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from kdlight.reports.report import build_report, quality_rows, table_rows
from kdlight.reports.runs import collect_runs, mean_std


def finished(folder: Path, **fields) -> None:
    folder.mkdir(parents=True)
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "config.yaml").write_text("k: 1\n")
    base = {"status": "finished", "dataset": "cqa", "method": "saliency", "attribution": "grad_x_input", "k": 5, "alpha": 0.5,
            "seed": 0, "test_acc": 0.5, "val_acc_best": 0.5, "rationale_cache": "hit", "chance_acc": 0.2}
    (folder / "results.json").write_text(json.dumps({**base, **fields}))


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "multirun" / "2026-11-28" / "10-00-00"
    finished(root / "0", seed=0, test_acc=0.60, val_acc_best=0.62, rationale_cache="miss")
    finished(root / "1", seed=1, test_acc=0.70, val_acc_best=0.66)
    finished(root / "2", method="finetune", attribution=None, k=None, alpha=0.0, test_acc=0.40, val_acc_best=0.41, rationale_cache=None)
    finished(root / "3", k=1, test_acc=0.55, val_acc_best=0.70)
    (root / "4").mkdir()
    (root / "4" / "results.json").write_text(json.dumps({"status": "failed", "error": "RuntimeError: out of memory"}))
    (root / "5" / ".hydra").mkdir(parents=True)  # started, never wrote results.json (killed, or still running)
    (root / "5" / ".hydra" / "config.yaml").write_text("k: 1\n")
    (root / "0" / "student").mkdir()  # an exported student is not a run
    return root


def test_mean_and_sample_std():
    mean, std = mean_std([0.6, 0.7])
    assert math.isclose(mean, 0.65) and math.isclose(std, math.sqrt(0.005))
    assert mean_std([0.3]) == (0.3, None) and mean_std([]) == (None, None)


def test_collect_lists_failed_and_unfinished_runs_by_path(sweep):
    runs = collect_runs([sweep])
    assert len(runs.finished) == 4 and runs.teacher_runs == 1
    assert runs.failed == [{"path": str((sweep / "4").resolve()), "error": "RuntimeError: out of memory"}]
    assert runs.unfinished == [str((sweep / "5").resolve())]


def test_table_aggregates_seeds_of_one_setting(sweep):
    rows = {(r["method"], r["k"]): r for r in table_rows(collect_runs([sweep]).finished)}
    assert set(rows) == {("finetune", None), ("saliency", 1), ("saliency", 5)}
    five = rows[("saliency", 5)]
    assert five["runs"] == 2 and five["seeds"] == [0, 1]
    assert math.isclose(five["test_acc_mean"], 0.65) and math.isclose(five["test_acc_std"], math.sqrt(0.005))
    assert math.isclose(five["val_acc_best_mean"], 0.64)


def test_report_writes_tables_charts_and_names_the_problem_runs(sweep, tmp_path):
    summary = build_report([sweep], tmp_path / "report")
    assert summary["finished"] == 4 and len(summary["failed"]) == 1 and len(summary["unfinished"]) == 1
    table = (tmp_path / "report" / "table.md").read_text()
    # t interval of 0.6 and 0.7: 0.65 +- t(0.975, 1) * 0.0707 / sqrt(2) = 0.65 +- 0.635
    assert "| cqa | - | saliency | grad_x_input | 5 | 0.50 | - | 0.6500 +- 0.0707 | [0.015, 1.285] | 2 | 0.6400 | - | - | - |" in table
    assert "| cqa | - | finetune | - | - | 0.00 | - | 0.4000 | - | 1 | 0.4100 | - | - | - |" in table
    assert f"failed: `{(sweep / '4').resolve()}`: RuntimeError: out of memory" in table
    assert f"unfinished (no results.json yet): `{(sweep / '5').resolve()}`" in table
    with open(tmp_path / "report" / "table.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 3
    for chart in ("k_curve.png", "methods.png"):
        assert (tmp_path / "report" / chart).stat().st_size > 1000


def _with_predictions(folder: Path, correct: list[int], overrides: list[str]) -> None:
    (folder / "predictions-test.jsonl").write_text("".join(json.dumps({"index": i, "correct": bool(c)}) + "\n" for i, c in enumerate(correct)))
    (folder / ".hydra").mkdir(parents=True, exist_ok=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))


def test_the_report_compares_by_seed_against_the_finetune_setting_chosen_on_validation(tmp_path):
    """A learning-rate grid of fine-tuning becomes one row per rate (its variant); a method is compared with
    the rate whose mean validation accuracy is best (not its test accuracy), seed by seed."""
    rows_per_run = 200
    for seed in range(3):
        for lr, val, correct in (("1e-4", 0.50, 80), ("2e-4", 0.60, 90), ("3e-4", 0.40, 140)):  # 3e-4: best on test, worst on val
            folder = tmp_path / f"ft-{lr}-{seed}"
            finished(folder, method="finetune", attribution=None, k=None, alpha=0.0, seed=seed, val_acc_best=val,
                     test_acc=correct / rows_per_run, steps=300 + seed)
            _with_predictions(folder, [1] * correct + [0] * (rows_per_run - correct), ["method=finetune", f"student.optimizer.lr={lr}", f"seed={seed}"])
        folder = tmp_path / f"sal-{seed}"
        better = 90 + (10, 12, 8)[seed]
        finished(folder, seed=seed, val_acc_best=0.65, test_acc=better / rows_per_run)
        _with_predictions(folder, [1] * better + [0] * (rows_per_run - better), ["method=saliency", f"seed={seed}"])
    summary = build_report([tmp_path], tmp_path / "report")
    rows = {(r["method"], r["variant"]): r for r in summary["rows"]}
    assert set(rows) == {("finetune", "lr=1e-4"), ("finetune", "lr=2e-4"), ("finetune", "lr=3e-4"), ("saliency", "")}
    paired = rows[("saliency", "")]["vs_reference"]
    assert paired["reference_variant"] == "lr=2e-4" and paired["per_seed"] == pytest.approx({"0": 0.05, "1": 0.06, "2": 0.04})
    assert paired["difference"] == pytest.approx(0.05) and paired["p_value"] < 0.05 and paired["row_level"]["p_value"] < 0.05
    assert rows[("finetune", "lr=1e-4")]["steps"] == [300, 301, 302]
    table = (tmp_path / "report" / "table.md").read_text()
    assert "+0.0500 [+0.025, +0.075], p=0.0132 (3 seeds)".replace("0.0132", f"{paired['p_value']:.2g}") in table


def test_quality_rows_pair_each_method_and_k_with_its_students(tmp_path):
    quality = {"sources": {"teacher": {"5": {"comprehensiveness": 2.0, "sufficiency": 0.5, "plausibility_f1": 0.4}},
                           "random": {"5": {"comprehensiveness": 0.3, "sufficiency": 1.5, "plausibility_f1": 0.1}}}}
    finished(tmp_path / "a", seed=0, test_acc=0.6, rationale_quality=quality)
    finished(tmp_path / "b", seed=1, test_acc=0.8, rationale_quality=quality)
    finished(tmp_path / "c", attribution="occlusion", test_acc=0.3,
             rationale_quality={"sources": {"teacher": {"5": {"comprehensiveness": 1.0, "sufficiency": 0.9}},
                                            "random": {"5": {"comprehensiveness": 0.3, "sufficiency": 1.5}}}})
    rows = {(r["attribution"], r["k"]): r for r in quality_rows(collect_runs([tmp_path]).finished)}
    assert set(rows) == {("grad_x_input", 5), ("occlusion", 5), ("random", 5)}
    assert rows[("grad_x_input", 5)]["comprehensiveness"] == 2.0 and math.isclose(rows[("grad_x_input", 5)]["student_acc_mean"], 0.7)
    summary = build_report([tmp_path], tmp_path / "report")
    assert len(summary["quality"]) == 3 and (tmp_path / "report" / "quality.png").stat().st_size > 1000
    assert "| cqa | occlusion | 5 | 1.0000 | 0.9000 |" in (tmp_path / "report" / "table.md").read_text()


def test_report_command_rejects_a_missing_path(tmp_path, capsys):
    from kdlight.reports.report import main

    assert main([str(tmp_path / "nowhere")]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err


def test_a_run_that_fails_writes_a_failed_results_json(compose, tmp_path):
    from kdlight.run import run

    cfg = compose(["debug=tiny", "dataset=cqa", "method=finetune", f"dataset.root={tmp_path / 'no-data'}"])
    from kdlight.data.readers import DataSourceError

    with pytest.raises(DataSourceError):
        run(cfg)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "failed" and "no-data" in results["error"]
    assert results["method"] == "finetune" and results["dataset"] == "cqa"
    runs = collect_runs([tmp_path / "run"])
    assert runs.finished == [] and runs.failed[0]["error"] == results["error"]


def test_flush_denormal_holds_only_inside_a_run(compose):
    import torch

    from kdlight.utils.runtime import numeric_settings

    tiny = torch.tensor([1e-39])  # a denormal float32
    with numeric_settings(compose(["flush_denormal=true"]).flush_denormal):
        assert (tiny * 1.0).item() == 0.0
    assert (tiny * 1.0).item() != 0.0  # PyTorch's default is back for whatever runs next
    with numeric_settings(compose(["flush_denormal=false"]).flush_denormal):
        assert (tiny * 1.0).item() != 0.0


def test_charts_pin_the_axis_keep_equal_points_apart_and_say_what_the_bars_are(monkeypatch, tmp_path):
    """A degenerate sweep (every accuracy 0) still reads: [0, 1] axis, one marker per line, lines
    offset, chance and fine-tuning levels labelled, the caption naming mean +- sample std and n."""
    from kdlight.reports import report

    figures = {}
    monkeypatch.setattr(report, "_save", lambda fig, path: figures.__setitem__(path.name, fig))
    rows = [
        {"dataset": "cqa", "method": "saliency", "attribution": "grad_x_input", "k": k, "alpha": alpha, "test_acc_mean": 0.0,
         "test_acc_std": None, "runs": 1, "seeds": [0], "val_acc_best_mean": 0.0, "chance_acc": 0.2}
        for k in (1, 3) for alpha in (0.1, 0.5)
    ] + [{"dataset": "cqa", "method": "finetune", "attribution": None, "k": None, "alpha": 0.0, "test_acc_mean": 0.1,
          "test_acc_std": 0.02, "runs": 3, "seeds": [0, 1, 2], "val_acc_best_mean": 0.1, "chance_acc": 0.2}]
    report.plot_k_curve(rows, tmp_path / "k_curve.png")
    report.plot_methods(rows, tmp_path / "methods.png")
    (ax,) = figures["k_curve.png"].axes
    assert ax.get_ylim() == (0.0, 1.0)
    lines = [container.lines[0] for container in ax.containers]  # the data line of each alpha curve
    assert len(lines) == 2 and lines[0].get_marker() != lines[1].get_marker()
    assert list(lines[0].get_xdata()) != list(lines[1].get_xdata())  # offset: equal points stay visible
    labels = ax.get_legend_handles_labels()[1]
    assert "chance (0.200)" in labels and "finetune level (0.100)" in labels
    caption = " ".join(" ".join(t.get_text() for t in figures["k_curve.png"].texts).split())  # wrapped to the width
    assert "mean +- sample std over seeds (n = 1-3 per point" in caption
    assert ax.get_xlim() == (0.0, 4.0)  # half a step beyond k=1 and k=3: the offset points stay by their ticks
    (bars,) = figures["methods.png"].axes
    assert bars.get_ylim() == (0.0, 1.0) and any("k=" in t.get_text() for t in bars.get_xticklabels())
    assert "0.000" in [t.get_text() for t in bars.texts]  # the value written on a bar of height 0


def with_predictions(folder: Path, correct: list[bool], **fields) -> None:
    finished(folder, test_acc=sum(correct) / len(correct), split_sizes={"train": fields.pop("train", 100)}, **fields)
    (folder / "predictions-test.jsonl").write_text("".join(
        json.dumps({"index": i, "gold": "a", "prediction": "a" if c else "b", "correct": c}) + "\n" for i, c in enumerate(correct)
    ))


def test_methods_are_compared_with_finetune_over_the_same_seeds_and_rows(tmp_path):
    """A planted difference: saliency gets 20 more of 200 test rows right than fine-tuning, with every seed."""
    import random

    root = tmp_path / "sweep"
    rng = random.Random(0)
    for seed in range(3):
        base = [rng.random() < 0.5 for _ in range(200)]
        fixed = [c or (i % 10 == 0 and not c) for i, c in enumerate(base)]  # wrong rows at i % 10 == 0 become right
        with_predictions(root / f"f{seed}", base, method="finetune", attribution=None, k=None, alpha=0.0, seed=seed)
        with_predictions(root / f"s{seed}", fixed, seed=seed)
        with_predictions(root / f"r{seed}", base, method="random", attribution=None, seed=seed)  # identical to finetune
        with_predictions(root / f"small{seed}", base[:200], method="finetune", attribution=None, k=None, alpha=0.0, seed=seed, train=50)
    summary = build_report([root], tmp_path / "report")
    rows = {(r["method"], r["train_rows"]): r for r in summary["rows"]}
    planted = rows[("saliency", 100)]["vs_reference"]
    assert planted["reference"] == "finetune" and planted["seeds"] == ["0", "1", "2"] and planted["rows"] == 200
    assert planted["difference"] > 0.03 and planted["low"] > 0 and planted["p_value"] < 0.05  # t over 3 per-seed differences
    assert planted["row_level"]["p_value"] < 0.01 and planted["row_level"]["rows"] == 200
    same = rows[("random", 100)]["vs_reference"]
    assert same["difference"] == 0 and same["p_value"] == 1.0
    assert rows[("finetune", 50)]["vs_reference"] is None  # the reference itself
    table = (tmp_path / "report" / "table.md").read_text()
    assert f"{planted['difference']:+.4f} [" in table and "(3 seeds) |" in table and "(3 x 200 rows) |" in table
    assert all(r["test_acc_bootstrap95"][0] < r["test_acc"] < r["test_acc_bootstrap95"][1] for r in summary["runs"])
    assert (tmp_path / "report" / "data_size.png").stat().st_size > 1000  # two train sizes: a data-size chart


def test_the_job_count_takes_the_command_lines_values_for_a_key_the_config_also_sweeps():
    from omegaconf import OmegaConf

    from kdlight.reports.callbacks import sweep_size

    def config(params, task):
        return OmegaConf.create({"hydra": {"sweeper": {"params": params}, "overrides": {"task": task}}})

    assert sweep_size(config({"method": "a,b,c", "seed": "0,1,2"}, [])) == 9
    assert sweep_size(config({"method": "a,b,c", "seed": "0,1,2"}, ["method=a,b", "seed=0", "k=1,2"])) == 4

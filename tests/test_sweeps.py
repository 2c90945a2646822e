"""Multirun sweeps with tiny models on real CQA rows: results, one teacher run, the report, the
analysis, the notebook; the same sweep on the joblib launcher; Optuna and submitit configs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DSBS_ROOT, REPO_ROOT, needs_dsbs
from tests.helpers import HANG_GUARD

TINY_SWEEP = ["debug=tiny", "dataset=cqa", "k=1,3", "alpha=0.1,0.5", "attribution.score_teacher=true", "threads=1"]


def run_train(args: list[str], sweep_dir: Path, cache_dir: Path, timeout: int = HANG_GUARD) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "WANDB_MODE": "disabled"}
    flags = [a for a in args if a == "-m"]
    command = [
        sys.executable, "train.py", *flags, *[a for a in args if a != "-m"], f"paths.data_dir={DSBS_ROOT}",
        f"paths.cache_dir={cache_dir}", f"hydra.sweep.dir={sweep_dir}",
    ]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def results_below(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*/results.json"))]


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory) -> Path:
    """`python train.py -m ... k=1,3 alpha=0.1,0.5` with tiny models: a 2 x 2 grid."""
    needs_dsbs()
    root = tmp_path_factory.mktemp("sweep")
    out = run_train(["-m", *TINY_SWEEP], root / "sweep", root / "cache")
    assert out.returncode == 0, out.stderr[-3000:]
    (root / "stdout.txt").write_text(out.stdout)
    return root / "sweep"


def test_grid_sweep_writes_four_results_and_runs_the_teacher_once(tiny_sweep):
    results = results_below(tiny_sweep)
    assert len(results) == 4
    assert sorted((r["k"], r["alpha"]) for r in results) == [(1, 0.1), (1, 0.5), (3, 0.1), (3, 0.5)]
    assert all(r["status"] == "finished" for r in results)
    assert sorted(r["rationale_cache"] for r in results) == ["hit", "hit", "hit", "miss"]
    summary = json.loads((tiny_sweep / "sweep_summary.json").read_text())
    assert summary["finished"] == 4 and summary["teacher_runs"] == 1 and summary["cache_hits"] == 3
    assert summary["failed"] == [] and summary["unfinished"] == []
    jobs = [line for line in (tiny_sweep.parent / "stdout.txt").read_text().splitlines() if line.startswith("[job ")]
    assert [line.split("]")[0] for line in jobs] == ["[job 1/4", "[job 2/4", "[job 3/4", "[job 4/4"]  # one line per job, counted


def test_report_has_one_row_per_setting_and_two_charts(tiny_sweep):
    from kdlight.reports.report import main

    assert main([str(tiny_sweep)]) == 0
    report = tiny_sweep / "report"
    with open(report / "table.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["k"], r["alpha"]) for r in rows] == [("1", "0.1"), ("1", "0.5"), ("3", "0.1"), ("3", "0.5")]
    assert all(r["runs"] == "1" and r["method"] == "saliency" for r in rows)
    table = (report / "table.md").read_text()
    assert table.count("| cqa | 32 | saliency | grad_x_input |") == 4 and "the teacher ran in 1 of them" in table
    for chart in ("k_curve.png", "methods.png"):
        assert (report / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_analysis_over_the_sweep_covers_its_cache_and_every_run(tiny_sweep):
    from kdlight.reports.analysis import main

    assert main([str(tiny_sweep), "--k", "1", "3", "--examples", "8", "--views", "3", "--threads", "1"]) == 0
    analysis = json.loads((tiny_sweep / "analysis" / "analysis.json").read_text())
    (cache,) = analysis["caches"]
    assert cache["dataset"] == "cqa" and cache["examples"] == 32 and set(cache["answer_overlap"]) == {"1", "3"}
    assert 0.0 <= cache["answer_overlap"]["3"]["share"] <= 1.0
    assert cache["teacher_accuracy"] is not None  # the sweep extracted with score_teacher=true
    assert len(analysis["runs"]) == 4
    for run in analysis["runs"]:
        similarity = run["similarity"]
        assert similarity["examples"] == 8
        assert all(0.0 <= value <= 1.0 for value in similarity["jaccard"].values())
        assert 0.0 <= similarity["prediction_agreement"] <= 1.0
    view = Path(cache["saliency_view"]).read_text()
    assert view.count("<div class='ex'>") == 3 and view.count("class='top'") > 0
    quality = cache["quality"]
    assert set(quality["sources"]) == {"teacher", "random"} and set(quality["sources"]["teacher"]) == {"1", "3"}
    assert quality["plausibility"]["partial"]["examples"] + quality["plausibility"]["whole"]["examples"] > 0  # CoS-E highlights
    assert "analysis" in (tiny_sweep / "analysis" / "analysis.md").read_text()


def test_notebook_executes_against_the_sweep_outputs(tiny_sweep):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from kdlight.reports.analysis import main as analyze
    from kdlight.reports.report import main as report

    assert report([str(tiny_sweep)]) == 0
    assert analyze([str(tiny_sweep), "--examples", "4", "--views", "2", "--no-faithfulness"]) == 0
    notebook = nbformat.read(REPO_ROOT / "notebooks" / "analysis.ipynb", as_version=4)
    os.environ["KDLIGHT_REPORT_DIR"] = str(tiny_sweep / "report")
    os.environ["KDLIGHT_ANALYSIS_DIR"] = str(tiny_sweep / "analysis")
    try:
        nbclient.NotebookClient(notebook, timeout=HANG_GUARD, kernel_name="python3").execute()  # per cell: a hang guard
    finally:
        os.environ.pop("KDLIGHT_REPORT_DIR")
        os.environ.pop("KDLIGHT_ANALYSIS_DIR")
    printed = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert "4 finished runs" in printed and "answer in top-k words" in printed
    kinds = {key for c in notebook.cells if c.cell_type == "code" for o in c.outputs for key in o.get("data", {})}
    assert {"image/png", "text/html", "text/markdown"} <= kinds


@pytest.mark.slow  # 10-35 s: CI runs it (.ci/run includes the slow tests)
def test_joblib_launcher_runs_the_grid_in_two_workers_sharing_one_teacher_run(tmp_path):
    needs_dsbs()
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    out = run_train(["-m", "hydra/launcher=local_joblib", "hydra.launcher.n_jobs=2", *TINY_SWEEP], tmp_path / "sweep", tmp_path / "cache")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in out.stderr + out.stdout
    results = results_below(tmp_path / "sweep")
    assert len(results) == 4 and all(r["status"] == "finished" for r in results)
    assert sorted(r["rationale_cache"] for r in results) == ["hit", "hit", "hit", "miss"]
    (cache,) = (tmp_path / "cache" / "rationales").glob("cqa-train-*/manifest.json")
    assert json.loads(cache.read_text())["rows"] == 32


def test_named_sweep_runs_without_dash_m(tmp_path):
    """`python train.py sweep=methods ...` is a multirun by itself (hydra.mode=MULTIRUN in the file)."""
    needs_dsbs()
    out = run_train(["sweep=methods", "debug=tiny", "dataset=cqa", "k=2", "threads=1"], tmp_path / "sweep", tmp_path / "cache")
    assert out.returncode == 0, out.stderr[-3000:]
    methods = sorted(r["method"] for r in results_below(tmp_path / "sweep"))
    assert methods == ["finetune", "random", "saliency", "step_by_step"]
    assert json.loads((tmp_path / "sweep" / "sweep_summary.json").read_text())["teacher_runs"] == 1

    # Students trained without the teacher are compared with the teacher's cache of their dataset and split.
    from kdlight.reports.analysis import main

    assert main([str(tmp_path / "sweep"), "--k", "2", "--examples", "4", "--views", "1", "--no-faithfulness"]) == 0
    analysis = json.loads((tmp_path / "sweep" / "analysis" / "analysis.json").read_text())
    assert sorted(r["method"] for r in analysis["runs"]) == methods
    assert all(r["similarity"]["examples"] == 4 for r in analysis["runs"])


@pytest.mark.slow  # 10-35 s: CI runs it (.ci/run includes the slow tests)
def test_one_command_compares_attribution_methods(tmp_path):
    """`python train.py sweep=attribution_methods dataset=cqa k=5`: four caches, quality measured once
    each, four students, one report with the quality chart."""
    needs_dsbs()
    out = run_train(["sweep=attribution_methods", "debug=tiny", "dataset=cqa", "k=3",
                     "attribution.quality.examples=8", "attribution.quality.ks=[1,3]", "threads=1"], tmp_path / "sweep", tmp_path / "cache")
    assert out.returncode == 0, out.stderr[-3000:]
    results = results_below(tmp_path / "sweep")
    assert sorted(r["attribution"] for r in results) == ["grad_x_input", "gradient", "integrated_gradients", "occlusion"]
    assert all(r["rationale_cache"] == "miss" and r["rationale_quality"]["sources"]["teacher"]["3"] for r in results)
    assert len(list((tmp_path / "cache" / "rationales").glob("*/manifest.json"))) == 4
    report = tmp_path / "sweep" / "report"
    assert (report / "quality.png").stat().st_size > 1000 and (report / "k_curve.png").is_file()
    table = (report / "table.md").read_text()
    assert "## Rationale quality" in table and table.count("| cqa | random | 3 |") == 1


@pytest.mark.slow
def test_optuna_sweep_searches_k_and_alpha(tmp_path):
    needs_dsbs()
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    out = run_train(["sweep=optuna", "debug=tiny", "hydra.sweeper.n_trials=2", "threads=1"], tmp_path / "sweep", tmp_path / "cache")
    assert out.returncode == 0, out.stderr[-3000:]
    results = results_below(tmp_path / "sweep")
    assert len(results) == 2 and all(1 <= r["k"] <= 20 and 0.05 <= r["alpha"] <= 0.95 for r in results)
    best = (tmp_path / "sweep" / "optimization_results.yaml").read_text()
    assert "best_params" in best and "k:" in best and "alpha:" in best


@pytest.mark.slow
def test_submitit_local_launcher_runs_a_job(tmp_path):
    needs_dsbs()
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    out = run_train(["-m", "hydra/launcher=slurm_local", "debug=tiny", "dataset=cqa", "method=finetune", "threads=1"], tmp_path / "sweep", tmp_path / "cache")
    assert out.returncode == 0, out.stderr[-3000:]
    (result,) = results_below(tmp_path / "sweep")
    assert result["status"] == "finished" and result["method"] == "finetune"

"""The real-language study's design (experiment=minilm_esnli_*): nested seeded subsets, a validation slice
nobody trains on, choices made on validation only, finished runs skipped, committed records that merge."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from kdlight.data.readers import subsample_positions
from tests.conftest import needs_dsbs

SIZES = (250, 500, 1000, 2000)


def test_each_seeds_smaller_subsets_are_inside_its_larger_ones():
    for seed in range(5):
        subsets = [set(subsample_positions(8857, size, seed).tolist()) for size in SIZES]
        assert [len(s) for s in subsets] == list(SIZES)
        assert all(small < large for small, large in zip(subsets, subsets[1:]))
    assert set(subsample_positions(8857, 250, 0).tolist()) != set(subsample_positions(8857, 250, 1).tolist())  # each seed its own


@pytest.mark.dsbs
def test_the_validation_slice_is_disjoint_from_every_students_and_the_teachers_train_rows(compose, tmp_path):
    """Through the study's own config: the students' subsets (every size and seed) and the teacher's
    fine-tuning rows never hold a row of the 985-row slice every choice is made on, nor a test row."""
    from hydra.utils import instantiate

    from kdlight.teacher.finetune import finetune_datamodule
    from kdlight.teacher.stage import TeacherStage

    root = needs_dsbs("esnli/esnli_valid.json")
    teacher_rows = None
    for size in (250, 2000):
        for seed in (0, 1, 2):
            cfg = compose(["experiment=minilm_esnli_lr", f"dataset.train_size={size}", f"seed={seed}", f"paths.data_dir={root}",
                           "hydra.mode=RUN"])
            data = instantiate(cfg.dataset)
            splits = {name: {e.id for e in rows} for name, rows in data.examples.splits.items()}  # ids: rows of the valid file
            assert len(splits["valid"]) == 985 and len(splits["test"]) == 9824 and len(splits["train"]) == size
            assert not splits["train"] & splits["valid"]
            pairs = {name: {(e.fields["premise"], e.fields["hypothesis"]) for e in rows} for name, rows in data.examples.splits.items()}
            assert not pairs["train"] & pairs["test"] and not pairs["valid"] & pairs["test"]  # the test file is another file
            if teacher_rows is None:
                stage = TeacherStage.from_config(cfg)
                teacher_data = finetune_datamodule(stage, data)
                teacher_rows = {e.id for e in teacher_data.examples.splits["train"]}
                assert len(teacher_rows) == 8857 and {e.id for e in teacher_data.examples.splits["valid"]} == splits["valid"]
            assert splits["train"] <= teacher_rows and not teacher_rows & splits["valid"]


def row(method: str, val: float, test: float, alpha: float = 0.0, variant: str = "", size: int = 1000) -> dict:
    return {"dataset": "esnli", "train_rows": size, "method": method, "attribution": None, "alpha": alpha, "variant": variant,
            "val_acc_best_mean": val, "test_acc_mean": test, "runs": 3}


def test_the_choice_is_made_on_validation_and_never_reads_test_accuracy():
    from kdlight.reports.report import validation_choices

    rows = [row("saliency", 0.55, 0.70, alpha=0.1), row("saliency", 0.60, 0.50, alpha=0.3), row("saliency", 0.50, 0.80, alpha=0.5),
            row("finetune", 0.52, 0.61, variant="lr=1e-4"), row("finetune", 0.57, 0.40, variant="lr=2e-4"), row("random", 0.4, 0.4, 0.3)]
    choices = {c["method"]: c for c in validation_choices(rows)}
    assert choices["saliency"]["chosen"] == {"alpha": 0.3, "variant": ""} and choices["finetune"]["chosen"]["variant"] == "lr=2e-4"
    assert "random" not in choices  # one setting: nothing was chosen
    blind = [{k: v for k, v in r.items() if not k.startswith("test")} for r in rows]  # no test field at all
    assert validation_choices(blind) == validation_choices(rows)


def test_the_attribution_method_is_chosen_on_validation_at_each_ones_best_setting():
    from kdlight.reports.report import attribution_choices

    def attributed(name, val, test, alpha=0.3, size=1000):
        return {**row("saliency", val, test, alpha=alpha, size=size), "attribution": name}

    rows = [attributed("grad_x_input", 0.60, 0.50), attributed("grad_x_input", 0.66, 0.40, alpha=0.1),
            attributed("integrated_gradients", 0.64, 0.90), attributed("occlusion", 0.58, 0.95),
            attributed("occlusion", 0.70, 0.30, size=500), row("finetune", 0.9, 0.9)]
    (choice,) = attribution_choices(rows)  # 500 rows ran one attribution method: nothing chosen there
    assert choice["train_rows"] == 1000 and choice["method"] == "saliency" and choice["chosen"] == "grad_x_input"
    assert {g["attribution"]: (g["alpha"], g["val_acc_best_mean"]) for g in choice["grid"]} == {
        "grad_x_input": (0.1, 0.66), "integrated_gradients": (0.3, 0.64), "occlusion": (0.3, 0.58)}
    blind = [{k: v for k, v in r.items() if not k.startswith("test")} for r in rows]
    assert attribution_choices(blind) == attribution_choices(rows)


def test_the_data_size_curve_takes_each_sizes_setting_chosen_on_validation():
    """One line per method: at 1,000 labels the lr grid's validation winner, at 250 the one setting that ran
    (a variant named on the command line at one size is still the same method's line)."""
    from kdlight.reports.report import chosen_per_size

    rows = [row("finetune", 0.52, 0.61, variant="lr=1e-4"), row("finetune", 0.57, 0.40, variant="lr=2e-4"),
            row("finetune", 0.45, 0.46, size=250), row("saliency", 0.55, 0.90, alpha=0.1), row("saliency", 0.60, 0.50, alpha=0.3),
            row("saliency", 0.48, 0.47, alpha=0.3, size=250)]
    points = {(r["method"], r["train_rows"]): r for r in chosen_per_size(rows)}
    assert len(points) == 4 and points[("finetune", 1000)]["variant"] == "lr=2e-4" and points[("saliency", 1000)]["alpha"] == 0.3
    assert points[("finetune", 250)]["test_acc_mean"] == 0.46
    blind = [{k: v for k, v in r.items() if not k.startswith("test")} for r in rows]  # never reads test accuracy
    assert [(r["method"], r["train_rows"], r["alpha"], r["variant"]) for r in chosen_per_size(blind)] == \
        [(r["method"], r["train_rows"], r["alpha"], r["variant"]) for r in chosen_per_size(rows)]


def test_the_study_configs_compose_with_a_fixed_sweep_folder_and_the_plan(compose):
    from kdlight.reports.study import finished_jobs, planned_jobs, study_estimate

    cfg = compose(["experiment=minilm_esnli_lr"])
    assert cfg.dataset.train_stand_in == "valid" and cfg.dataset.subsample_seed == cfg.seed and cfg.trainer.min_steps == 200 and cfg.student.model.pooling == "mean"
    assert cfg.callbacks.early_stopping.patience == 4 and cfg.student.optimizer.weight_decay == 0.01
    config = OmegaConf.create({"hydra": {"sweeper": {"params": {"method": "finetune", "student.optimizer.lr": "1e-4,2e-4,3e-4",
                                                                "seed": "0,1,2"}}, "overrides": {"task": ["seed=0,1"]}}})
    jobs = planned_jobs(config)
    assert len(jobs) == 6 and {j["seed"] for j in jobs} == {"0", "1"}  # the command line's seeds win over the config's
    # finished runs' overrides as Hydra writes them (the sweep's values normalised: 1e-4 -> 0.0001)
    finished = [{"method": "finetune", "student.optimizer.lr": "0.0001", "seed": "0"},
                {"method": "finetune", "student.optimizer.lr": "0.0002", "seed": "1", "experiment": "x"},
                {"method": "finetune", "student.optimizer.lr": "0.0001", "seed": "2"},  # not a job of this command
                {"method": "saliency", "student.optimizer.lr": "0.0003", "seed": "0"}]  # another method in the folder
    done = finished_jobs(jobs, finished)
    assert done.count(True) == 2
    lines, minutes = study_estimate(jobs, done, {"finetune": 8}, parallel=2, default_method="saliency")
    assert lines == ["finetune: 6 jobs, 2 finished, 4 to run (~8 min each)"] and minutes == 16


def test_committed_records_reproduce_the_report_of_the_run_folders(tmp_path):
    """runs.jsonl keeps what the seed-level comparison needs: the report from the records equals the report from the folders."""
    from kdlight.reports.report import build_report
    from kdlight.reports.study import commit_study
    from tests.reports.test_report import finished

    sweep = tmp_path / "sweep"
    rng = np.random.default_rng(0)
    for seed in range(3):
        for method, accuracy in (("finetune", 0.5), ("saliency", 0.58)):
            folder = sweep / f"{method}-{seed}"
            correct = (rng.random(300) < accuracy).astype(int)
            finished(folder, method=method, seed=seed, test_acc=float(correct.mean()), val_acc_best=accuracy, split_sizes={"train": 250},
                     attribution=None if method == "finetune" else "grad_x_input", k=None if method == "finetune" else 3,
                     alpha=0.0 if method == "finetune" else 0.3)
            (folder / "predictions-test.jsonl").write_text("".join(json.dumps({"index": i, "correct": bool(c)}) + "\n"
                                                                   for i, c in enumerate(correct)))
    from_folders = build_report([sweep], tmp_path / "from-folders")
    commit_study(sweep, tmp_path / "committed")
    from_records = build_report([tmp_path / "committed"], tmp_path / "from-records")
    keys = ("method", "test_acc_mean", "vs_reference")
    assert [{k: r[k] for k in keys} for r in from_records["rows"]] == [{k: r[k] for k in keys} for r in from_folders["rows"]]
    assert from_records["rows"][1]["vs_reference"]["seeds"] == ["0", "1", "2"]
    assert Path(tmp_path / "committed" / "table.md").read_text().count("| esnli |") == 0  # the fixture's dataset is cqa


def test_the_curve_uses_the_settings_the_committed_selection_chose(compose):
    """The data-size curve's alpha and learning rate are the ones the selection commands chose on the
    validation slice (benchmarks/results/studies/minilm_esnli_1000/report.json), not assumed."""
    report = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "studies" / "minilm_esnli_1000" / "report.json"
    if not report.is_file():
        pytest.skip("the selection's records are not committed")
    choices = {c["method"]: c["chosen"] for c in json.loads(report.read_text())["choices"]}
    cfg = compose(["experiment=minilm_esnli_curve", "dataset.train_size=250"])
    assert cfg.alpha == choices["saliency"]["alpha"]
    assert choices["finetune"]["variant"] == f"lr={cfg.student.optimizer.lr}"


def test_the_report_compares_with_another_reference_when_asked(tmp_path):
    """kdlight-report --reference random: the ablation's question (the teacher's words, or any words?), paired by seed."""
    from kdlight.reports.report import main
    from tests.reports.test_report import finished

    sweep = tmp_path / "sweep"
    for seed, (tuned, rand, sal) in enumerate([(0.60, 0.58, 0.62), (0.62, 0.61, 0.64), (0.61, 0.60, 0.63)]):
        for method, accuracy in (("finetune", tuned), ("random", rand), ("saliency", sal)):
            folder = sweep / f"{method}-{seed}"
            correct = [i < accuracy * 1000 for i in range(1000)]  # the first rows right: paired rows differ only where accuracies do
            finished(folder, method=method, seed=seed, test_acc=accuracy, val_acc_best=accuracy, split_sizes={"train": 250},
                     attribution="grad_x_input" if method == "saliency" else None, k=None if method == "finetune" else 3,
                     alpha=0.0 if method == "finetune" else 0.3)
            (folder / "predictions-test.jsonl").write_text("".join(json.dumps({"index": i, "correct": c}) + "\n" for i, c in enumerate(correct)))
    assert main([str(sweep), "--out", str(tmp_path / "vs-random"), "--reference", "random"]) == 0
    report = json.loads((tmp_path / "vs-random" / "report.json").read_text())
    by_method = {r["method"]: r for r in report["rows"]}
    assert report["reference"] == "random" and by_method["random"]["vs_reference"] is None
    assert by_method["saliency"]["vs_reference"]["reference"] == "random"
    assert by_method["saliency"]["vs_reference"]["difference"] == pytest.approx(0.1 / 3)  # +0.04, +0.03, +0.03 over the seeds
    assert by_method["finetune"]["vs_reference"]["difference"] == pytest.approx(0.0133, abs=1e-4)
    assert "| vs random, seed level: difference [95% t CI], p |" in (tmp_path / "vs-random" / "table.md").read_text()
    assert main([str(sweep), "--out", str(tmp_path / "typo"), "--reference", "randm"]) == 2 and not (tmp_path / "typo").exists()


def test_a_grid_point_is_named_by_its_alpha_and_overrides_or_as_the_defaults():
    from kdlight.reports.report import setting_label

    assert setting_label({"alpha": 0.3, "variant": ""}) == "alpha 0.3"
    assert setting_label({"alpha": 0.0, "variant": "method.distillation.weight=0.1"}) == "method.distillation.weight=0.1"
    assert setting_label({"alpha": 0.0, "variant": ""}) == "defaults"  # not "alpha 0": the weight of attribution_match's default run

"""The attribution study's pieces: the command each study run gets, and its quality table."""

from __future__ import annotations

from omegaconf import OmegaConf

from kdlight.reports.study import quality_table, study_overrides


def test_a_study_run_gets_the_sweeps_command_without_the_swept_keys():
    config = OmegaConf.create({"hydra": {
        "sweeper": {"params": {"method": "finetune,saliency", "seed": "0,1,2"}},
        "overrides": {"task": ["threads=1", "method=finetune", "seed=0", "dataset.train_size=200"]},
        "runtime": {"choices": {"experiment": "minilm_cqa"}},
    }})
    assert study_overrides(config) == ["experiment=minilm_cqa", "threads=1", "dataset.train_size=200"]


def quality(compr: float, auprc: float) -> dict:
    by_k = {"5": {"comprehensiveness": compr, "sufficiency": 0.3, "plausibility_f1": 0.4, "auprc": auprc}}
    groups = {"partial": {"examples": 44}, "whole": {"examples": 18, "5": {"f1": 0.5}, "auprc": 0.8}}
    return {"sources": {"teacher": by_k, "random": {"5": {"comprehensiveness": 0.01, "sufficiency": 0.5, "plausibility_f1": 0.2,
                                                         "auprc": 0.3}}},
            "aopc": {"teacher": {"comprehensiveness": compr, "sufficiency": 0.2}, "random": {"comprehensiveness": 0.0, "sufficiency": 0.4}},
            "examples": 64, "plausibility": {"teacher": groups, "random": groups}}


def test_the_quality_table_has_a_row_per_method_and_the_random_reference():
    study = {"rows": 128, "methods": {"grad_x_input": {"splits": {"train": {"seconds": 17.3}}, "quality": quality(0.044, 0.4675)},
                                      "occlusion": {"splits": {"train": {"seconds": 250.0}}, "quality": quality(0.12, 0.41)}}}
    table = quality_table(study, 5).splitlines()
    assert table[0].startswith("| method | comprehensiveness, k=5 |") and "CoS-E F1, k=5 (44 rows)" in table[0]
    assert table[2] == "| grad_x_input | 0.044 | 0.300 | 0.044 / 0.200 | 0.400 | 0.468 | 0.500 / 0.800 | 17 s |"
    assert table[3].startswith("| occlusion | 0.120 |") and table[4].startswith("| 5 random words | 0.010 | 0.500 | 0.000 / 0.400 | 0.200 | 0.300 |")

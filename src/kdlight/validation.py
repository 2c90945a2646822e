"""Validation of a composed config: every value that cannot work is named in one line (ConfigError)
before any model or data is loaded, and, from the command line, before Hydra makes a run folder.
The training method checks its own node (kdlight.methods)."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from kdlight.attribution.settings import check_shared
from kdlight.compose import compose_config
from kdlight.config import ConfigError, config_groups, group_options
from kdlight.data.files import missing_files
from kdlight.data.readers import missing_release
from kdlight.data.tasks import TaskWords, dataset_task
from kdlight.methods import training_method
from kdlight.models.loading import hub_hint, is_local, placement_problem, source_problem
from kdlight.models.lora import check_peft, lora_settings
from kdlight.training.losses import ALPHA_SCHEDULES, alpha_problem, first_alpha_problem
from kdlight.utils.hub import hub_endpoint, hub_offline_mode, require_reachable
from kdlight.utils.runtime import resolve_threads


def unknown_keys(overrides: list[str], config_name: str = "train") -> list[str]:
    """`key=value` overrides naming no key of the composed config (Hydra: "Key ... is not in struct"), every
    one of the command at once, each with the closest existing keys. Composes the command once without
    each such override until it composes (a handful of compositions, a fraction of a second each)."""
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


CHECKPOINT_POLICIES = ("best", "all")  # what a finished run keeps (kdlight.run.finish_checkpoints)


def validate_config(cfg: DictConfig, methods: bool = True) -> None:
    """Reject a config that cannot work, before any model or data is loaded. `methods=False` leaves
    out the attribution method's own settings (checking them imports the registry, and torch)."""
    for group in ("dataset", "method"):
        if cfg.get(group) is None:
            raise ConfigError(f"{group} is not set; use one of {group_options(group)}")
    method = training_method(cfg.method)  # an unknown method.name is named with the registered ones
    check_trainer(cfg.get("trainer"))
    if cfg.get("checkpoints", "best") not in CHECKPOINT_POLICIES:
        raise ConfigError(f"checkpoints={cfg.get('checkpoints')!r} is not accepted; use one of {list(CHECKPOINT_POLICIES)}")
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed={seed!r} is not accepted; use an integer")
    try:
        resolve_threads(cfg.get("threads", "auto"))
    except ValueError as err:
        raise ConfigError(str(err)) from None

    try:
        TaskWords(position=cfg.dataset.get("task_word", TaskWords.position))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    student = cfg.get("student") or {}
    problem = alpha_problem(cfg.get("alpha")) or first_alpha_problem(
        ((f"student.{key}", student.get(key)) for key in ("alpha_start", "alpha_end")), nullable=True)
    if problem:
        raise ConfigError(problem)
    schedule = student.get("alpha_schedule", "constant")
    if schedule not in ALPHA_SCHEDULES:
        raise ConfigError(f"student.alpha_schedule={schedule!r} is not accepted; use one of {list(ALPHA_SCHEDULES)}")
    method.check(cfg.attribution)
    if method.extracts():
        check_attribution(cfg.attribution, method=methods)
    check_model_scale(cfg)


def check_model_scale(cfg: DictConfig) -> None:
    """LoRA, quantization and device placement settings: named when wrong, and refused before any work
    where this machine cannot honour them."""
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
    if teacher and training_method(cfg.method).uses_teacher():
        problem = placement_problem(teacher.get("quantization", "none"), teacher.get("device_map"),
                                    OmegaConf.select(teacher, "model._target_", default=None), cfg.get("trainer") or {})
        if problem:
            raise ConfigError(problem)


def check_teacher_command(cfg: DictConfig) -> None:
    """A teacher-only command (kdlight-attribute) runs the checks train.py runs for its teacher: attribution
    settings, quantization and placement, and every path (model, tokenizer, data), before any work."""
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
    try:
        check_shared(attribution)
        if method:
            from kdlight.attribution import method_from_settings  # lazy: off the config check's import path (tests/test_train.py)

            method_from_settings(attribution)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def checked_roles(cfg: DictConfig, roles: tuple[str, ...]) -> list[str]:
    """The roles whose models a command's checks read: the teacher only where the method uses it, or when
    the command is the teacher's alone (kdlight-attribute)."""
    uses_teacher = roles == ("teacher",) or training_method(cfg.method).uses_teacher()
    return [role for role in roles if role != "teacher" or uses_teacher]


def path_problems(cfg: DictConfig, roles: tuple[str, ...] = ("student", "teacher"), data: bool = True) -> list[str]:
    """Every path of the command that cannot work (model and tokenizer folders, and with `data` the
    data, whose check imports the datamodule), one line each, found without loading anything. The
    teacher counts only where the method needs it."""
    problems = []
    for role in checked_roles(cfg, roles):
        node = cfg.get(role)
        if node is None:
            continue
        model_name = OmegaConf.select(node, "model.name_or_path", default=None)
        for part, what in (("model", "model"), ("tokenizer", "tokenizer")):
            name = OmegaConf.select(node, f"{part}.name_or_path", default=None)
            if isinstance(name, str) and (part == "model" or name != model_name):
                problems.append(source_problem(f"{role}.{part}.name_or_path", name, what))
    dataset = cfg.get("dataset")
    if data and dataset is not None and dataset.get("source") == "files":
        problems += missing_files([(f"dataset.{key}", dataset.get(key)) for key in ("path", "train", "valid", "test")])
    if data and dataset is not None and dataset.get("source") == "dsbs" and dataset.get("root"):

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
    if "student" in roles and (cfg.get("export") or {}).get("push_to_hub") and not hub_offline_mode():
        require_reachable(hub_endpoint(), "the Hugging Face hub to push the trained student to (export.push_to_hub=true)",
                          "train with export.push_to_hub=false and push <run>/student later from a connected machine.", timeout=5.0)
    nodes = [(role, cfg.get(role)) for role in checked_roles(cfg, roles)]
    for role, node in nodes:
        name = OmegaConf.select(node, "model.name_or_path", default=None) if node is not None else None
        if not isinstance(name, str) or is_local(name) or hub_offline_mode():
            continue
        require_reachable(hub_endpoint(), f"the {role} model {name!r} from the Hugging Face hub", hub_hint("model"), timeout=5.0)

"""The Hydra entry points behind `train.py` / `kdlight-train` and `eval.py` / `kdlight-eval`.

Before Hydra makes a run folder, the command's config (every job's, for a multirun) is composed
and validated: a bad value fails in about a second with one line naming the key, no traceback and
no folder left behind; the thread settings reach the environment before torch is imported.
"""

from __future__ import annotations

import sys
from itertools import islice
from pathlib import Path

import hydra
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from kdlight.compose import compose_config
from kdlight.config import ConfigError, config_dir, other_checkout_warning, unknown_group_options, unquoted_sweep_lists
from kdlight.errors import user_errors
from kdlight.identity import finished_run
from kdlight.methods import training_method
from kdlight.trust import RefusedArtifact, check_weights_format, load_checkpoint
from kdlight.utils.hub import HubUnavailableError
from kdlight.utils.plugins import load_plugins, searchpath_overrides
from kdlight.utils.results import already_finished_message
from kdlight.utils.runtime import export_threads
from kdlight.validation import check_attribution, check_paths, check_sources, path_problems, unknown_keys, validate_config

HYDRA_FLAGS_WE_CHECK = ("-m", "--multirun")


def job_overrides(overrides: list[str], sweeper_params: dict | None) -> list[list[str]]:
    """Override lists covering every value of every swept key (each value once, the other keys at
    their first value): what a multirun's jobs can be, without the full grid."""
    parser = OverridesParser.create()
    fixed, swept = [], {}
    extra = [f"{key}={value}" for key, value in (sweeper_params or {}).items()]
    for override in parser.parse_overrides(overrides + extra):
        if override.is_sweep_override():
            try:
                swept[override.get_key_element()] = list(islice(override.sweep_string_iterator(), 64))
            except Exception:  # noqa: BLE001 - intervals (Optuna) have no values to list
                continue
        else:
            fixed.append(override.input_line)
    if not swept:
        return [fixed]
    firsts = {key: values[0] for key, values in swept.items()}
    jobs = []
    for key, values in swept.items():
        for value in values:
            jobs.append(fixed + [f"{k}={value if k == key else v}" for k, v in firsts.items()])
    return jobs


def validate_eval_config(cfg, methods: bool = True) -> None:
    from kdlight.commands.evaluate import SPLITS  # lazy: off the config check's import path (tests/test_train.py)

    if cfg.split not in SPLITS:
        raise ConfigError(f"split={cfg.split!r} is not accepted; use one of {list(SPLITS)}")
    ckpt = Path(str(cfg.ckpt_path))
    if not ckpt.exists():
        raise ConfigError(f"ckpt_path={cfg.ckpt_path} does not exist; pass <run>/checkpoints/<name>.ckpt or an exported <run>/student")
    from kdlight.commands.evaluate import run_dataset_config  # lazy: off the config check's import path (tests/test_train.py)

    if ckpt.is_dir():  # what a shared artifact holds is data: refused here, before any folder is made
        check_weights_format(ckpt)
    else:
        load_checkpoint(ckpt, mmap=True)
    if not cfg.get("dataset"):
        run_dataset_config(ckpt)


VALIDATORS = {"train": validate_config, "eval": validate_eval_config}


def prevalidate(argv: list[str], config_name: str = "train") -> int | None:
    """None: go on; 0: nothing to do (a finished run); 2: the config cannot work (the message was printed)."""
    typos = unknown_group_options([a for a in argv if not a.startswith("-")]) + unquoted_sweep_lists(argv)
    if typos:  # before Hydra's own error, which lists the private bases and guesses nothing
        print("error: " + "\nerror: ".join(typos), file=sys.stderr)
        return 2
    if any(a.startswith("-") and a not in HYDRA_FLAGS_WE_CHECK for a in argv):
        return None  # --help, --cfg, --info ...: Hydra's own business

    overrides = [a for a in argv if not a.startswith("-")]
    try:
        jobs = job_overrides(overrides, None)  # a sweep's first job composes like a single run
        base = compose_config(jobs[0], config_name=config_name)
        try:
            export_threads(base.get("threads", "auto"))  # before torch is imported, also for child processes
        except ValueError:
            pass  # validate_config names it
        multirun = any(a in HYDRA_FLAGS_WE_CHECK for a in argv) or OmegaConf.select(base, "hydra.mode") == "MULTIRUN"
        if multirun:
            params = OmegaConf.to_container(base.hydra.sweeper.params) if base.hydra.sweeper.get("params") else None
            jobs = job_overrides(overrides, params)
        else:
            jobs = [overrides]
        composed = [base if job == jobs[0] and not multirun else compose_config(job, config_name=config_name) for job in jobs]
        for cfg in composed:
            VALIDATORS[config_name](cfg, methods=False)
        if config_name == "train" and not multirun and base.get("resume", True):
            run_dir = Path(OmegaConf.select(base, "hydra.run.dir"))
            if finished_run(base, run_dir) is not None:  # before Hydra writes a byte into the folder
                print(already_finished_message(run_dir), file=sys.stderr)
                return 0
        if config_name == "train":
            if not any(path_problems(cfg, data=False) for cfg in composed):  # a missing folder is not a hub outage
                check_sources(base)  # an unreachable hub fails here, before torch is imported
            check_paths(composed)  # every wrong path at once, the data's too (its check imports the datamodule)
            for cfg in composed:  # the attribution registry imports torch
                if training_method(cfg.method).extracts():
                    check_attribution(cfg.attribution)
    except (ConfigError, HubUnavailableError, RefusedArtifact) as err:  # one line, no traceback, no run folder
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OmegaConfBaseException as err:
        cause = config_error_in(err)  # raised by one of kdlight's resolvers (e.g. a missing weights package)
        if cause is not None:
            print(f"error: {cause}", file=sys.stderr)
            return 2
        return None  # Hydra reports it
    except HydraException:
        typos = unknown_keys(overrides, config_name)  # every unknown key of the command, each with the closest ones
        if typos:
            print("error: " + "\nerror: ".join(typos), file=sys.stderr)
            return 2
        return None  # other composition errors: Hydra reports them
    finally:
        GlobalHydra.instance().clear()
    return None


def config_error_in(err: BaseException) -> ConfigError | None:
    """The ConfigError an exception wraps (OmegaConf re-raises a resolver's error inside its own)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, ConfigError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _train(cfg):
    load_plugins(cfg.get("plugins") or [])  # in the job's own process too (launchers start fresh ones)
    from kdlight.run import run  # lazy: off the config check's import path (tests/test_train.py)

    try:
        return run(cfg)
    except user_errors() as err:  # found once data or models are loaded (a bad row, a vocabulary logit_kd cannot compare)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def _evaluate(cfg):
    from kdlight.commands.evaluate import evaluate  # lazy: off the config check's import path (tests/test_train.py)

    load_plugins(cfg.get("plugins") or [])
    try:
        return evaluate(cfg)
    except user_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def _main(task, config_name: str) -> None:
    warning = other_checkout_warning()  # an editable install of another checkout would silently read its configs
    if warning:
        print(warning, file=sys.stderr)

    try:
        sys.argv += searchpath_overrides(sys.argv[1:])  # the plugins' YAML folders join Hydra's search path
    except (ImportError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    code = prevalidate(sys.argv[1:], config_name)
    if code is not None:
        sys.exit(code)
    hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=config_name)(task)()


def main() -> None:
    """kdlight-train / train.py"""
    _main(_train, "train")


def quote_paths(argv: list[str], keys: tuple[str, ...] = ("ckpt_path",)) -> list[str]:
    """Run folders are named after their overrides (`k=3,seed=1`), which Hydra's override grammar
    would parse: such path values are quoted for the user."""
    quoted = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in keys and value and value[0] not in "'\"":
            value = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        quoted.append(f"{key}{sep}{value}" if sep else arg)
    return quoted


def eval_main() -> None:
    """kdlight-eval / eval.py"""
    sys.argv[1:] = quote_paths(sys.argv[1:])
    _main(_evaluate, "eval")


if __name__ == "__main__":
    main()

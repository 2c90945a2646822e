"""W&B lineage: one job type per stage, readable run names, artifacts, and resumed runs.

- job types: `extract` (the teacher's rationales), `teacher-finetune`, `train` (the student), `eval`;
- run names: `<dataset>-<method>[-k<k>]-a<alpha>-s<seed>` (and the stage for the teacher's runs);
- the rationale cache is logged as an artifact by reference (it can be large) by the run that
  extracted it and used by every student that learned from it; the exported student is logged as a
  `model` artifact (by reference) and used by `eval`;
- a run folder keeps its W&B run id (wandb_id.txt), so a resumed job continues the same W&B run.
Everything here is a no-op unless the config has a `wandb` logger.
"""

from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path
from typing import Any

import wandb
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

from kdlight.identity import run_identity
from kdlight.utils.loggers import finish_wandb

log = logging.getLogger(__name__)

ID_FILE = "wandb_id.txt"


def wandb_node(cfg: DictConfig) -> DictConfig | None:
    loggers = cfg.get("logger") or {}
    return loggers.get("wandb") if isinstance(loggers, DictConfig) else None


def run_name(cfg: DictConfig, stage: str | None = None) -> str:
    identity = run_identity(cfg)
    if stage in ("extract", "teacher-finetune"):
        return f"{stage}-{identity['dataset']}-{cfg.teacher.name}-{cfg.attribution.get('method', 'grad_x_input')}"
    return name_of(identity)


def name_of(identity: dict) -> str:
    """`<dataset>-<method>[-<attribution>][-k<k>]-a<alpha>-s<seed>` from a run's identity (or results.json)."""
    k, attribution = identity.get("k"), identity.get("attribution")
    return (
        f"{identity['dataset']}-{identity['method']}" + (f"-{attribution}" if attribution else "")
        + (f"-k{k}" if k is not None else "") + f"-a{float(identity['alpha']):g}-s{identity['seed']}"
    )


def run_tags(user_tags, identity: dict) -> list[str]:
    """The user's tags plus dataset, method, k (only where the method uses it), alpha, seed, and the
    attribution method where the teacher's words are used."""
    tags = [str(t) for t in (user_tags or [])]
    tags += [f"dataset={identity['dataset']}", f"method={identity['method']}", f"alpha={identity['alpha']}", f"seed={identity['seed']}"]
    if identity.get("k") is not None:
        tags.append(f"k={identity['k']}")
    if identity.get("attribution") is not None:
        tags.append(f"attribution={identity['attribution']}")
    return tags


def persistent_id(output_dir: str | Path) -> str:
    """This run folder's W&B run id, created once (a resumed job continues the same W&B run)."""
    path = Path(output_dir) / ID_FILE
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    run_id = secrets.token_hex(4)
    path.write_text(run_id + "\n")
    return run_id


def wandb_logger(cfg: DictConfig, job_type: str, output_dir: str | Path | None = None, name: str | None = None):
    """The configured WandbLogger for one stage; with output_dir, its run id persists there."""
    node = wandb_node(cfg)
    if node is None:
        return None
    extra: dict[str, Any] = {"job_type": job_type, "name": name or run_name(cfg, job_type),
                             "tags": run_tags(node.get("tags"), run_identity(cfg))}
    if output_dir is not None:
        extra.update(id=persistent_id(output_dir), resume="allow")
    return instantiate(node, **extra)


def cache_artifact(cache, summary: dict | None = None):
    """A rationale cache folder as a W&B artifact, by reference (its files stay where they are)."""
    fields = cache.fields
    artifact = wandb.Artifact(
        name=f"rationales-{fields['dataset']}-{fields['split']}-{fields['teacher']}-{cache.key[:12]}",
        type="rationale-cache",
        metadata={"key": cache.key, "attribution": fields.get("attribution"), **(summary or {})},
    )
    artifact.add_reference(Path(cache.path).resolve().as_uri(), checksum=False)
    return artifact


def model_artifact(path: str | Path, name: str, metadata: dict):
    artifact = wandb.Artifact(name=re.sub(r"[^A-Za-z0-9._-]", "_", f"student-{name}"), type="model", metadata=metadata)
    artifact.add_reference(Path(path).resolve().as_uri(), checksum=False)
    return artifact


def log_extraction(cfg: DictConfig, caches: dict, info: dict) -> None:
    """An `extract` run that outputs the caches computed now (cache hits were logged by the job that made them)."""
    if wandb_node(cfg) is None or not any(not s["cache_hit"] for s in info.get("splits", {}).values()):
        return
    logger = wandb_logger(cfg, "extract")
    run = logger.experiment
    run.config.update({"attribution": OmegaConf.to_container(cfg.attribution, resolve=True), "teacher": cfg.teacher.name},
                      allow_val_change=True)
    for split, cache in caches.items():
        summary = info["splits"][split]
        run.summary.update({f"{split}/{key}": value for key, value in summary.items() if isinstance(value, (int, float))})
        if not summary["cache_hit"]:
            run.log_artifact(cache_artifact(cache, summary))
    finish_wandb()


def use_artifacts(run, artifacts: list) -> None:
    """Link a run to its inputs. W&B refuses use_artifact offline; there the run's config names them
    (`inputs`), and the link is made when the run is resumed or re-run online."""
    if not artifacts:
        return
    if getattr(run.settings, "mode", None) == "offline" or run.offline:
        run.config.update({"inputs": [a.name for a in artifacts]}, allow_val_change=True)
        return
    for artifact in artifacts:
        run.use_artifact(artifact)


def use_caches(trainer, caches: dict) -> None:
    """Link the student's run to the caches it learned from."""
    for logger in wandb_loggers(trainer):
        use_artifacts(logger.experiment, [cache_artifact(cache) for cache in caches.values()])


def wandb_loggers(trainer) -> list:
    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]

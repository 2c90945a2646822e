"""Running the real command lines in subprocesses, with tiny models, one thread, no network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

# Generous hang guards only: a correct run on a busy machine must never hit them.
HANG_GUARD = 1800

TINY = [
    "teacher=tiny", "student=tiny", "trainer=cpu", "dataset.max_rows=24", "dataset.batch_size=8",
    "dataset.eval_batch_size=12", "trainer.max_steps=4", "trainer.val_check_interval=2", "attribution.batch_size=8",
    "trainer.log_every_n_steps=1", "teacher.model.d_model=32", "teacher.model.d_ff=64", "student.model.d_model=32",
    "student.model.d_ff=64", "student.max_new_tokens=8", "dataset.max_input_length=128", "threads=1",
]


def clean_env(tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB", "HF_"))}
    return {**env, "HF_ENDPOINT": "http://127.0.0.1:9", "WANDB_MODE": "disabled", "WANDB_DIR": str(tmp_path), **extra}


def command(script: str, tmp_path: Path, *overrides: str, env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    """`python <script> ...` with outputs and caches under tmp_path."""
    paths = [f"paths.log_dir={tmp_path / 'outputs'}", f"paths.cache_dir={tmp_path / 'cache'}"] if script.endswith(".py") else []
    flags = [o for o in overrides if o in ("-m", "--multirun")]  # Hydra wants its flags before the overrides
    return subprocess.run(
        [sys.executable, script, *flags, *paths, *[o for o in overrides if o not in flags]], cwd=REPO_ROOT, capture_output=True, text=True, timeout=HANG_GUARD,
        env=env or clean_env(tmp_path), input=stdin,
    )


def train(tmp_path: Path, *overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return command("train.py", tmp_path, *overrides, env=env)


def results_of(tmp_path: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "outputs").rglob("results.json"))]


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline W&B run file (run-*.wandb): a 7-byte W&B header, then
    LevelDB-log framing (32 KiB blocks; each chunk: crc32, length, type FULL/FIRST/MIDDLE/LAST)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    records, pending, position, block = [], b"", 7, 32768
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        length = int.from_bytes(data[position + 4 : position + 6], "little")
        kind = data[position + 6]
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 0 and length == 0:
            continue
        pending += chunk
        if kind in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records

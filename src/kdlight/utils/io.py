"""Small file helpers: every write goes to a temporary path and is renamed into place.

Files get the permissions the process's umask gives any new file (0644 under the usual 022), not
mkstemp's private 0600: results, caches and reports stay readable to teammates on a shared server.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock

T = TypeVar("T")


def current_umask() -> int:
    """The process's umask (read without changing it where /proc tells it)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    A crash or exception leaves `path` untouched (either absent or its previous content). The block
    may replace the temporary file by a directory (unlink it first), which is then renamed whole,
    also over an existing directory (moved aside first: rename cannot replace a non-empty one).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():
            os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp made it private
        if tmp_path.is_dir() and target.is_dir():
            previous = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, previous)
            try:
                os.replace(tmp_path, target)
            except BaseException:
                os.replace(previous, target)
                raise
            shutil.rmtree(previous)
        else:
            os.replace(tmp_path, target)
    finally:
        if tmp_path.is_dir():
            shutil.rmtree(tmp_path)
        elif tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


LOCKS_DIR = ".locks"


@contextmanager
def folder_lock(folder: str | os.PathLike, timeout: float = -1) -> Iterator[None]:
    """An inter-process lock for building `folder`: its file lives in `.locks/` beside it, where a glob
    over the sibling folders (`cache/rationales/cqa-train-*`) does not catch it."""
    folder = Path(folder)
    locks = folder.parent / LOCKS_DIR
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{folder.name}.lock"), timeout=timeout):
        yield


def json_digest(value: Any, length: int | None = None, sort_keys: bool = True) -> str:
    """The sha256 of `value`'s JSON (keys sorted, anything else written with str), its first `length` hex
    digits: every cache key of kdlight (features, examples, rationale caches, fine-tuned teachers, quality)."""
    digest = hashlib.sha256(json.dumps(value, sort_keys=sort_keys, default=str).encode()).hexdigest()
    return digest if length is None else digest[:length]


def build_once(done: Callable[[], bool], lock: Callable[[], AbstractContextManager], build: Callable[[], T],
               locking: bool = True) -> T | None:
    """Check, lock, check again, build: what another job finished while this one waited for the lock is not
    built twice. None when it was there; `locking=False` (a DDP worker process) builds without the lock."""
    if done():
        return None
    with lock() if locking else nullcontext():
        if done():
            return None
        return build()

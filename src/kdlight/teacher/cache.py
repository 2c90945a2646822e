"""The rationale cache: each example's top `max_k` ranked units, computed once per
(dataset, split, teacher, prompt, attribution settings) and reused by every k.

Layout, one folder per key under <cache_dir>/rationales/:
    <dataset>-<split>-<teacher>-<key>/
        key.json                 what the key was computed from
        shard-<batch>.parquet    rows of one batch (written atomically, one per batch)
        manifest.json            written last: rows, shards with row counts and sha256 checksums
key.json also records the resolved dataset config (not part of the key), so that
`kdlight-analyze <cache folder>` can load the examples the rows belong to.
A folder without a manifest is an interrupted extraction: its readable shards are kept and the
rest is computed. A manifest whose shards do not match it is corruption: warned about, rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock

from kdlight.io import atomic_path, write_json

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
SCHEMA = pa.schema(
    [
        ("row", pa.int64()),  # index of the example in its split
        ("id", pa.string()),
        ("n_tokens", pa.int32()),  # prompt length in tokens (after truncation)
        ("n_eligible", pa.int32()),  # units that could be chosen
        ("texts", pa.list_(pa.string())),  # ranked units, best first (at most max_k)
        ("scores", pa.list_(pa.float32())),
        ("starts", pa.list_(pa.int32())),  # character spans of the units in the teacher prompt
        ("ends", pa.list_(pa.int32())),
        ("unit_starts", pa.list_(pa.int32())),  # every eligible unit in input order (for views)
        ("unit_ends", pa.list_(pa.int32())),
        ("unit_scores", pa.list_(pa.float32())),
        ("teacher_answer", pa.string()),  # greedy answer when attribution.score_teacher, else null
        ("teacher_correct", pa.bool_()),
    ]
)


def rows_accuracy(rows: list[dict]) -> float | None:
    """Share of the scored rows (teacher_correct not null) whose answer was correct; None if none were scored."""
    scored = [r["teacher_correct"] for r in rows if r.get("teacher_correct") is not None]
    return round(sum(scored) / len(scored), 4) if scored else None


class CacheCorrupt(RuntimeError):
    pass


def cache_key(fields: dict) -> str:
    return hashlib.sha256(json.dumps({"format": FORMAT_VERSION, **fields}, sort_keys=True, default=str).encode()).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class RationaleCache:
    def __init__(
        self, root: str | Path, dataset: str, split: str, teacher: str, fields: dict, about: dict | None = None
    ) -> None:
        self.fields = {"dataset": dataset, "split": split, "teacher": teacher, **fields}
        self.about = dict(about or {})  # recorded in key.json, not hashed
        self.key = cache_key(self.fields)
        self.path = Path(root) / "rationales" / f"{dataset}-{split}-{teacher}-{self.key[:16]}"

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def shard_path(self, batch_id: int) -> Path:
        return self.path / f"shard-{batch_id:06d}.parquet"

    @contextmanager
    def lock(self, timeout: float = -1) -> Iterator[None]:
        """Held by the one job that computes; others wait here, then find the manifest."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock", timeout=timeout):
            yield

    # ------------------------------------------------------------ writing
    def prepare(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        if not (self.path / "key.json").is_file():
            write_json(self.path / "key.json", {"key": self.key, **self.fields, **self.about})

    def write_shard(self, batch_id: int, rows: list[dict]) -> None:
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
        with atomic_path(self.shard_path(batch_id), suffix=".parquet") as tmp:
            pq.write_table(table, tmp)

    def done_batches(self, n_batches: int) -> set[int]:
        """Batches whose shard is present and readable (an unreadable one is removed)."""
        done = set()
        for batch_id in range(n_batches):
            path = self.shard_path(batch_id)
            if not path.is_file():
                continue
            try:
                pq.read_metadata(path)
                done.add(batch_id)
            except Exception:  # noqa: BLE001 - any unreadable shard is recomputed
                log.warning("rationale cache: unreadable shard %s is removed and recomputed", path)
                path.unlink()
        return done

    def write_manifest(self, n_batches: int, n_rows: int) -> None:
        shards, total = [], 0
        for batch_id in range(n_batches):
            path = self.shard_path(batch_id)
            rows = pq.read_metadata(path).num_rows
            total += rows
            shards.append({"file": path.name, "rows": rows, "sha256": _sha256(path)})
        if total != n_rows:
            raise CacheCorrupt(f"{self.path}: shards hold {total} rows, expected {n_rows}")
        write_json(self.manifest_path, {"key": self.key, "rows": n_rows, "format": FORMAT_VERSION, "shards": shards})

    # ------------------------------------------------------------ reading
    @classmethod
    def open(cls, path: str | Path) -> "RationaleCache":
        """An existing cache folder, read back from its key.json (for analysis)."""
        path = Path(path)
        try:
            described = json.loads((path / "key.json").read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CacheCorrupt(f"{path} is not a rationale cache folder (no readable key.json: {err})") from err
        key = described.pop("key")
        about = {name: described.pop(name) for name in ("dataset_config",) if name in described}
        dataset, split, teacher = described.pop("dataset"), described.pop("split"), described.pop("teacher")
        cache = cls(path.parent.parent, dataset, split, teacher, described, about)
        if cache.key != key or cache.path != path:
            raise CacheCorrupt(f"{path}: key.json does not reproduce its key")
        return cache

    def verify(self) -> dict:
        """The manifest, after checking every shard's row count and checksum; CacheCorrupt if not."""
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CacheCorrupt(f"{self.manifest_path}: unreadable manifest ({err})") from err
        if manifest.get("key") != self.key or manifest.get("format") != FORMAT_VERSION:
            raise CacheCorrupt(f"{self.manifest_path}: key or format does not match")
        for shard in manifest["shards"]:
            path = self.path / shard["file"]
            if not path.is_file() or _sha256(path) != shard["sha256"]:
                raise CacheCorrupt(f"{path}: missing or its checksum does not match the manifest")
        if sum(s["rows"] for s in manifest["shards"]) != manifest["rows"]:
            raise CacheCorrupt(f"{self.manifest_path}: shard row counts do not add up")
        return manifest

    def is_complete(self) -> bool:
        """True for a verified cache; a corrupt one is reported, removed, and False returned."""
        if not self.manifest_path.is_file():
            return False
        try:
            self.verify()
            return True
        except CacheCorrupt as err:
            log.warning("rationale cache is corrupt and will be rebuilt: %s", err)
            shutil.rmtree(self.path, ignore_errors=True)
            return False

    def read(self) -> list[dict]:
        """All rows, in split order."""
        manifest = self.verify()
        tables = [pq.read_table(self.path / s["file"], schema=SCHEMA) for s in manifest["shards"]]
        rows = pa.concat_tables(tables).to_pylist() if tables else []
        rows.sort(key=lambda r: r["row"])
        if [r["row"] for r in rows] != list(range(manifest["rows"])):
            raise CacheCorrupt(f"{self.path}: rows are missing or repeated")
        return rows

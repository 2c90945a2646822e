"""The rationale cache: each example's top `max_k` ranked units (and every eligible unit's score),
computed once per (examples, teacher, prompt, attribution settings) and reused by every k.

Layout, one folder per key under <cache_dir>/rationales/ (format 3):
    <dataset>-<split>-<teacher>-<key>/
        key.json                  what the key was computed from (and, not hashed, where the
                                  examples and the teacher can be found again, for analysis)
        parts/part-*.parquet      while extracting: the rows of the batches flushed so far
        shard-00000.parquet ...   when complete: rows in split order, `shard_rows` per file
        manifest.json             written last: rows, shards (rows, first row, size, sha256), summary
A folder without a manifest is an interrupted extraction: its parts are kept and the missing
batches computed (a kill loses at most the batches since the last flush). The manifest's summary
(eligible-unit counts, teacher accuracy, method diagnostics) is computed from Arrow columns while
compacting, so a cache hit reads no rows. Shards are checked by size and modification time on
every open; a changed file is re-hashed, and a mismatch is corruption: reported and rebuilt.
Older formats are detected, reported and never read.

Read a cache: `RationaleCache.open(folder).to_pandas()` (or `.read()` for Python rows).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kdlight.utils.io import atomic_path, folder_lock, json_digest, write_json

log = logging.getLogger(__name__)

FORMAT_VERSION = 4  # 4: unit texts without surrounding punctuation
IDS = pa.list_(pa.int32())
SCHEMA = pa.schema([
    ("row", pa.int64()),  # index of the example in its split
    ("id", pa.string()),
    ("n_tokens", pa.int32()),  # prompt length in tokens (after truncation)
    ("n_eligible", pa.int32()),  # units that could be chosen
    ("texts", pa.list_(pa.string())),  # ranked units, best first (at most max_k)
    ("scores", pa.list_(pa.float32())),
    ("starts", IDS),  # character spans of the ranked units in the teacher prompt
    ("ends", IDS),
    ("unit_starts", IDS),  # every eligible unit in input order (for views and quality measures)
    ("unit_ends", IDS),
    ("unit_scores", pa.list_(pa.float32())),
    ("teacher_answer", pa.string()),  # greedy answer when attribution.score_teacher, else null
    ("teacher_correct", pa.bool_()),
    ("completeness_gap", pa.float32()),  # integrated gradients: sum(attributions) - (F(x) - F(baseline))
])


class CacheCorrupt(RuntimeError):
    pass


class CacheFormatError(RuntimeError):
    """A cache folder written by another kdlight version's format."""


def cache_key(fields: dict) -> str:
    return json_digest({"format": FORMAT_VERSION, **fields})


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_entry(path: Path) -> dict:
    stat = path.stat()
    return {"file": path.name, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": _sha256(path)}


class PartWriter:
    """Buffers finished rows and writes them as one part file per flush (atomically)."""

    def __init__(self, cache: RationaleCache, rank: int) -> None:
        self.cache, self.rank, self.rows = cache, rank, []

    def add(self, rows: list[dict]) -> None:
        self.rows.extend(rows)

    def flush(self) -> None:
        if not self.rows:
            return
        path = self.cache.parts_dir / f"part-r{self.rank}-{time.time_ns()}.parquet"
        table = pa.Table.from_pylist(self.rows, schema=self.cache.part_schema)
        with atomic_path(path, suffix=".parquet") as tmp:
            pq.write_table(table, tmp)
        self.rows = []


class RationaleCache:
    # What a row holds and where such caches live; a cache of other rows (kdlight.teacher.generate's
    # generated rationales) is a subclass with its own schema, folder and summary.
    schema: pa.Schema = SCHEMA
    folder: str = "rationales"

    def __init__(self, root: str | Path, dataset: str, split: str, teacher: str, fields: dict, about: dict | None = None) -> None:
        self.fields = {"dataset": dataset, "split": split, "teacher": teacher, **fields}
        self.about = dict(about or {})  # recorded in key.json, not hashed
        self.key = cache_key(self.fields)
        self.path = Path(root) / self.folder / f"{dataset}-{split}-{teacher}-{self.key[:16]}"
        self._verified: tuple | None = None  # (manifest stamp, manifest) once verified in this process
        self._shard: tuple | None = None  # (file, columns, table): the last shard read, for chunked reading

    @property
    def part_schema(self) -> pa.Schema:
        return self.schema.append(pa.field("batch_id", pa.int64()))

    def summary_builder(self):
        return _SummaryBuilder()

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def parts_dir(self) -> Path:
        return self.path / "parts"

    @contextmanager
    def lock(self, timeout: float = -1) -> Iterator[None]:
        """Held by the one job that computes; others wait here, then find the manifest."""
        with folder_lock(self.path, timeout):
            yield

    # ------------------------------------------------------------ writing
    def prepare(self) -> None:
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        if not (self.path / "key.json").is_file():
            write_json(self.path / "key.json", {"key": self.key, "format": FORMAT_VERSION, **self.fields, "about": self.about})

    def part_writer(self, rank: int) -> PartWriter:
        return PartWriter(self, rank)

    def _parts(self) -> list[Path]:
        return sorted(self.parts_dir.glob("part-*.parquet")) if self.parts_dir.is_dir() else []

    def done_batches(self) -> set[int]:
        """Batches whose rows are in a readable part (an unreadable one is removed)."""
        done: set[int] = set()
        for path in self._parts():
            try:
                done.update(pq.read_table(path, columns=["batch_id"]).column("batch_id").to_pylist())
            except Exception:  # noqa: BLE001 - any unreadable part is recomputed
                log.warning("rationale cache: unreadable part %s is removed and recomputed", path)
                path.unlink()
        return done

    def finalize(self, n_rows: int, shard_rows: int) -> dict:
        """Parts -> shards of `shard_rows` rows in split order, the summary, then the manifest."""
        parts = self._parts()
        ranges = []
        for path in parts:
            rows = pq.read_table(path, columns=["row"]).column("row")
            ranges.append((path, pc.min(rows).as_py(), pc.max(rows).as_py()) if len(rows) else (path, None, None))
        total = sum(pq.read_metadata(p).num_rows for p in parts)
        if total != n_rows:
            raise CacheCorrupt(f"{self.path}: parts hold {total} rows, expected {n_rows}")
        for old in self.path.glob("shard-*.parquet"):
            old.unlink()
        shards, stats = [], self.summary_builder()
        for number, first in enumerate(range(0, n_rows, shard_rows)):
            last = min(first + shard_rows, n_rows) - 1
            pieces = []
            for path, low, high in ranges:
                if low is None or high < first or low > last:
                    continue
                table = pq.read_table(path, schema=self.part_schema)
                rows = table.column("row")
                pieces.append(table.filter(pc.and_(pc.greater_equal(rows, first), pc.less_equal(rows, last))))
            table = pa.concat_tables(pieces).sort_by("row").drop_columns(["batch_id"]) if pieces else self.schema.empty_table()
            if table.num_rows != last - first + 1 or table.column("row").to_pylist() != list(range(first, last + 1)):
                raise CacheCorrupt(f"{self.path}: rows {first}-{last} are missing or repeated in the parts")
            stats.add(table)
            path = self.path / f"shard-{number:05d}.parquet"
            with atomic_path(path, suffix=".parquet") as tmp:
                pq.write_table(table, tmp)
            shards.append({**_file_entry(path), "rows": table.num_rows, "first_row": first})
        manifest = {"key": self.key, "format": FORMAT_VERSION, "rows": n_rows, "shards": shards, "summary": stats.summary()}
        write_json(self.manifest_path, manifest)
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        return manifest

    # ------------------------------------------------------------ reading
    @classmethod
    def open(cls, path: str | Path) -> RationaleCache:
        """An existing cache folder, read back from its key.json (for analysis)."""
        path = Path(path)
        try:
            described = json.loads((path / "key.json").read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CacheCorrupt(f"{path} is not a rationale cache folder (no readable key.json: {err})") from err
        found = described.pop("format", None) or _manifest_format(path)
        if found != FORMAT_VERSION:
            raise CacheFormatError(
                f"{path} is a rationale cache of format {found} (this kdlight reads format {FORMAT_VERSION}); "
                "extract it again (python -m kdlight.commands.attribute ...) - the old folder can be deleted"
            )
        key = described.pop("key")
        about = described.pop("about", {})
        dataset, split, teacher = described.pop("dataset"), described.pop("split"), described.pop("teacher")
        cache = cls(path.parent.parent, dataset, split, teacher, described, about)
        if cache.key != key or cache.path.name != path.name:
            raise CacheCorrupt(f"{path}: key.json does not reproduce its key")
        cache.path = path
        return cache

    def manifest(self) -> dict:
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CacheCorrupt(f"{self.manifest_path}: unreadable manifest ({err})") from err
        if manifest.get("format") != FORMAT_VERSION:
            raise CacheFormatError(f"{self.manifest_path}: format {manifest.get('format')}, this kdlight reads {FORMAT_VERSION}")
        if manifest.get("key") != self.key:
            raise CacheCorrupt(f"{self.manifest_path}: its key does not match the folder's")
        return manifest

    def verify(self) -> dict:
        """The manifest, after checking every shard: size and modification time as recorded, or else
        the content hash (a copied cache is re-hashed once and its manifest updated). CacheCorrupt if not.
        Checked once per process while the manifest is unchanged."""
        stamp = self._stamp()
        if self._verified is not None and self._verified[0] == stamp:
            return self._verified[1]
        manifest = self.manifest()
        touched = False
        for shard in manifest["shards"]:
            path = self.path / shard["file"]
            if not path.is_file() or path.stat().st_size != shard["bytes"]:
                raise CacheCorrupt(f"{path}: missing or its size does not match the manifest")
            if path.stat().st_mtime_ns != shard["mtime_ns"]:
                if _sha256(path) != shard["sha256"]:
                    raise CacheCorrupt(f"{path}: its checksum does not match the manifest")
                shard["mtime_ns"], touched = path.stat().st_mtime_ns, True
        if sum(s["rows"] for s in manifest["shards"]) != manifest["rows"]:
            raise CacheCorrupt(f"{self.manifest_path}: shard row counts do not add up")
        if touched:
            write_json(self.manifest_path, manifest)
        self._verified = (self._stamp(), manifest)
        return manifest

    def _stamp(self) -> tuple | None:
        try:
            stat = self.manifest_path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size, tuple(
            (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(self.path.glob("shard-*.parquet"))
        )

    def is_complete(self) -> bool:
        """True for a verified cache; a corrupt one is reported, removed, and False returned."""
        if not self.manifest_path.is_file():
            return False
        try:
            self.verify()
            return True
        except (CacheCorrupt, CacheFormatError) as err:
            log.warning("rationale cache is corrupt and will be rebuilt: %s", err)
            shutil.rmtree(self.path, ignore_errors=True)
            return False

    def siblings(self) -> list[Path]:
        """The other cache folders of the same dataset, split and teacher."""
        prefix = self.path.name.rsplit("-", 1)[0] + "-"
        return [folder for folder in self.path.parent.glob(prefix + "*") if folder.is_dir() and folder != self.path]

    def older_formats(self) -> list[Path]:
        """Folders of the same dataset, split and teacher written in an older format (never read)."""
        return [folder for folder in self.siblings() if _manifest_format(folder) not in (None, FORMAT_VERSION)]

    def made_by_other_code(self) -> list[Path]:
        """Folders of the same rows, teacher and settings whose attribution method had other code or
        another declared version (never read: the method changed since)."""
        def without_code(fields: dict) -> str:
            attribution = {k: v for k, v in (fields.get("attribution") or {}).items() if k not in ("code", "version")}
            return json.dumps({**fields, "attribution": attribution}, sort_keys=True, default=str)

        ours, found = without_code(self.fields), []
        for folder in self.siblings():
            try:
                theirs = json.loads((folder / "key.json").read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if without_code({k: v for k, v in theirs.items() if k not in ("key", "format", "about")}) == ours:
                found.append(folder)
        return found

    def tables(self, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """Shard by shard, only the columns asked for, in split order."""
        for shard in self.verify()["shards"]:
            yield pq.read_table(self.path / shard["file"], columns=columns, schema=self.schema)

    def rows_of(self, start: int, examples: list, columns: list[str]) -> list[dict]:
        """The rows of `examples` (a chunk of the split from row `start`), checked to be theirs by id."""
        rows = self.read_rows(start, start + len(examples), columns=["id", *columns])
        if [r["id"] for r in rows] != [ex.id for ex in examples]:
            raise RuntimeError(f"rationale cache {self.path} does not match the {self.fields['split']} examples "
                               f"(rows {start}-{start + len(examples)})")
        return rows

    def read_rows(self, start: int, stop: int, columns: list[str] | None = None) -> list[dict]:
        """Rows [start, stop) as dicts, reading only the shards and columns needed (the last shard read is
        kept, so reading a split chunk by chunk reads each shard once)."""
        pieces = []
        for shard in self.verify()["shards"]:
            first, count = shard["first_row"], shard["rows"]
            if first + count <= start or first >= stop:
                continue
            wanted = (shard["file"], tuple(columns or ()))
            if self._shard is None or self._shard[0] != wanted:
                self._shard = (wanted, pq.read_table(self.path / shard["file"], columns=columns, schema=self.schema))
            pieces.append(self._shard[1].slice(max(0, start - first), min(stop, first + count) - max(start, first)))
        return pa.concat_tables(pieces).to_pylist() if pieces else []

    def read(self, columns: list[str] | None = None) -> list[dict]:
        """All rows as Python dicts, in split order (small caches; use tables() or to_pandas() for large ones)."""
        return [row for table in self.tables(columns) for row in table.to_pylist()]

    def to_pandas(self, columns: list[str] | None = None):
        tables = list(self.tables(columns))
        return (pa.concat_tables(tables) if tables else self.schema.empty_table()).to_pandas()

    def summary(self, k: int | None) -> dict:
        """What the split's extraction gave, from the manifest alone (no rows are read)."""
        manifest = self.verify()
        stats = manifest["summary"]
        counts = {int(n): c for n, c in stats["n_eligible"].items()}
        return {
            "examples": manifest["rows"],
            "cache_path": str(self.path),
            "k": k,
            "rows_k_exceeds_eligible": None if k is None else sum(c for n, c in counts.items() if n < k),
            "teacher_accuracy": round(stats["correct"] / stats["scored"], 4) if stats["scored"] else None,
            **({"completeness_gap": stats["completeness_gap"]} if stats.get("completeness_gap") else {}),
        }


def _manifest_format(folder: Path) -> int | None:
    try:
        return json.loads((folder / "manifest.json").read_text()).get("format")
    except (OSError, json.JSONDecodeError):
        return None


class _SummaryBuilder:
    """Counts kept while compacting: eligible units per row, scored and correct answers, IG gaps."""

    def __init__(self) -> None:
        self.n_eligible: Counter = Counter()
        self.scored = self.correct = 0
        self.gaps: list[float] = []

    def add(self, table: pa.Table) -> None:
        self.n_eligible.update(table.column("n_eligible").to_pylist())
        correct = table.column("teacher_correct")
        self.scored += len(correct) - correct.null_count
        self.correct += int(pc.sum(correct.cast(pa.int64())).as_py() or 0)
        self.gaps += [g for g in table.column("completeness_gap").to_pylist() if g is not None]

    def summary(self) -> dict:
        gap = None
        if self.gaps:
            gap = {
                "examples": len(self.gaps), "mean": round(sum(self.gaps) / len(self.gaps), 6),
                "mean_abs": round(sum(abs(g) for g in self.gaps) / len(self.gaps), 6),
            }
        return {"n_eligible": {str(n): c for n, c in sorted(self.n_eligible.items())}, "scored": self.scored,
                "correct": self.correct, "completeness_gap": gap}


def split_cache(caches: Mapping[str, RationaleCache], split: str, reader: str) -> RationaleCache:
    """The split's rationale cache for `reader` (what reads it), or an error naming both."""
    if split not in caches:
        raise RuntimeError(f"no teacher rationale cache for split {split!r}; {reader} reads it: run the teacher stage first")
    return caches[split]

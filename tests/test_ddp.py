"""Two CPU processes (gloo): the teacher's extraction and the student's training, sharded, and features shared."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.helpers import HANG_GUARD, TINY, results_of, train

pytestmark = pytest.mark.slow


def test_extraction_shards_across_two_processes(tmp_path, release_root):
    out = subprocess.run(
        [
            sys.executable, "-m", "kdlight.commands.attribute", "dataset=cqa", f"paths.data_dir={release_root}", "teacher=tiny",
            "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", f"paths.cache_dir={tmp_path}",
            "attribution.batch_size=2", "attribution.chunk_rows=4", "attribution.shard_rows=5", "teacher.model.d_model=32",
            "teacher.model.d_ff=64", "threads=1",
        ],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=HANG_GUARD,
        env={**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "rank 0 of 2 finished" in out.stderr and "rank 1 of 2 finished" in out.stderr
    summary = json.loads(out.stdout)["splits"]["train"]
    assert summary["examples"] == 18 and summary["cache_hit"] is False
    manifest = json.loads(next(tmp_path.rglob("manifest.json")).read_text())
    assert manifest["rows"] == 18 and [s["rows"] for s in manifest["shards"]] == [5, 5, 5, 3]


def test_student_trains_on_two_processes(tmp_path, release_root):
    out = train(
        tmp_path, "dataset=cqa", f"paths.data_dir={release_root}", "method=random", *(o for o in TINY if o != "trainer=cpu"),
        "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = results_of(tmp_path)
    assert results["steps"] == 4 and results["status"] == "finished"


def _status(field: str) -> int:
    """A /proc/self/status memory field in bytes (RssAnon: private memory; RssFile: mapped file pages)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _rank_reads_features(rank: int, world: int, path: str, port: int, as_lists: bool, out: str) -> None:
    import torch.distributed as dist
    from torch.utils.data import DataLoader, DistributedSampler

    from kdlight.data.collate import TaskCollator
    from kdlight.data.features import FeatureRows
    from kdlight.data.store import open_table
    from kdlight.families import get_family

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    anon_before = _status("RssAnon")
    table = open_table(Path(path))
    rows = table.to_pylist() if as_lists else FeatureRows(table)  # the old way: every row as Python objects
    loader = DataLoader(rows, batch_size=64, sampler=DistributedSampler(rows, num_replicas=world, rank=rank),
                        collate_fn=TaskCollator(get_family("seq2seq"), 0))
    batches = sum(1 for _ in loader)
    Path(out).joinpath(f"rank{rank}.json").write_text(json.dumps({
        "batches": batches, "anon_growth": _status("RssAnon") - anon_before, "file_pages": _status("RssFile"),
    }))
    dist.barrier()
    dist.destroy_process_group()


def _features_file(path: Path, n: int) -> int:
    """A features file of n rows of 48 random token ids (built from numpy: quick); returns its size."""
    import numpy as np
    import pyarrow as pa

    from kdlight.data.features import feature_batch, write_features

    def ids(width: int):
        values = pa.array(np.random.default_rng(n).integers(5, 2000, n * width, dtype=np.int32))
        return pa.ListArray.from_arrays(pa.array(np.arange(0, n * width + 1, width, dtype=np.int32)), values)

    write_features([feature_batch({"index": pa.array(np.arange(n)), "label_text": ["label"] * n, "input_ids": ids(48), "labels": ids(2),
                                   "rationale_input_ids": ids(48), "rationale_labels": ids(3), "rationale_text": ["a b"] * n})], path)
    return path.stat().st_size


def _ranks_growth(path: Path, size_rows: int, as_lists: bool, out: Path) -> list[int]:
    import socket

    import torch.multiprocessing as mp

    out.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank_reads_features, args=(2, str(path), port, as_lists, str(out)), nprocs=2, join=True)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["batches"] for r in ranks] == [-(-size_rows // 2 // 64)] * 2
    return [r["anon_growth"] for r in ranks]


def test_ranks_share_the_memory_mapped_features_instead_of_copying_them(tmp_path):
    """Two gloo processes read one epoch of the same features file each. With the memory-mapped file,
    a rank's private memory does not grow with the features (its pages are the file's, shared by the
    ranks); with rows loaded into Python lists, as kdlight used to, every rank grows by more than the
    file. Compared between a small and a 5x larger file, so fixed costs (allocator, batches) cancel."""
    sizes = {rows: _features_file(tmp_path / f"f{rows}.arrow", rows) for rows in (30_000, 150_000)}
    extra = sizes[150_000] - sizes[30_000]
    assert extra > 40e6
    growth = {}
    for as_lists in (False, True):
        for rows in sizes:
            growth[as_lists, rows] = _ranks_growth(tmp_path / f"f{rows}.arrow", rows, as_lists, tmp_path / f"{as_lists}-{rows}")
    mapped = [big - small for big, small in zip(growth[False, 150_000], growth[False, 30_000])]
    lists = [big - small for big, small in zip(growth[True, 150_000], growth[True, 30_000])]
    print(f"features {sizes}; per-rank private growth, small/large file: mapped {growth[False, 30_000]}/{growth[False, 150_000]}, "
          f"lists {growth[True, 30_000]}/{growth[True, 150_000]}")
    assert all(g < 0.1 * extra for g in mapped), (mapped, extra)  # flat in the features' size, in each rank
    assert all(g > extra for g in lists), (lists, extra)  # the old way: a copy (and more) per rank

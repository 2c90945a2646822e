"""Two CPU processes (gloo): the teacher's extraction and the student's training, sharded."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.helpers import HANG_GUARD, TINY, results_of, train

pytestmark = pytest.mark.slow


def test_extraction_shards_across_two_processes(tmp_path, release_root):
    out = subprocess.run(
        [
            sys.executable, "-m", "kdlight.attribute", "dataset=cqa", f"paths.data_dir={release_root}", "teacher=tiny",
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

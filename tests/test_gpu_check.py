"""benchmarks/gpu_check.py at tiny shapes on the CPU (--cpu-smoke): every section runs or says why not,
so the script a GPU machine runs is known to work."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.helpers import HANG_GUARD, clean_env


@pytest.mark.slow  # 30 s; CI runs it (.ci/run includes slow tests)
def test_the_gpu_check_runs_every_section_at_tiny_shapes_on_the_cpu(tmp_path):
    out = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--cpu-smoke", "--out", str(tmp_path / "check.json")], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=HANG_GUARD, env=clean_env(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "check.json").read_text())
    assert result["mode"] == "cpu-smoke"
    bf16 = result["extraction_bf16"]
    assert bf16["examples_per_second"]["kdlight_batched"] > 0 and bf16["kdlight_speedup_per_example"] > 0
    assert result["extraction_4bit"]["skipped"].startswith("teacher.quantization=4bit needs a CUDA GPU")
    step = result["student_step"]
    assert 0 < step["lora"]["trainable_parameters"] < step["full"]["trainable_parameters"] and step["lora_time_over_full"] > 0
    assert result["ddp_extraction"]["devices"] == 2 and result["ddp_extraction"]["rows"] == 16, result["ddp_extraction"]

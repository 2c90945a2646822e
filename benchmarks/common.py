"""What the benchmarks share: timing, interleaved rounds, paired ratios, model shapes, results files.

The development machine is a shared 2-core box whose speed drifts by +-20% from minute to minute:
methods are timed in interleaved rounds, a method's time is its fastest round, and a ratio between
two methods is the median over rounds of the ratio within each round (both measured moments apart).
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"

SHAPES = {
    # The cost of a random model is set by its shape; these are the shapes of the models named.
    "flan_t5_small": {"architecture": "t5", "d_model": 512, "d_ff": 1024, "num_layers": 8, "num_heads": 6, "d_kv": 64, "vocab_size": 32128},
    "t5_v1_1_small": {"architecture": "t5", "d_model": 512, "d_ff": 1024, "num_layers": 8, "num_heads": 6, "d_kv": 64, "vocab_size": 32128},
    "gpt2_small": {"architecture": "gpt2", "d_model": 768, "d_ff": 3072, "num_layers": 12, "num_heads": 12, "vocab_size": 50257},
    "flan_t5_xl": {"architecture": "t5", "d_model": 2048, "d_ff": 5120, "num_layers": 24, "num_heads": 32, "d_kv": 64, "vocab_size": 32128},
}


def shape_overrides(role: str, shape: str) -> list[str]:
    """Hydra overrides giving a tiny model config the named shape (keys the tiny config lacks are added)."""
    out = []
    for key, value in SHAPES[shape].items():
        prefix = "+" if key in ("d_kv", "vocab_size") else ""
        out.append(f"{prefix}{role}.model.{key}={value}")
    return out


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def timed(fn: Callable[[], object]) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def rounds(methods: dict[str, Callable[[], object]], repeats: int, rows: int) -> dict[str, list[float]]:
    """Each method once per round, in the same order, after one warm-up call each."""
    for fn in methods.values():  # lazy imports, first-call allocations
        fn()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            times[name].append(timed(fn))
            print(f"{name:40s} {times[name][-1]:8.3f} s  {rows / times[name][-1]:8.2f} ex/s", flush=True)
    return times


def paired_ratio(times: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """Median over rounds of numerator time / denominator time."""
    return statistics.median(a / b for a, b in zip(times[numerator], times[denominator]))


def environment() -> dict:
    return {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)",
        "torch": torch.__version__, "python": platform.python_version(),
    }


def write(name: str, results: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {path}")
    return path

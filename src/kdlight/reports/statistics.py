"""Is a difference real? Intervals and paired tests over test examples and seeds (pure numpy).

- `bootstrap_interval`: one run's test accuracy with a percentile bootstrap interval over its test
  examples (how much the number would move on another test set of the same size);
- `t_interval`: the mean over seeds with Student's t interval (how much it moves with another seed);
- `paired_comparison`: a method against a reference trained with the same seeds and tested on the
  same rows: the mean difference of accuracy, a paired bootstrap interval (test rows resampled, the
  same rows for both methods and every seed) and a two-sided sign-flip permutation p-value (per test
  row, the two methods' results are exchangeable under "no difference"). Identical methods give a
  difference of 0 and p = 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

# Student's t quantile t(0.975, df) for df = 1..30; beyond 30 the normal 1.96 is within 2%.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def bootstrap_interval(correct: Sequence[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """95% percentile bootstrap interval of the mean of per-example results (1 correct, 0 wrong)."""
    values = np.asarray(correct, dtype=np.float64)
    if values.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def t_interval(values: Sequence[float]) -> tuple[float, float] | None:
    """95% t interval of the mean over seeds (None with fewer than two values)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size < 2:
        return None
    half = (T975[data.size - 2] if data.size - 1 <= len(T975) else 1.96) * data.std(ddof=1) / np.sqrt(data.size)
    return float(data.mean() - half), float(data.mean() + half)


def paired_comparison(
    method: Mapping[object, Sequence[float]], reference: Mapping[object, Sequence[float]], resamples: int = 2000,
    permutations: int = 5000, seed: int = 0,
) -> dict | None:
    """`method` minus `reference`, each {seed: per-test-row results in test order}, over the seeds both have."""
    seeds = sorted(set(method) & set(reference), key=str)
    if not seeds:
        return None
    ours = np.asarray([method[s] for s in seeds], dtype=np.float64)
    theirs = np.asarray([reference[s] for s in seeds], dtype=np.float64)
    if ours.shape != theirs.shape:
        raise ValueError(f"paired runs must be tested on the same rows: {ours.shape} against {theirs.shape} (seeds x rows)")
    per_row = (ours - theirs).mean(axis=0)  # each test row's difference, averaged over seeds
    observed = float(per_row.mean())
    rng = np.random.default_rng(seed)
    boot = per_row[rng.integers(0, per_row.size, size=(resamples, per_row.size))].mean(axis=1)
    signs = rng.choice((-1.0, 1.0), size=(permutations, per_row.size))
    flipped = np.abs((signs * per_row).mean(axis=1))
    # the observed arrangement counts as one of the permutations (p is never 0)
    p_value = (1 + int(np.sum(flipped >= abs(observed) - 1e-12))) / (permutations + 1)
    return {
        "difference": observed, "low": float(np.quantile(boot, 0.025)), "high": float(np.quantile(boot, 0.975)),
        "p_value": p_value, "seeds": [str(s) for s in seeds], "rows": int(per_row.size),
    }

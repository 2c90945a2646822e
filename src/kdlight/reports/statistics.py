"""Is a difference real? Intervals and paired tests over test examples and seeds (pure numpy).

- `bootstrap_interval`: one run's test accuracy with a percentile bootstrap interval over its test
  examples (how much the number would move on another test set of the same size);
- `t_interval`: the mean over seeds with Student's t interval (how much it moves with another seed);
- `seed_level_comparison` (what reports show): a method against a reference trained with the same
  seeds (and, per seed, the same train rows) and tested on the same rows. The unit is the seed: each
  seed gives one paired difference of test accuracy, and the interval and the two-sided p-value are
  Student's t over those differences (df = seeds - 1). A difference that one seed carries is not
  significant; one that every seed shows is. Needs two seeds or more for an interval.
- `paired_comparison` (the row-level test, a second column only): the mean difference with a paired
  bootstrap interval over test rows and a sign-flip permutation p-value per test row, pooled over
  seeds. Its unit is the test row, so it ignores how much another seed would move the result.
  Identical methods give a difference of 0 and p = 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats


def t_quantile(df: int, level: float = 0.95) -> float:
    """Student's t quantile for a two-sided `level` interval with `df` degrees of freedom."""
    return float(stats.t.ppf(0.5 + level / 2, df))


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
    half = t_quantile(data.size - 1) * data.std(ddof=1) / np.sqrt(data.size)
    return float(data.mean() - half), float(data.mean() + half)


def seed_level_comparison(method: Mapping[object, Sequence[float]], reference: Mapping[object, Sequence[float]]) -> dict | None:
    """`method` minus `reference`, each {seed: per-test-row results in test order}: one paired difference of
    accuracy per seed both ran; mean, 95% t interval and two-sided t-test p-value over those differences."""
    seeds = sorted(set(method) & set(reference), key=str)
    if not seeds:
        return None
    differences = []
    for s in seeds:
        ours, theirs = np.asarray(method[s], dtype=np.float64), np.asarray(reference[s], dtype=np.float64)
        if ours.shape != theirs.shape:
            raise ValueError(f"paired runs must be tested on the same rows: seed {s} has {ours.shape} against {theirs.shape} rows")
        differences.append(float(ours.mean() - theirs.mean()))
    diffs = np.asarray(differences)
    mean = float(diffs.mean())
    low = high = p_value = None
    if diffs.size >= 2:
        spread = float(diffs.std(ddof=1))
        if spread == 0.0:  # every seed moved by exactly the same amount: no seed-to-seed variance to test against
            low = high = mean
            p_value = 1.0 if mean == 0.0 else 0.0
        else:
            error = spread / np.sqrt(diffs.size)
            half = t_quantile(diffs.size - 1) * error
            low, high = mean - half, mean + half
            p_value = float(2 * stats.t.sf(abs(mean) / error, diffs.size - 1))
    return {"difference": mean, "low": low, "high": high, "p_value": p_value, "test": "t over per-seed paired differences",
            "per_seed": dict(zip((str(s) for s in seeds), differences)), "seeds": [str(s) for s in seeds],
            "rows": int(np.asarray(method[seeds[0]]).size)}


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

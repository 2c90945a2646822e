"""Intervals and paired tests on fixtures with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from kdlight.reports.statistics import bootstrap_interval, paired_comparison, t_interval


def test_the_bootstrap_interval_holds_the_accuracy_and_narrows_with_more_rows():
    rng = np.random.default_rng(1)
    small, large = rng.random(100) < 0.6, rng.random(10_000) < 0.6
    low, high = bootstrap_interval(small)
    assert low < small.mean() < high
    # the binomial standard error: 0.049 on 100 rows; 95% is about +-1.96 of it
    assert high - low == pytest.approx(2 * 1.96 * np.sqrt(0.6 * 0.4 / 100), rel=0.2)
    low_l, high_l = bootstrap_interval(large)
    assert high_l - low_l < (high - low) / 5
    assert bootstrap_interval([]) is None


def test_the_t_interval_by_hand():
    low, high = t_interval([0.5, 0.6, 0.7])
    half = 4.302653 * 0.1 / np.sqrt(3)  # t(0.975, 2) * sample std / sqrt(n)
    assert (low, high) == pytest.approx((0.6 - half, 0.6 + half))
    assert t_interval([0.5]) is None


def test_identical_methods_differ_by_nothing_with_p_near_one():
    rng = np.random.default_rng(2)
    runs = {seed: (rng.random(400) < 0.5).astype(float) for seed in range(3)}
    result = paired_comparison(runs, runs)
    assert result["difference"] == 0 and result["low"] == result["high"] == 0 and result["p_value"] == 1.0


def test_a_planted_difference_is_found_and_a_noisy_equal_one_is_not():
    rng = np.random.default_rng(3)
    reference = {seed: (rng.random(600) < 0.5).astype(float) for seed in range(3)}
    # the method fixes 10% of the rows the reference gets wrong: +0.05 accuracy
    better = {s: np.where((r == 0) & (rng.random(600) < 0.1), 1.0, r) for s, r in reference.items()}
    found = paired_comparison(better, reference)
    assert found["difference"] == pytest.approx(np.mean([better[s].mean() - reference[s].mean() for s in range(3)]))
    assert found["difference"] > 0.03 and found["low"] > 0 and found["p_value"] < 0.01
    # two methods of equal accuracy: "significant" at 5% in about 5% of draws (9 or more of 60 has probability < 1%)
    p_values = [paired_comparison({0: (rng.random(300) < 0.5).astype(float)}, {0: (rng.random(300) < 0.5).astype(float)},
                                  permutations=400, seed=i)["p_value"] for i in range(60)]
    assert sum(p < 0.05 for p in p_values) <= 8 and max(p_values) > 0.5


def test_only_common_seeds_pair_and_rows_must_match():
    a = {0: [1.0, 0.0], 1: [1.0, 1.0]}
    b = {1: [0.0, 1.0], 2: [1.0, 1.0]}
    result = paired_comparison(a, b)
    assert result["seeds"] == ["1"] and result["difference"] == 0.5
    assert paired_comparison({0: [1.0]}, {1: [1.0]}) is None
    with pytest.raises(ValueError, match="same rows"):
        paired_comparison({0: [1.0, 0.0]}, {0: [1.0]})


def _seed_runs(rng, accuracy_by_seed: dict[int, float], rows: int = 1000) -> dict[int, np.ndarray]:
    return {seed: (rng.random(rows) < accuracy).astype(float) for seed, accuracy in accuracy_by_seed.items()}


def test_a_difference_one_seed_carries_is_not_significant_and_a_consistent_one_is():
    """The issue's simulation: 5 seeds x 1,000 rows. +5 points in one seed only (mean +1) against +1 point in
    every seed (the same mean): the row-level test rejects both; the seed-level test only the consistent one."""
    from kdlight.reports.statistics import seed_level_comparison

    rng = np.random.default_rng(0)
    reference = _seed_runs(rng, dict.fromkeys(range(5), 0.5))
    # one seed: the method fixes rows the reference got wrong in seed 0 only (+5 points there)
    one_seed = {s: np.where((r == 0) & (rng.random(r.size) < (0.1 if s == 0 else 0.0)), 1.0, r) for s, r in reference.items()}
    consistent = {s: r.copy() for s, r in reference.items()}
    for r in consistent.values():  # exactly +10 rows (+1 point) in every seed, with rows flipped both ways around it
        wrong, right = np.flatnonzero(r == 0), np.flatnonzero(r == 1)
        r[rng.choice(wrong, 30, replace=False)] = 1.0
        r[rng.choice(right, 20 + int(rng.integers(-2, 3)), replace=False)] = 0.0
    single = seed_level_comparison(one_seed, reference)
    steady = seed_level_comparison(consistent, reference)
    assert single["difference"] == pytest.approx(np.mean([one_seed[s].mean() - reference[s].mean() for s in range(5)]))
    assert 0.005 < single["difference"] < 0.015 and 0.005 < steady["difference"] < 0.015
    assert single["p_value"] > 0.2 and single["low"] < 0 < single["high"]
    assert steady["p_value"] < 0.01 and steady["low"] > 0
    assert paired_comparison(one_seed, reference)["p_value"] < 0.01  # the row-level test is fooled by the one seed


def test_seeds_that_each_shift_by_chance_reject_at_about_the_nominal_rate():
    """No true effect, but each seed's model moves by N(0, 2 points): the row-level test rejected 15 of 100 in the issue;
    the seed-level test rejects about 5%."""
    from kdlight.reports.statistics import seed_level_comparison

    rng = np.random.default_rng(1)
    rejected_seed, rejected_row = 0, 0
    for i in range(100):
        reference = _seed_runs(rng, {s: 0.5 + rng.normal(0, 0.02) for s in range(5)})
        method = _seed_runs(rng, {s: 0.5 + rng.normal(0, 0.02) for s in range(5)})
        rejected_seed += seed_level_comparison(method, reference)["p_value"] < 0.05
        rejected_row += paired_comparison(method, reference, permutations=500, resamples=200, seed=i)["p_value"] < 0.05
    assert rejected_seed <= 11  # 5% of 100, with room for chance (P(X >= 12) < 1% for Binomial(100, 0.05))
    assert rejected_row > rejected_seed


def test_the_seed_level_comparison_by_hand_and_its_edges():
    from scipy import stats

    from kdlight.reports.statistics import seed_level_comparison, t_quantile

    method = {0: [1, 1, 0, 0], 1: [1, 1, 1, 0], 2: [1, 0, 0, 0]}
    reference = {0: [1, 0, 0, 0], 1: [1, 0, 0, 0], 2: [1, 0, 0, 0]}
    result = seed_level_comparison(method, reference)
    diffs = np.array([0.25, 0.5, 0.0])
    half = stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / np.sqrt(3)
    assert result["difference"] == pytest.approx(0.25) and (result["low"], result["high"]) == pytest.approx((0.25 - half, 0.25 + half))
    assert result["p_value"] == pytest.approx(stats.ttest_1samp(diffs, 0).pvalue)
    assert result["per_seed"] == {"0": 0.25, "1": 0.5, "2": 0.0}
    one = seed_level_comparison({0: [1, 0]}, {0: [0, 0]})
    assert one["difference"] == 0.5 and one["p_value"] is None and one["low"] is None  # one seed: no interval
    assert seed_level_comparison({0: [1.0]}, {1: [1.0]}) is None
    with pytest.raises(ValueError, match="same rows"):
        seed_level_comparison({0: [1.0, 0.0]}, {0: [1.0]})
    # the t quantile, not 1.96, beyond 31 seeds
    assert t_quantile(31) == pytest.approx(2.0395, abs=1e-4) and t_quantile(2) == pytest.approx(4.3027, abs=1e-4)

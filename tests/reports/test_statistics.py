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
    half = 4.303 * 0.1 / np.sqrt(3)  # t(0.975, 2) * sample std / sqrt(n)
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

"""Bootstrap confidence intervals on hand-made data."""

from __future__ import annotations

import numpy as np
import pytest

from atod.eval.stats import (
    bootstrap_ci,
    bootstrap_ratio_ci,
    derive_seed,
    paired_delta_distribution,
    percentile_interval,
)


def test_constant_array_gives_zero_width_ci():
    assert bootstrap_ci(np.full(50, 0.3), n_resamples=200, confidence=0.95, seed=0) == pytest.approx((0.3, 0.3))
    assert bootstrap_ci([1.0], n_resamples=50, seed=1) == (1.0, 1.0)


def test_half_half_ci_contains_half_and_narrows_with_n():
    widths = []
    for n in (20, 200, 2000):
        values = np.array([0.0, 1.0] * (n // 2))
        low, high = bootstrap_ci(values, n_resamples=1000, confidence=0.95, seed=3)
        assert low < 0.5 < high
        # Close to the normal approximation 0.5 +- 1.96 * 0.5 / sqrt(n).
        assert high - low == pytest.approx(2 * 1.96 * 0.5 / np.sqrt(n), rel=0.25)
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]


def test_deterministic_in_seed_and_sensitive_to_it():
    values = np.random.default_rng(0).random(30)
    a = bootstrap_ci(values, n_resamples=300, seed=7)
    assert bootstrap_ci(values, n_resamples=300, seed=7) == a
    assert bootstrap_ci(values, n_resamples=300, seed=8) != a


def test_higher_confidence_gives_wider_interval():
    values = np.random.default_rng(1).random(40)
    lo90, hi90 = bootstrap_ci(values, n_resamples=2000, confidence=0.90, seed=0)
    lo99, hi99 = bootstrap_ci(values, n_resamples=2000, confidence=0.99, seed=0)
    assert lo99 < lo90 < values.mean() < hi90 < hi99


def test_ratio_ci_pools_numerators_and_denominators():
    # 1 invalid step in 10 turns, 0 in 1 turn: pooled rate 1/11, not the mean of rates (0.05).
    low, high = bootstrap_ratio_ci([1, 0] * 20, [10, 1] * 20, n_resamples=500, seed=0)
    assert low <= 1 / 11 <= high
    assert bootstrap_ratio_ci([0, 0], [0, 0], n_resamples=20) == (0.0, 0.0)


def test_paired_delta_uses_task_means():
    a = {"t1": np.array([1.0, 1.0]), "t2": np.array([0.0, 1.0])}
    b = {"t1": np.array([0.0]), "t2": np.array([0.0])}
    point, dist = paired_delta_distribution(a, b, 200, np.random.default_rng(0))
    assert point == pytest.approx(0.75)  # (1 - 0 + 0.5 - 0) / 2
    assert set(np.unique(dist)) <= {0.5, 0.75, 1.0}
    with pytest.raises(ValueError, match="share no task"):
        paired_delta_distribution(a, {"t9": np.array([1.0])}, 10, np.random.default_rng(0))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci([], n_resamples=10)
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([0.1, float("nan")], n_resamples=10)
    with pytest.raises(ValueError, match="confidence"):
        percentile_interval(np.zeros(5), 1.5)


def test_derive_seed_is_stable_and_key_dependent():
    assert derive_seed(0, "a", "b") == derive_seed(0, "a", "b")
    assert derive_seed(0, "a", "b") != derive_seed(0, "ab")
    assert derive_seed(0, "a") != derive_seed(1, "a")


def test_percentile_interval_exact():
    # 101 values 0..100: the 5% and 95% quantiles (numpy's linear interpolation) are 5 and 95 (up to the
    # rounding of (1 - 0.9) / 2)
    assert percentile_interval(np.arange(101.0), 0.9) == pytest.approx((5.0, 95.0), abs=1e-9)


def test_ratio_ci_refuses_bad_shapes_and_zero_resamples():
    # 3 numerators against 2 denominators: both pass the 1-D check, then the shapes (3,) and (2,) differ
    with pytest.raises(ValueError, match=r"numerators \(3,\) and denominators \(2,\) differ in length"):
        bootstrap_ratio_ci([1, 0, 1], [2, 2], n_resamples=10)
    # a (2, 2) array is refused by the 1-D check, named after the argument it came from
    with pytest.raises(ValueError, match=r"numerators must be one-dimensional, got shape \(2, 2\)"):
        bootstrap_ratio_ci([[1, 0], [0, 1]], [[2, 2], [2, 2]], n_resamples=10)
    with pytest.raises(ValueError, match=r"denominators must be one-dimensional, got shape \(2, 1\)"):
        bootstrap_ratio_ci([1, 0], [[2], [2]], n_resamples=10)
    # zero resamples: `n_resamples < 1` is checked before any resampling
    with pytest.raises(ValueError, match="n_resamples must be >= 1, got 0"):
        bootstrap_ratio_ci([1, 0], [2, 2], n_resamples=0)

"""Bootstrap confidence intervals (numpy, percentile method, deterministic given a seed).

Everything here works on *bootstrap distributions*: arrays of shape (R,) holding a statistic
recomputed on R resamples. A distribution is turned into an interval by `percentile_interval`.
Keeping the distributions (rather than only the intervals) lets callers combine them: the average
over benchmarks is the mean of per-benchmark distributions resampled independently (a stratified
bootstrap), a delta is the difference of two distributions or, when both sides ran the same tasks,
a paired distribution resampled over tasks.

Shape suffixes: R = resamples, N = observations (episodes or tasks).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

# Resamples are drawn in blocks of this many rows, so memory stays at (block, N) whatever R is.
_BLOCK = 256


def derive_seed(seed: int, *keys: str) -> int:
    """A stable 32-bit seed from a base seed and string keys (crc32, not Python's salted hash()),
    so every table cell gets its own random stream that does not depend on which other cells exist."""
    h = zlib.crc32("\x1f".join(keys).encode("utf-8"), seed & 0xFFFFFFFF)
    return int(h)


def _as_1d(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{what} is empty: a bootstrap needs at least one observation")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or infinite values")
    return arr


def _check_resamples(n_resamples: int, confidence: float | None = None) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if confidence is not None and not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def bootstrap_means(values_N: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap distribution of the mean: (R,) means of N values drawn with replacement."""
    values_N = _as_1d(values_N, "values")
    _check_resamples(n_resamples)
    n = values_N.size
    out_R = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, _BLOCK):
        stop = min(start + _BLOCK, n_resamples)
        idx_R_N = rng.integers(0, n, size=(stop - start, n))
        out_R[start:stop] = values_N[idx_R_N].mean(axis=1)
    return out_R


def bootstrap_ratios(
    numerators_N: np.ndarray, denominators_N: np.ndarray, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Bootstrap distribution of sum(numerators) / sum(denominators) over resampled observations
    (e.g. invalid steps / steps, resampling episodes). A resample whose denominators sum to 0 gives 0."""
    num_N = _as_1d(numerators_N, "numerators")
    den_N = _as_1d(denominators_N, "denominators")
    if num_N.shape != den_N.shape:
        raise ValueError(f"numerators {num_N.shape} and denominators {den_N.shape} differ in length")
    _check_resamples(n_resamples)
    n = num_N.size
    out_R = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, _BLOCK):
        stop = min(start + _BLOCK, n_resamples)
        idx_R_N = rng.integers(0, n, size=(stop - start, n))
        num_R = num_N[idx_R_N].sum(axis=1)
        den_R = den_N[idx_R_N].sum(axis=1)
        out_R[start:stop] = np.divide(num_R, den_R, out=np.zeros_like(num_R), where=den_R > 0)
    return out_R


def percentile_interval(distribution_R: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central `confidence` interval of a bootstrap distribution (percentile method)."""
    dist_R = _as_1d(distribution_R, "bootstrap distribution")
    _check_resamples(dist_R.size, confidence)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(dist_R, [alpha, 1.0 - alpha])
    return float(low), float(high)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of `values`.

    Deterministic in `seed`. A constant array gives a zero-width interval at that constant; a
    single value gives (value, value).
    """
    _check_resamples(n_resamples, confidence)
    rng = np.random.default_rng(seed)
    return percentile_interval(bootstrap_means(np.asarray(values), n_resamples, rng), confidence)


def bootstrap_ratio_ci(
    numerators: Sequence[float] | np.ndarray,
    denominators: Sequence[float] | np.ndarray,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of sum(numerators) / sum(denominators), resampling observations."""
    _check_resamples(n_resamples, confidence)
    rng = np.random.default_rng(seed)
    dist_R = bootstrap_ratios(np.asarray(numerators), np.asarray(denominators), n_resamples, rng)
    return percentile_interval(dist_R, confidence)


def paired_task_means(
    a_by_task: dict[str, np.ndarray], b_by_task: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-task means of two methods over the tasks both ran: (N,) and (N,), tasks in sorted order."""
    common = sorted(set(a_by_task) & set(b_by_task))
    if not common:
        raise ValueError("the two methods share no task: a paired comparison is impossible")
    a_N = np.array([np.mean(a_by_task[t]) for t in common], dtype=np.float64)
    b_N = np.array([np.mean(b_by_task[t]) for t in common], dtype=np.float64)
    return a_N, b_N


def paired_delta_distribution(
    a_by_task: dict[str, np.ndarray], b_by_task: dict[str, np.ndarray], n_resamples: int, rng: np.random.Generator
) -> tuple[float, np.ndarray]:
    """Paired bootstrap over tasks of mean_task(a) - mean_task(b).

    Each method's episodes on a task (several samples or seeds) are first averaged into a per-task
    value; the tasks are then resampled with replacement. Returns the point estimate (mean over
    tasks of the per-task differences) and the (R,) bootstrap distribution.
    """
    a_N, b_N = paired_task_means(a_by_task, b_by_task)
    diff_N = a_N - b_N
    return float(diff_N.mean()), bootstrap_means(diff_N, n_resamples, rng)

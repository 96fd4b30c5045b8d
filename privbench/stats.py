"""Estimates with uncertainty: every number privbench reports carries n and a 95% CI.

* :func:`bootstrap_mean_ci`: mean of per-sample values (per-image metrics), with a
  seeded percentile bootstrap.
* :func:`bootstrap_ci`: any statistic of paired arrays (ROC AUC, TPR at a fixed
  FPR, balanced accuracy), resampling the samples jointly.
* :func:`t_mean_ci`: mean over a handful of repeated runs (seeds), where a
  bootstrap of three to five values would be too narrow.
* :func:`exact_rate_ci`: a rate k / n with its exact (Clopper-Pearson)
  interval, for counts where a bootstrap degenerates (0 of 20, 20 of 20).
* :func:`difference_of_means_ci`: mean(a) - mean(b) for two independent
  samples (members against non-members), each resampled within itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    value: float
    ci_low: float | None
    ci_high: float | None
    n: int


def _finite(values) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    return arr[np.isfinite(arr)]


def bootstrap_mean_ci(values, resamples: int = 1000, seed: int = 0, level: float = LEVEL) -> Estimate:
    """Mean of ``values`` with a percentile-bootstrap CI (non-finite values dropped)."""
    x = _finite(values)
    n = int(x.size)
    if n == 0:
        return Estimate(float("nan"), None, None, 0)
    mean = float(x.mean())
    if n == 1 or resamples < 1:
        return Estimate(mean, None, None, n)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, int(2e7 // n))  # bound memory: resamples x n indices per chunk
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = x[idx].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return Estimate(mean, float(lo), float(hi), n)


def _percentile_interval(value: float, draws: np.ndarray, n: int, resamples: int, level: float) -> Estimate:
    """The percentile interval of the finite bootstrap draws; none when too few resamples were defined."""
    draws = draws[np.isfinite(draws)]
    if draws.size < max(10, resamples // 10):
        return Estimate(value, None, None, n)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(draws, [alpha, 1 - alpha])
    return Estimate(value, float(lo), float(hi), n)


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays: Sequence,
    resamples: int = 1000,
    seed: int = 0,
    level: float = LEVEL,
    strata: Sequence | None = None,
) -> Estimate:
    """``statistic(*arrays)`` with a percentile-bootstrap CI over jointly resampled rows.

    ``strata`` (e.g. member / non-member labels) resamples within each stratum so
    every resample keeps both groups, as a ROC curve needs. Resamples on which the
    statistic is undefined (NaN) are dropped.
    """
    cols = [np.asarray(a) for a in arrays]
    n = int(cols[0].shape[0])
    value = float(statistic(*cols))
    if n < 2 or resamples < 1:
        return Estimate(value, None, None, n)
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if strata is None else [np.flatnonzero(np.asarray(strata) == s) for s in np.unique(strata)]
    stats = []
    for _ in range(resamples):
        idx = np.concatenate([g[rng.integers(0, g.size, size=g.size)] for g in groups if g.size])
        s = float(statistic(*(c[idx] for c in cols)))
        if math.isfinite(s):
            stats.append(s)
    return _percentile_interval(value, np.asarray(stats, dtype=np.float64), n, resamples, level)


def bootstrap_ci_batched(
    statistic: Callable[..., np.ndarray],
    *arrays: Sequence,
    resamples: int = 1000,
    seed: int = 0,
    level: float = LEVEL,
    strata: Sequence | None = None,
    cells: int = 4_000_000,
) -> Estimate:
    """:func:`bootstrap_ci` for a statistic that takes a batch of resamples at once.

    ``statistic`` receives each array as a ``batch x n`` matrix of resampled rows
    (and, for the point estimate, a batch of one) and returns one value per
    row. Resamples are drawn in chunks of at most ``cells`` values, so memory
    stays bounded whatever n is. Same sampling scheme as :func:`bootstrap_ci`.
    """
    cols = [np.asarray(a) for a in arrays]
    n = int(cols[0].shape[0])
    value = float(statistic(*(c[None] for c in cols))[0])
    if n < 2 or resamples < 1:
        return Estimate(value, None, None, n)
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if strata is None else [np.flatnonzero(np.asarray(strata) == s) for s in np.unique(strata)]
    chunk = max(1, cells // max(1, n))
    stats: list[np.ndarray] = []
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        idx = np.concatenate([g[rng.integers(0, g.size, size=(size, g.size))] for g in groups if g.size], axis=1)
        stats.append(np.asarray(statistic(*(c[idx] for c in cols)), dtype=np.float64))
    return _percentile_interval(value, np.concatenate(stats), n, resamples, level)


def cluster_bootstrap_ci(
    weighted_statistic: Callable[[np.ndarray], np.ndarray],
    clusters: Sequence,
    resamples: int = 1000,
    seed: int = 0,
    level: float = LEVEL,
    cells: int = 4_000_000,
) -> Estimate:
    """A percentile bootstrap that resamples clusters of rows, not rows.

    Where one unit contributes several rows (a candidate scored by several
    target models), its rows are not independent, and resampling rows would
    give too narrow an interval. Each resample draws the clusters with
    replacement; a row's weight is the number of times its cluster was drawn.
    ``weighted_statistic`` takes a ``batch x rows`` weight matrix and returns
    one value per row of it; with all weights 1 it is the point estimate.
    ``n`` is the number of rows.
    """
    clusters = np.asarray(clusters)
    labels, index = np.unique(clusters, return_inverse=True)
    n = int(clusters.size)
    value = float(weighted_statistic(np.ones((1, n)))[0])
    if labels.size < 2 or resamples < 1:
        return Estimate(value, None, None, n)
    rng = np.random.default_rng(seed)
    chunk = max(1, cells // max(1, n))
    stats = []
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        counts = rng.multinomial(labels.size, np.full(labels.size, 1 / labels.size), size=size)
        stats.append(np.asarray(weighted_statistic(counts[:, index].astype(np.float64)), dtype=np.float64))
    return _percentile_interval(value, np.concatenate(stats), n, resamples, level)


def t_mean_ci(values, level: float = LEVEL) -> Estimate:
    """Mean with a Student-t CI: the honest interval for a few repeated runs."""
    x = _finite(values)
    n = int(x.size)
    if n == 0:
        return Estimate(float("nan"), None, None, 0)
    mean = float(x.mean())
    if n == 1:
        return Estimate(mean, None, None, 1)
    from scipy import stats as sps

    half = float(sps.t.ppf((1 + level) / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return Estimate(mean, mean - half, mean + half, n)


def exact_rate_ci(k: int, n: int, level: float = LEVEL) -> Estimate:
    """k / n with its Clopper-Pearson interval: the Beta quantiles that ``binomtest(k, n).proportion_ci(
    method="exact")`` gives, computed directly so that many rates cost one vectorised call."""
    from scipy.stats import beta

    k, n = int(k), int(n)
    if n <= 0:
        return Estimate(float("nan"), None, None, 0)
    if not 0 <= k <= n:
        raise ValueError(f"a rate needs 0 <= k <= n, got k={k}, n={n}")
    alpha = 1 - level
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return Estimate(k / n, low, high, n)


def difference_of_means_ci(a, b, resamples: int = 1000, seed: int = 0, level: float = LEVEL) -> Estimate:
    """mean(a) - mean(b) for independent samples, with a percentile bootstrap resampling each within itself.

    ``n`` is the total count behind the estimate (both samples; non-finite values dropped).
    """
    x, y = _finite(a), _finite(b)
    n = int(x.size + y.size)
    if x.size == 0 or y.size == 0:
        return Estimate(float("nan"), None, None, n)
    value = float(x.mean() - y.mean())
    if x.size < 2 or y.size < 2 or resamples < 1:
        return Estimate(value, None, None, n)
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    for i in range(resamples):
        diffs[i] = x[rng.integers(0, x.size, x.size)].mean() - y[rng.integers(0, y.size, y.size)].mean()
    alpha = (1 - level) / 2
    lo, hi = np.quantile(diffs, [alpha, 1 - alpha])
    return Estimate(value, float(lo), float(hi), n)

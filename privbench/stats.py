"""Estimates with uncertainty: every number privbench reports carries n and a 95% CI.

* :func:`bootstrap_mean_ci`: mean of per-sample values (per-image metrics), with a
  seeded percentile bootstrap.
* :func:`bootstrap_ci`: any statistic of paired arrays (ROC AUC, TPR at a fixed
  FPR, balanced accuracy), resampling the samples jointly.
* :func:`t_mean_ci`: mean over a handful of repeated runs (seeds), where a
  bootstrap of three to five values would be too narrow.
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
    if len(stats) < max(10, resamples // 10):
        return Estimate(value, None, None, n)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return Estimate(value, float(lo), float(hi), n)


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

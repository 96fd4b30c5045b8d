"""The robust membership inference attack, offline (Zarifzadeh, Liu, Shokri & Wang, ICML 2024).

RMIA compares a candidate x with population samples z that the target never
saw, through pairwise likelihood ratios:

    LR(x, z) = [Pr(x | theta) / Pr(x)] / [Pr(z | theta) / Pr(z)]

where Pr(x | theta) is the target model's probability of x's true label and
Pr(x) is that probability averaged over models trained on the population.
The score of x is the fraction of z with LR(x, z) > gamma.

Offline, the reference models are those that did not train on x (OUT), whose
average under-estimates Pr(x); the paper's linear correction gives

    Pr(x) = ((1 + a) * Pr_OUT(x) + (1 - a)) / 2,

``a`` in [0, 1], and the same formula for each z over its OUT references.
With several queries (the image and its mirror), Pr(x | theta) is the mean
probability over the queries. A z that is the candidate itself is left out of
its comparison.
"""

from __future__ import annotations

import numpy as np


def true_label_probability(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Softmax probability of the true label, averaged over queries: logits are (..., queries, n, classes)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    labels = np.asarray(labels, dtype=np.int64)
    own = np.take_along_axis(p, labels.reshape((1,) * (p.ndim - 2) + (-1, 1)), axis=-1)[..., 0]
    return own.mean(axis=-2)


def population_probability(ref_prob: np.ndarray, ref_out: np.ndarray, a: float) -> np.ndarray:
    """Pr(x) from OUT references: ((1 + a) * mean_OUT + (1 - a)) / 2 per sample.

    ``ref_prob`` and ``ref_out`` are references x samples; a sample without an
    OUT reference gets NaN.
    """
    ref_out = np.asarray(ref_out, dtype=bool)
    count = ref_out.sum(axis=0)
    total = (np.asarray(ref_prob, dtype=np.float64) * ref_out).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_out = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return ((1 + a) * mean_out + (1 - a)) / 2


def rmia_scores(target_x: np.ndarray, pop_x: np.ndarray, target_z: np.ndarray, pop_z: np.ndarray,
                gamma: float = 1.0, same: np.ndarray | None = None) -> np.ndarray:
    """Fraction of z with LR(x, z) > gamma for every x.

    ``target_*`` are Pr(. | theta), ``pop_*`` are Pr(.). ``same[i]`` is the
    index into z of candidate i itself (-1 when x is not among the z); that
    comparison is left out.
    """
    ratio_x = np.asarray(target_x, dtype=np.float64) / np.asarray(pop_x, dtype=np.float64)
    ratio_z = np.sort(np.asarray(target_z, dtype=np.float64) / np.asarray(pop_z, dtype=np.float64))
    # LR(x, z) > gamma  <=>  ratio_z < ratio_x / gamma
    below = np.searchsorted(ratio_z, ratio_x / gamma, side="left").astype(np.float64)
    total = np.full(ratio_x.shape, float(ratio_z.size))
    if same is not None:
        same = np.asarray(same, dtype=np.int64)
        own = same >= 0
        # x against itself: LR = 1, which counted as "> gamma" exactly when gamma < 1
        if gamma < 1:
            below[own] -= 1
        total[own] -= 1
    return below / np.maximum(total, 1)

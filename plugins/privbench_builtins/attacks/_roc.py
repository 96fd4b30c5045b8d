"""Membership scores to result rows: ROC AUC, balanced accuracy, TPR at low FPR, each with a CI.

Conventions: ``member`` is a 0/1 vector, ``score`` is higher for "more likely a
member". ROC curves and AUC come from scikit-learn. Every statistic is
bootstrapped within members and within non-members separately (stratified), so
each resample keeps both groups at their sizes.

Balanced accuracy needs a threshold. It is chosen where it maximises balanced
accuracy (Youden's J) on a seeded, stratified calibration half of the
candidates, whose membership the auditor reveals to the attacker, and the
balanced accuracy is measured on the other half only. So the threshold is never
chosen on the scores it is evaluated on; n is the evaluation half.
"""

from __future__ import annotations

import hashlib
import math
from typing import Sequence

import numpy as np

from privbench.api import ResultRow

FPRS = (0.01, 0.001)
STATISTICS = ("auc", "balanced_accuracy") + tuple(f"tpr_at_fpr_{f:g}" for f in FPRS)


def clean(score) -> np.ndarray:
    """Scores as finite float64 (infinite values clipped to the largest finite magnitude, order kept)."""
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    if np.isnan(s).any():
        raise ValueError("membership scores contain NaN")
    return np.nan_to_num(s, posinf=np.finfo(np.float64).max / 2, neginf=-np.finfo(np.float64).max / 2)


class RocCurves:
    """ROC curves from scikit-learn, memoised by the (resampled) arrays they were computed on.

    The bootstraps of AUC and of both TPRs use the same seed and strata, so they
    draw identical resamples; each curve is then computed once, not three times.
    """

    def __init__(self) -> None:
        self._store: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, member, score) -> tuple[np.ndarray, np.ndarray] | None:
        member = np.ascontiguousarray(member)
        score = np.ascontiguousarray(score)
        key = hashlib.blake2b(member.tobytes() + score.tobytes(), digest_size=16).digest()
        if key not in self._store:
            self._store[key] = None if member.min() == member.max() else roc_points_fast(member, score)
        return self._store[key]

    def auc(self, member, score) -> float:
        curve = self(member, score)
        return float("nan") if curve is None else float(np.trapezoid(curve[1], curve[0]))

    def tpr_at_fpr(self, member, score, fpr: float) -> float:
        """The highest true-positive rate among ROC points whose false-positive rate is at most ``fpr``."""
        curve = self(member, score)
        if curve is None:
            return float("nan")
        fprs, tprs = curve
        return float(tprs[fprs <= fpr + 1e-12].max())


def roc_points_fast(member: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) at every distinct threshold, starting at (0, 0): scikit-learn's ``roc_curve`` with
    ``drop_intermediate=False``, without its per-call validation, which dominated the thousands of
    calls a bootstrap makes (a test checks the two agree)."""
    order = np.argsort(-score, kind="mergesort")
    s, m = score[order], member[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s)), m.size - 1]  # last index of each run of equal scores
    tps = np.cumsum(m)[last]
    fps = (last + 1) - tps
    return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]


def auc(member, score) -> float:
    return RocCurves().auc(np.asarray(member), clean(score))


def best_threshold(member, score) -> float:
    """The threshold (predict member when score >= it) with the best balanced accuracy on these scores."""
    from sklearn.metrics import roc_curve

    fprs, tprs, thresholds = roc_curve(member, score)
    return float(thresholds[int(np.argmax(tprs - fprs))])


def balanced_accuracy(member, score, threshold: float) -> float:
    """Mean of the true-positive and true-negative rates when members are predicted by score >= threshold."""
    member = np.asarray(member).astype(bool)
    if member.all() or not member.any():
        return float("nan")
    predicted = np.asarray(score) >= threshold
    return float((predicted[member].mean() + (~predicted[~member]).mean()) / 2)


def calibration_half(member, seed: int) -> np.ndarray:
    """A seeded boolean mask holding half of the members and half of the non-members."""
    member = np.asarray(member).astype(bool)
    rng = np.random.default_rng(seed)
    mask = np.zeros(member.shape[0], dtype=bool)
    for group in (np.flatnonzero(member), np.flatnonzero(~member)):
        chosen = rng.permutation(group)[: group.size // 2]
        mask[chosen] = True
    return mask


def variant_rows(
    variant: str,
    member: np.ndarray,
    score: np.ndarray,
    subsets: Sequence[tuple[str, np.ndarray]],
    *,
    calibration: np.ndarray,
    resamples: int,
    seed: int,
    detail: dict | None = None,
) -> list[ResultRow]:
    """The four statistics for one attack variant on each subset (``all``, ``class=<name>``, ...).

    ``subsets`` pairs a subset name with a boolean mask over the candidates.
    The balanced-accuracy threshold is chosen once, on the calibration half
    of all candidates, and applied to every subset.
    """
    member = np.asarray(member).astype(np.int64)
    score = clean(score)
    calibration = np.asarray(calibration, dtype=bool)
    threshold = best_threshold(member[calibration], score[calibration])
    calib_counts = {"calibration_members": int(member[calibration].sum()),
                    "calibration_nonmembers": int((1 - member[calibration]).sum())}
    rows = []
    for subset, where in subsets:
        where = np.asarray(where, dtype=bool)
        rows += _subset_rows(variant, subset, member[where], score[where], calibration[where], threshold,
                             calib_counts, resamples, seed, dict(detail or {}))
    return rows


def _subset_rows(variant, subset, member, score, calibration, threshold, calib_counts, resamples, seed, extra):
    members, nonmembers = int(member.sum()), int((1 - member).sum())
    counts = {"members": members, "nonmembers": nonmembers}
    names = [f"{variant}.{s}" for s in STATISTICS]
    if members == 0 or nonmembers == 0:
        reason = f"needs members and non-members; this subset has {members} and {nonmembers}"
        return [ResultRow.unavailable(n, reason, higher_is_better=True, subset=subset) for n in names]

    def boot(measure, fn, m, s, detail):
        row = ResultRow.bootstrap(measure, fn, m, s, higher_is_better=True, strata=m, resamples=resamples,
                                  seed=seed, subset=subset, detail={**extra, **detail})
        if row.value is None or not math.isfinite(row.value):
            return ResultRow.unavailable(measure, "undefined on this subset", higher_is_better=True, subset=subset)
        return row

    curves = RocCurves()
    rows = [boot(names[0], curves.auc, member, score, counts)]
    evaluation = ~calibration
    m_eval, s_eval = member[evaluation], score[evaluation]
    predicted = s_eval >= threshold
    bal_detail = {
        **counts,
        "threshold": threshold if math.isfinite(threshold) else None,
        "threshold_rule": "maximises balanced accuracy on a seeded calibration half of all candidates; "
                          "measured on the other half",
        **calib_counts,
        "evaluation_members": int(m_eval.sum()),
        "evaluation_nonmembers": int((1 - m_eval).sum()),
        "true_positives": int((predicted & (m_eval == 1)).sum()),
        "false_positives": int((predicted & (m_eval == 0)).sum()),
    }
    if m_eval.size == 0 or m_eval.min() == m_eval.max():
        rows.append(ResultRow.unavailable(names[1], "the evaluation half lacks members or non-members",
                                          higher_is_better=True, subset=subset))
    else:
        rows.append(boot(names[1], lambda m, s: balanced_accuracy(m, s, threshold), m_eval, s_eval, bal_detail))
    for measure, fpr in zip(names[2:], FPRS):
        allowed = int(math.floor(fpr * nonmembers + 1e-9))
        tpr = curves.tpr_at_fpr(member, score, fpr)
        detail = {**counts, "fpr": fpr, "false_positives_allowed": allowed,
                  "true_positives": int(round(tpr * members))}
        if allowed == 0:
            detail["note"] = (f"with {nonmembers} non-members no false positive fits under FPR {fpr:g}: "
                              "this is the TPR at zero false positives")
        rows.append(boot(measure, lambda m, s, f=fpr: curves.tpr_at_fpr(m, s, f), member, score, detail))
    return rows


def roc_points(member, score) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.metrics import roc_curve

    fprs, tprs, _ = roc_curve(np.asarray(member), clean(score))
    return fprs, tprs

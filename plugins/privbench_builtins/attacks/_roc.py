"""Membership scores to result rows: ROC AUC, balanced accuracy, TPR at low FPR, each with its interval.

Conventions: ``member`` is a 0/1 vector, ``score`` is higher for "more likely
a member". A threshold predicts "member" for every score at or above it, so
candidates tied at the threshold are all predicted alike: a rate never counts
half of a tie (exact copies in a release all tie at distance 0).

* AUC: the trapezoid under the ROC curve (ties as half), with a bootstrap CI
  stratified by membership, so every resample keeps both groups' sizes.
* TPR at a fixed FPR alpha: the threshold with the most true positives whose
  false positives are at most alpha x non-members; the TPR and the FPR it
  actually achieves, each with its exact Clopper-Pearson interval. With fewer
  than 10 / alpha non-members the row is ``insufficient``: there, one false
  positive more or less moves the FPR by more than a tenth of alpha, so the
  figure is really "TPR at zero (or one) false positive", not "at alpha".
* Balanced accuracy: the threshold is chosen where it maximises balanced
  accuracy (Youden's J) on a seeded, stratified calibration half of the
  candidates, whose membership the auditor reveals to the attacker, and
  measured on the other half only; n is that half.

When rows pool several target pipelines (the ``method`` game), ``groups``
names each candidate's target, and the detail carries the per-target values
and their mean, minimum and maximum: the variation of training runs, which
the CI over candidates does not show.
"""

from __future__ import annotations

import hashlib
import math
from typing import Sequence

import numpy as np

from privbench.api import ResultRow
from privbench.stats import bootstrap_ci_batched, cluster_bootstrap_ci, exact_rate_ci

FPRS = (0.01, 0.001)
STATISTICS = ("auc", "balanced_accuracy") + tuple(f"tpr_at_fpr_{f:g}" for f in FPRS)
RESOLUTION = 10
"""A rate at FPR alpha needs at least RESOLUTION / alpha non-members."""


def clean(score) -> np.ndarray:
    """Scores as finite float64 (infinite values clipped to the largest finite magnitude, order kept)."""
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    if np.isnan(s).any():
        raise ValueError("membership scores contain NaN")
    return np.nan_to_num(s, posinf=np.finfo(np.float64).max / 2, neginf=-np.finfo(np.float64).max / 2)


def roc_counts(member: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, true positives, false positives) at every distinct score, highest first.

    Each threshold predicts "member" for all scores at or above it: the counts
    are taken at the last candidate of each run of tied scores.
    """
    order = np.argsort(-score, kind="mergesort")
    s, m = score[order], member[order].astype(np.int64)
    last = np.r_[np.flatnonzero(np.diff(s)), m.size - 1]
    tps = np.cumsum(m)[last]
    fps = (last + 1) - tps
    return s[last], tps, fps


def roc_points_fast(member: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) at every distinct threshold, starting at (0, 0): scikit-learn's ``roc_curve`` with
    ``drop_intermediate=False``, without its per-call validation, which dominated the thousands of
    calls a bootstrap makes (a test checks the two agree)."""
    _, tps, fps = roc_counts(member, score)
    return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]


class RocCurves:
    """ROC curves memoised by the (resampled) arrays they were computed on.

    The area is computed from integer counts (the trapezoid rule on counts, one
    division at the end), so a perfect separation is exactly 1.
    """

    def __init__(self) -> None:
        self._store: dict[bytes, float] = {}

    def auc(self, member, score) -> float:
        member = np.ascontiguousarray(member)
        score = np.ascontiguousarray(score)
        key = hashlib.blake2b(member.tobytes() + score.tobytes(), digest_size=16).digest()
        if key not in self._store:
            if member.min() == member.max():
                self._store[key] = float("nan")
            else:
                _, tps, fps = roc_counts(member, score)
                tps, fps = np.r_[0, tps], np.r_[0, fps]
                twice = int(np.sum(np.diff(fps) * (tps[1:] + tps[:-1])))
                self._store[key] = twice / (2 * int(tps[-1]) * int(fps[-1]))
        return self._store[key]


def auc(member, score) -> float:
    return RocCurves().auc(np.asarray(member), clean(score))


def rank_aucs(positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """One AUC per column of ``scores`` (n x k) for the booleans ``positive`` (n x k): one-vs-rest AUCs at once,
    by rank sums with tied scores given their average rank (a bootstrap resample is full of ties)."""
    positive = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.shape[0]
    order = np.argsort(scores, axis=0, kind="mergesort")
    ordered = np.take_along_axis(scores, order, axis=0)
    index = np.arange(n)[:, None]
    starts = np.r_[np.ones((1, scores.shape[1]), bool), np.diff(ordered, axis=0) != 0]
    ends = np.r_[np.diff(ordered, axis=0) != 0, np.ones((1, scores.shape[1]), bool)]
    first = np.maximum.accumulate(np.where(starts, index, 0), axis=0)
    last = np.minimum.accumulate(np.where(ends, index, n)[::-1], axis=0)[::-1]
    ranks = np.empty_like(scores)
    np.put_along_axis(ranks, order, (first + last) / 2 + 1, axis=0)
    n_pos = positive.sum(axis=0)
    n_neg = n - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        out = ((ranks * positive).sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), out, np.nan)


def rank_auc(positive, score) -> float:
    """ROC AUC by the Mann-Whitney rank sum (ties as half): the same number as the ROC trapezoid, without a
    curve, for the many small AUCs of a multi-class bootstrap."""
    positive = np.asarray(positive).astype(bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(score, kind="mergesort")
    bounds = np.r_[0, np.flatnonzero(np.diff(score[order])) + 1, score.size]  # runs of tied scores
    ranks = np.empty(score.size)
    ranks[order] = np.repeat((bounds[:-1] + 1 + bounds[1:]) / 2, np.diff(bounds))  # average rank of each run
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def rate_at_fpr(member, score, fpr: float) -> dict:
    """The threshold with the most true positives whose false positives are at most ``fpr`` x non-members.

    Returns the counts behind the rate: ``tp``, ``fp``, ``members``,
    ``nonmembers``, ``allowed`` (false positives permitted) and the threshold
    (``None`` when no threshold admits anyone: then nobody is predicted a member).
    """
    member = np.asarray(member).astype(np.int64)
    score = clean(score)
    members, nonmembers = int(member.sum()), int(member.size - member.sum())
    allowed = int(math.floor(fpr * nonmembers + 1e-9))
    thresholds, tps, fps = roc_counts(member, score)
    ok = np.flatnonzero(fps <= allowed)
    if ok.size == 0:
        return {"tp": 0, "fp": 0, "members": members, "nonmembers": nonmembers, "allowed": allowed, "threshold": None}
    best = ok[-1]  # fps only grow along the curve, so the last admissible point has the most true positives
    return {"tp": int(tps[best]), "fp": int(fps[best]), "members": members, "nonmembers": nonmembers,
            "allowed": allowed, "threshold": float(thresholds[best])}


def best_threshold(member, score) -> float:
    """The threshold (predict member when score >= it) with the best balanced accuracy on these scores."""
    member = np.asarray(member).astype(np.int64)
    thresholds, tps, fps = roc_counts(member, clean(score))
    j = tps / max(1, member.sum()) - fps / max(1, member.size - member.sum())
    best = int(np.argmax(j))
    return float(thresholds[best]) if j[best] > 0 else float("inf")  # no threshold beats predicting nobody


def batched_auc(member: np.ndarray, score: np.ndarray) -> np.ndarray:
    """AUC of every row of ``batch x n`` member flags and scores (a batch of bootstrap resamples)."""
    return rank_aucs(np.asarray(member).T.astype(bool), np.asarray(score).T)


def weighted_auc(member: np.ndarray, score: np.ndarray):
    """A function from a ``batch x n`` weight matrix to the weighted AUC of each row (ties as half).

    The scores are sorted once; each weighting only re-sums per run of tied
    scores, so a thousand cluster-bootstrap resamples cost a few matrix sums.
    """
    member = np.asarray(member).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(score, kind="mergesort")
    starts = np.r_[0, np.flatnonzero(np.diff(score[order])) + 1]
    is_pos = member[order]

    def statistic(weights: np.ndarray) -> np.ndarray:
        w = np.asarray(weights, dtype=np.float64)[:, order]
        pos = np.add.reduceat(w * is_pos, starts, axis=1)
        neg = np.add.reduceat(w * ~is_pos, starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg
        total = pos.sum(axis=1) * neg.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, (pos * (below + neg / 2)).sum(axis=1) / total, np.nan)

    return statistic


def weighted_balanced_accuracy(member: np.ndarray, score: np.ndarray, threshold: float):
    """A function from a ``batch x n`` weight matrix to the weighted balanced accuracy of each row."""
    member = np.asarray(member).astype(bool)
    predicted = np.asarray(score) >= threshold

    def statistic(weights: np.ndarray) -> np.ndarray:
        w = np.asarray(weights, dtype=np.float64)
        pos, neg = (w * member).sum(axis=1), (w * ~member).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            tpr = (w * (predicted & member)).sum(axis=1) / pos
            tnr = (w * (~predicted & ~member)).sum(axis=1) / neg
        return np.where((pos > 0) & (neg > 0), (tpr + tnr) / 2, np.nan)

    return statistic


def batched_balanced_accuracy(member: np.ndarray, score: np.ndarray, threshold: float) -> np.ndarray:
    """Balanced accuracy of every row of ``batch x n`` member flags and scores at one threshold."""
    member = np.asarray(member).astype(bool)
    predicted = np.asarray(score) >= threshold
    n_pos, n_neg = member.sum(axis=1), (~member).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = (predicted & member).sum(axis=1) / n_pos
        tnr = (~predicted & ~member).sum(axis=1) / n_neg
    return np.where((n_pos > 0) & (n_neg > 0), (tpr + tnr) / 2, np.nan)


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


def tpr_row(measure: str, member: np.ndarray, score: np.ndarray, fpr: float, *, subset: str, game: str | None,
            extra: dict) -> ResultRow:
    """TPR at ``fpr`` with exact intervals on the TPR and on the FPR achieved, or ``insufficient``."""
    found = rate_at_fpr(member, score, fpr)
    needed = math.ceil(RESOLUTION / fpr)
    detail = {**extra, "fpr": fpr, "members": found["members"], "nonmembers": found["nonmembers"],
              "true_positives": found["tp"], "false_positives": found["fp"],
              "false_positives_allowed": found["allowed"], "threshold": found["threshold"],
              "ci_method": "exact (Clopper-Pearson) on the TPR and on the FPR achieved",
              "ties": "candidates tied at the threshold are counted together"}
    if found["nonmembers"] < needed:
        return ResultRow.insufficient(
            measure, f"{found['nonmembers']} non-members cannot resolve an FPR of {fpr:g} (needs at least {needed})",
            n=found["members"] + found["nonmembers"], higher_is_better=True, subset=subset, detail=detail, game=game)
    tpr = exact_rate_ci(found["tp"], found["members"])
    achieved = exact_rate_ci(found["fp"], found["nonmembers"])
    detail.update({"fpr_achieved": achieved.value, "fpr_achieved_ci": [achieved.ci_low, achieved.ci_high]})
    return ResultRow(measure, tpr.value, tpr.ci_low, tpr.ci_high, found["members"] + found["nonmembers"], True,
                     subset, "ok", detail, game)


def _per_group(statistic, member, score, groups) -> list[float]:
    values = []
    for g in np.unique(groups):
        where = groups == g
        m = member[where]
        if m.size and 0 < m.sum() < m.size:
            values.append(float(statistic(m, score[where])))
    return values


def _spread(values: list[float]) -> dict:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {}
    return {"per_target": [round(v, 6) for v in finite], "targets": len(finite),
            "mean_over_targets": float(np.mean(finite)), "min_over_targets": float(np.min(finite)),
            "max_over_targets": float(np.max(finite))}


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
    game: str | None = None,
    groups: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    clusters: np.ndarray | None = None,
) -> list[ResultRow]:
    """The four statistics for one attack variant on each subset (``all``, ``class=<name>``, ...).

    ``subsets`` pairs a subset name with a boolean mask over the candidates.
    The balanced-accuracy threshold is chosen once, on the calibration half
    of all candidates, and applied to every subset. ``groups`` (the target of
    each candidate, when several are pooled) adds the spread across targets;
    ``labels`` (each candidate's class) adds the class counts on both sides.
    ``clusters`` (each candidate's population entry) makes the AUC and
    balanced-accuracy intervals of pooled rows resample entries, not pairs:
    an entry scored by several targets is one unit of evidence, not several.
    """
    member = np.asarray(member).astype(np.int64)
    score = clean(score)
    calibration = np.asarray(calibration, dtype=bool)
    threshold = best_threshold(member[calibration], score[calibration]) if calibration.any() else float("nan")
    calib_counts = {"calibration_members": int(member[calibration].sum()),
                    "calibration_nonmembers": int((1 - member[calibration]).sum())}
    rows = []
    for subset, where in subsets:
        where = np.asarray(where, dtype=bool)
        g = None if groups is None else np.asarray(groups)[where]
        k = None if clusters is None else np.asarray(clusters)[where]
        extra = dict(detail or {})
        if labels is not None:
            lab = np.asarray(labels)[where]
            classes = int(np.asarray(labels).max()) + 1 if len(labels) else 0
            extra["members_per_class"] = np.bincount(lab[member[where] == 1], minlength=classes).tolist()
            extra["nonmembers_per_class"] = np.bincount(lab[member[where] == 0], minlength=classes).tolist()
        rows += _subset_rows(variant, subset, member[where], score[where], calibration[where], threshold,
                             calib_counts, resamples, seed, extra, game, g, k)
    return rows


def _subset_rows(variant, subset, member, score, calibration, threshold, calib_counts, resamples, seed, extra,
                 game, groups, clusters):
    members, nonmembers = int(member.sum()), int((1 - member).sum())
    counts = {"members": members, "nonmembers": nonmembers}
    names = [f"{variant}.{s}" for s in STATISTICS]
    if members == 0 or nonmembers == 0:
        reason = f"needs members and non-members; this subset has {members} and {nonmembers}"
        return [ResultRow.unavailable(n, reason, higher_is_better=True, subset=subset, game=game) for n in names]
    if groups is not None and np.unique(groups).size > 1:
        extra = {**extra, "pooled_targets": int(np.unique(groups).size)}
    else:
        groups = None
    pooled = groups is not None and clusters is not None

    def boot(measure, fn, weighted, m, s, k, detail):
        if pooled:
            est = cluster_bootstrap_ci(weighted, k, resamples=resamples, seed=seed)
            method = ("bootstrap over population entries (all of an entry's pairs, across targets, resampled "
                      "together)")
        else:
            est = bootstrap_ci_batched(fn, m, s, strata=m, resamples=resamples, seed=seed)
            method = "bootstrap over candidates, stratified by membership"
        if not math.isfinite(est.value):
            return ResultRow.unavailable(measure, "undefined on this subset", higher_is_better=True, subset=subset,
                                         game=game)
        return ResultRow(measure, est.value, est.ci_low, est.ci_high, est.n, True, subset, "ok",
                         {**extra, **detail, "ci_method": method}, game)

    curves = RocCurves()
    spread = _spread(_per_group(curves.auc, member, score, groups)) if groups is not None else {}
    weighted = weighted_auc(member, score) if pooled else None
    rows = [boot(names[0], batched_auc, weighted, member, score, clusters, {**counts, **spread})]
    evaluation = ~calibration
    m_eval, s_eval = member[evaluation], score[evaluation]
    if m_eval.size == 0 or m_eval.min() == m_eval.max() or math.isnan(threshold):
        rows.append(ResultRow.unavailable(names[1], "the evaluation half lacks members or non-members",
                                          higher_is_better=True, subset=subset, game=game))
    else:
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
        weighted = weighted_balanced_accuracy(m_eval, s_eval, threshold) if pooled else None
        rows.append(boot(names[1], lambda m, s: batched_balanced_accuracy(m, s, threshold), weighted, m_eval, s_eval,
                         None if clusters is None else clusters[evaluation], bal_detail))
    for measure, fpr in zip(names[2:], FPRS):
        tpr_spread = {}
        if groups is not None:
            def per_target_tpr(m, s, f=fpr):
                found = rate_at_fpr(m, s, f)
                return found["tp"] / max(1, found["members"])

            tpr_spread = _spread(_per_group(per_target_tpr, member, score, groups))
        rows.append(tpr_row(measure, member, score, fpr, subset=subset, game=game, extra={**extra, **tpr_spread}))
    return rows


def roc_points(member, score) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) for plotting."""
    return roc_points_fast(np.asarray(member).astype(np.int64), clean(score))

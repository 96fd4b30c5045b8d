"""Empirical epsilon: a lower bound on a mechanism's privacy loss from guesses about canaries.

An auditor inserts each of m canaries into the private set independently with
probability 1/2, runs the release pipeline, and guesses from the output which
canaries went in: ``r`` guesses (the others abstain), ``v`` of them right.
Steinke, Nasr & Jagielski ("Privacy auditing with one (1) training run",
NeurIPS 2023; their main theorem with its delta term) show that, for an
(epsilon, delta)-DP mechanism,

    P[V >= v] <= P[Binomial(r, p) >= v] + 2 m delta max_{1<=i<=v} P[v - i <= Binomial(r, p) < v] / i,

with p = e^epsilon / (1 + e^epsilon), the accuracy of epsilon-randomised
response. Every epsilon whose p-value is below alpha is rejected; the largest
rejected epsilon is the lower bound at confidence 1 - alpha. Independent runs
with distinct canaries pool: each canary changes one run only, so the runs
together are one mechanism with m x runs canaries.

Choosing the number of guesses, or the score, after looking at the outcome
would void the confidence: :func:`epsilon_lower_bound` tries a fixed family of
(score, guess count) pairs and splits alpha over them (Bonferroni).

No maintained library on PyPI implements this for torch projects, so it is
written here (a few lines over scipy's binomial), and a test checks it against
direct simulation of randomised response.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np


def one_run_p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """An upper bound on P[at least ``v`` of ``r`` guesses right] for an (epsilon, delta)-DP mechanism."""
    from scipy.stats import binom

    if not 0 <= v <= r <= m:
        raise ValueError(f"the audit needs 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    if epsilon < 0 or not 0 <= delta <= 1:
        raise ValueError(f"epsilon must be at least 0 and delta in [0, 1], got {epsilon}, {delta}")
    p = 1.0 / (1.0 + math.exp(-epsilon)) if epsilon < 700 else 1.0
    beta = float(binom.sf(v - 1, r, p))
    if delta == 0 or v == 0:
        return min(beta, 1.0)
    i = np.arange(1, v + 1)
    within = binom.sf(v - i - 1, r, p) - beta  # P[v - i <= Binomial(r, p) < v]
    alpha = float(np.max(within / i))
    return min(beta + alpha * delta * 2 * m, 1.0)


def one_run_epsilon_lower(m: int, r: int, v: int, delta: float, alpha: float = 0.05) -> float:
    """The largest epsilon that ``v`` right out of ``r`` guesses on ``m`` canaries rejects at level ``alpha``.

    0 when no epsilon is rejected (the guesses are no better than chance at this confidence).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if r == 0 or one_run_p_value(m, r, v, 0.0, delta) > alpha:
        return 0.0
    low, high = 0.0, 1.0
    while one_run_p_value(m, r, v, high, delta) <= alpha:
        low, high = high, 2 * high
        if high > 1e4:  # p-values this small mean every finite epsilon the data can resolve is rejected
            return low
    for _ in range(60):  # bisection to far below any precision that matters
        mid = (low + high) / 2
        if one_run_p_value(m, r, v, mid, delta) <= alpha:
            low = mid
        else:
            high = mid
    return low


def guesses(scores: np.ndarray, inserted: np.ndarray, r: int, tie_order: np.ndarray) -> tuple[int, int]:
    """Guess IN for the ``r // 2`` top scores and OUT for the ``r - r // 2`` bottom ones; (guesses, right).

    Ties are broken by ``tie_order``, a permutation drawn independently of
    which canaries went in, so the guesses are a function of the output alone.
    """
    scores = np.asarray(scores, dtype=np.float64)
    inserted = np.asarray(inserted, dtype=bool)
    m = scores.size
    r = int(min(max(r, 0), m))
    order = np.lexsort((tie_order, -scores))  # highest score first; ties by the independent order
    k_in = r // 2
    k_out = r - k_in
    guessed_in = order[:k_in]
    guessed_out = order[m - k_out:] if k_out else order[:0]
    right = int(inserted[guessed_in].sum() + (~inserted[guessed_out]).sum())
    return k_in + k_out, right


@dataclass(frozen=True)
class AuditBound:
    """The best lower bound over the family, and what each member of the family gave."""

    epsilon: float
    score: str
    fraction: float
    r: int
    v: int
    m: int
    alpha: float
    family: int
    per_score: dict[str, dict] = field(default_factory=dict)


def epsilon_lower_bound(scores: Mapping[str, np.ndarray], inserted: np.ndarray, delta: float,
                        fractions: Sequence[float], confidence: float = 0.95, seed: int = 0) -> AuditBound:
    """The one-run bound at ``confidence`` for the best of every (score, fraction of canaries guessed) pair.

    ``scores``: per name, one finite score per canary (higher: more likely
    inserted). ``alpha = 1 - confidence`` is split evenly over the family, so
    the best bound holds at ``confidence`` as a whole.
    """
    inserted = np.asarray(inserted, dtype=bool)
    m = int(inserted.size)
    if m == 0 or not scores or not fractions:
        raise ValueError("the audit needs canaries, at least one score and at least one guess fraction")
    for name, s in scores.items():
        s = np.asarray(s)
        if s.shape != (m,) or not np.isfinite(s).all():
            raise ValueError(f"score {name!r} must give one finite number per canary")
    family = len(scores) * len(fractions)
    alpha = (1 - confidence) / family
    tie_order = np.random.default_rng(seed).permutation(m)
    best = None
    per_score: dict[str, dict] = {}
    for name, s in scores.items():
        own = None
        for f in fractions:
            r, v = guesses(np.asarray(s), inserted, max(2, int(round(f * m))), tie_order)
            eps = one_run_epsilon_lower(m, r, v, delta, alpha)
            item = {"epsilon": eps, "fraction": float(f), "r": r, "v": v}
            # on a tie, the larger number of guesses: its accuracy says more
            if own is None or (eps, r) > (own["epsilon"], own["r"]):
                own = item
            if best is None or (eps, r) > (best.epsilon, best.r):
                best = AuditBound(eps, name, float(f), r, v, m, alpha, family)
        per_score[name] = own
    assert best is not None
    return AuditBound(best.epsilon, best.score, best.fraction, best.r, best.v, m, alpha, family, per_score)

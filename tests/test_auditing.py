"""The one-run epsilon lower bound: its p-value by hand, its coverage on randomised response, its guessing rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from privbench.auditing import epsilon_lower_bound, guesses, one_run_epsilon_lower, one_run_p_value


def test_without_delta_the_p_value_is_the_binomial_tail_of_randomised_response():
    for m, r, v, eps in [(100, 100, 70, 0.5), (50, 20, 18, 2.0), (10, 4, 0, 1.0)]:
        p = math.exp(eps) / (1 + math.exp(eps))
        assert one_run_p_value(m, r, v, eps, 0.0) == pytest.approx(binom.sf(v - 1, r, p), rel=1e-12)


def test_the_delta_term_matches_a_hand_computation():
    """v = 2: alpha = max(P[B = 1] / 1, (P[B = 1] + P[B = 0]) / 2); p = tail + 2 m delta alpha."""
    m, r, v, eps, delta = 30, 6, 2, 0.3, 1e-3
    p = 1 / (1 + math.exp(-eps))
    tail = binom.sf(1, r, p)
    alpha = max(binom.pmf(1, r, p), (binom.pmf(1, r, p) + binom.pmf(0, r, p)) / 2)
    assert one_run_p_value(m, r, v, eps, delta) == pytest.approx(tail + 2 * m * delta * alpha, rel=1e-12)


def test_the_bound_is_zero_at_chance_and_grows_with_right_guesses():
    assert one_run_epsilon_lower(200, 200, 100, 1e-5) == 0.0
    bounds = [one_run_epsilon_lower(200, 200, v, 1e-5) for v in (120, 150, 180, 200)]
    assert bounds[0] > 0 and all(a < b for a, b in zip(bounds, bounds[1:]))
    # all 64 of 64 right: p^64 <= 0.05, so p >= 0.05^(1/64) and epsilon >= log(p / (1 - p)) ~ 3.04
    p = 0.05 ** (1 / 64)
    assert one_run_epsilon_lower(64, 64, 64, 0.0) == pytest.approx(math.log(p / (1 - p)), rel=1e-6)


def test_a_larger_delta_never_raises_the_bound():
    assert one_run_epsilon_lower(500, 500, 400, 1e-2) <= one_run_epsilon_lower(500, 500, 400, 1e-6)


def test_on_randomised_response_the_bound_exceeds_the_true_epsilon_at_most_five_percent_of_the_time():
    """An epsilon-DP mechanism simulated directly: each canary's output is its bit, flipped w.p. 1 / (1 + e^eps)."""
    eps, m, trials = 1.0, 400, 300
    rng = np.random.default_rng(0)
    keep = math.exp(eps) / (1 + math.exp(eps))
    bounds = []
    for _ in range(trials):
        inserted = rng.random(m) < 0.5
        seen = np.where(rng.random(m) < keep, inserted, ~inserted)
        score = seen + rng.random(m) * 1e-3  # the output, ties broken at random
        bounds.append(epsilon_lower_bound({"output": score}, inserted, 0.0, [1.0], 0.95, seed=1).epsilon)
    bounds = np.asarray(bounds)
    # at most 5% exceed the truth in expectation; 30 of 300 is more than 3 standard deviations above 15
    assert (bounds > eps).sum() <= 30
    assert bounds.mean() > 0.4  # and it has power: the typical bound is well above zero


def test_guesses_take_the_top_as_in_and_the_bottom_as_out():
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.5, 0.4])
    inserted = np.array([True, False, False, False, True, True])
    r, v = guesses(scores, inserted, 4, np.arange(6))
    # IN: 0.9 (right), 0.8 (wrong); OUT: 0.1 (right), 0.2 (right)
    assert (r, v) == (4, 3)


def test_ties_are_broken_by_the_independent_order_not_by_membership():
    scores = np.zeros(4)
    inserted = np.array([True, True, False, False])
    assert guesses(scores, inserted, 2, np.array([2, 3, 0, 1])) == (2, 0)  # order puts the OUT ones first
    assert guesses(scores, inserted, 2, np.array([0, 1, 2, 3])) == (2, 2)


def test_the_family_splits_the_confidence_and_reports_its_best_member():
    rng = np.random.default_rng(3)
    inserted = rng.random(300) < 0.5
    perfect = inserted + rng.random(300) * 1e-3
    noise = rng.random(300)
    bound = epsilon_lower_bound({"perfect": perfect, "noise": noise}, inserted, 1e-5, [0.5, 1.0], 0.95)
    assert bound.family == 4 and bound.alpha == pytest.approx(0.05 / 4)
    assert bound.score == "perfect" and bound.epsilon > 2
    assert bound.per_score["noise"]["epsilon"] < 0.5
    alone = epsilon_lower_bound({"perfect": perfect}, inserted, 1e-5, [bound.fraction], 0.95)
    assert alone.epsilon > bound.epsilon  # one test alone keeps all of alpha


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        one_run_p_value(10, 11, 5, 1.0, 0.0)
    with pytest.raises(ValueError):
        epsilon_lower_bound({"s": np.array([np.nan, 1.0])}, np.array([True, False]), 0.0, [1.0])

"""Membership inference's statistics by hand: LiRA, RMIA, exact rates at low FPR, ties, fixed-margin shadow sets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from privbench_builtins.attacks import _assignment, _lira, _rmia, _roc


def _phi(z: float) -> float:
    """The standard normal CDF, by hand."""
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _row(rows, measure, subset="all"):
    return next(r for r in rows if r.measure == measure and r.subset == subset)


# --------------------------------------------------------------------------- LiRA by hand


@pytest.fixture
def two_candidates():
    """4 shadows, 2 candidates, 1 query; shadows 0-1 hold both candidates IN, shadows 2-3 OUT.

    candidate 0: IN {2, 4} (mean 3, variance 2), OUT {0, 4} (mean 2, variance 8), target phi 3
    candidate 1: IN {5, 9} (mean 7, variance 8), OUT {1, 3} (mean 2, variance 2), target phi 4
    Pooled (fixed) variances: IN (2 + 8) / 2 = 5, OUT (8 + 2) / 2 = 5.
    """
    phi = np.array([[2.0, 5.0], [4.0, 9.0], [0.0, 1.0], [4.0, 3.0]])[:, :, None]
    is_in = np.array([[True, True], [True, True], [False, False], [False, False]])
    return phi, is_in, np.array([3.0, 4.0])


def test_lira_per_example_scores_match_hand_computation(two_candidates):
    phi, is_in, target = two_candidates
    fit_in = _lira.fit_gaussians(phi, is_in, "per_example")
    fit_out = _lira.fit_gaussians(phi, ~is_in, "per_example")
    np.testing.assert_allclose(fit_in.mean[:, 0], [3, 7])
    np.testing.assert_allclose(fit_in.std[:, 0] ** 2, [2, 8])
    np.testing.assert_allclose(fit_out.std[:, 0] ** 2, [8, 2])
    # log N(3; 3, 2) - log N(3; 2, 8) = 1/2 log(8/2) + (3-2)^2 / (2*8)
    # log N(4; 7, 8) - log N(4; 2, 2) = -1/2 log(8/2) - 9/16 + 4/4
    online = _lira.online_scores(target, fit_in, fit_out)
    np.testing.assert_allclose(online, [math.log(2) + 1 / 16, -math.log(2) + 7 / 16], atol=1e-12)
    offline = _lira.offline_scores(target, fit_out)
    np.testing.assert_allclose(offline, [math.log(_phi(1 / math.sqrt(8))), math.log(_phi(2 / math.sqrt(2)))], atol=1e-12)


def test_lira_fixed_variance_scores_match_hand_computation(two_candidates):
    phi, is_in, target = two_candidates
    fit_in = _lira.fit_gaussians(phi, is_in, "fixed")
    fit_out = _lira.fit_gaussians(phi, ~is_in, "fixed")
    np.testing.assert_allclose(fit_in.std ** 2, 5.0)
    np.testing.assert_allclose(fit_out.std ** 2, 5.0)
    # equal variances: the log ratio is ((phi - mu_out)^2 - (phi - mu_in)^2) / (2 * 5)
    online = _lira.online_scores(target, fit_in, fit_out)
    np.testing.assert_allclose(online, [(1 - 0) / 10, (4 - 9) / 10], atol=1e-12)
    offline = _lira.offline_scores(target, fit_out)
    np.testing.assert_allclose(offline, [math.log(_phi(1 / math.sqrt(5))), math.log(_phi(2 / math.sqrt(5)))], atol=1e-12)


def test_lira_known_likelihood_ratio_of_two_gaussians():
    """Many shadows drawn from IN ~ N(1, 1) and OUT ~ N(-1, 1): the score approaches the true log ratio 2 phi."""
    rng = np.random.default_rng(0)
    shadows, candidates = 4000, 3
    is_in = rng.random((shadows, candidates)) < 0.5
    phi = np.where(is_in, rng.normal(1, 1, is_in.shape), rng.normal(-1, 1, is_in.shape))[:, :, None]
    target = np.array([-0.5, 0.0, 0.7])
    for variance in ("fixed", "per_example"):
        fit_in = _lira.fit_gaussians(phi, is_in, variance)
        fit_out = _lira.fit_gaussians(phi, ~is_in, variance)
        np.testing.assert_allclose(_lira.online_scores(target, fit_in, fit_out), 2 * target, atol=0.15)
        expected = [math.log(_phi(t + 1)) for t in target]
        np.testing.assert_allclose(_lira.offline_scores(target, fit_out), expected, atol=0.05)


def test_queries_average_and_one_shadow_per_side_falls_back():
    phi = np.array([[[1.0, 3.0], [2.0, 2.0]], [[0.0, 1.0], [1.0, 0.0]]])  # 2 shadows x 2 candidates x 2 queries
    is_in = np.array([[True, False], [False, True]])
    fit_in = _lira.fit_gaussians(phi, is_in, "fixed")
    assert "across candidates" in fit_in.estimate
    # IN observations: candidate 0 -> (1, 3), candidate 1 -> (1, 0); per-query variance across them
    np.testing.assert_allclose(fit_in.std[0] ** 2, [_lira.MIN_STD**2, 4.5])  # query 0: (1, 1); query 1: (3, 0)
    with pytest.raises(ValueError, match="two shadow observations"):
        _lira.fit_gaussians(phi, is_in, "per_example")
    fit_out = _lira.fit_gaussians(phi, ~is_in, "fixed")
    target = np.array([[1.0, 2.0], [0.5, 0.5]])
    per_query = [_lira.online_scores(target[:, q], _slice(fit_in, q), _slice(fit_out, q)) for q in range(2)]
    np.testing.assert_allclose(_lira.online_scores(target, fit_in, fit_out), np.mean(per_query, axis=0))


def _slice(fit, q):
    return _lira.GaussianFit(fit.mean[:, q : q + 1], fit.std[:, q : q + 1], fit.variance, fit.estimate)


def test_logit_confidence_is_the_logit_of_the_true_class_probability():
    logits = torch.tensor([[0.0, math.log(4.0)], [2.0, 1.0], [50.0, -50.0]])
    labels = torch.tensor([1, 0, 0])
    phi = _lira.logit_confidence(logits, labels)
    p = torch.softmax(logits.double(), 1)[torch.arange(3), labels].numpy()
    np.testing.assert_allclose(phi[:2], np.log(p[:2] / (1 - p[:2])))
    assert phi[0] == pytest.approx(math.log(4.0))
    assert phi[2] == pytest.approx(100.0)  # finite where p_y rounds to 1


def test_candidates_have_the_same_class_mix_on_both_sides():
    from privbench_builtins.attacks._common import matched_candidates

    members = torch.tensor([0] * 300 + [1] * 100)
    nonmembers = torch.tensor([0] * 50 + [1] * 150)
    m, u = matched_candidates(members, nonmembers, 0, 0, seed=0)
    assert torch.bincount(members[m]).tolist() == torch.bincount(nonmembers[u]).tolist() == [50, 100]
    m, u = matched_candidates(members, nonmembers, 30, 0, seed=0)
    assert torch.bincount(members[m]).tolist() == torch.bincount(nonmembers[u]).tolist() == [10, 20]
    assert m.unique().numel() == m.numel() and m.equal(matched_candidates(members, nonmembers, 30, 0, seed=0)[0])


def test_tpr_at_low_fpr_and_calibrated_balanced_accuracy():
    member = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    score = np.array([9.0, 8.0, 3.0, 1.0, 7.0, 2.0, 0.5, 0.0])
    curves = _roc.RocCurves()
    assert _roc.rate_at_fpr(member, score, 0.0)["tp"] == 2  # 9 and 8 score above every non-member
    one = _roc.rate_at_fpr(member, score, 0.25)  # one false positive (7) allows 3
    assert (one["tp"], one["fp"], one["threshold"]) == (3, 1, 3.0)
    assert curves.auc(member, score) == pytest.approx(13 / 16)  # 4 + 4 + 3 + 2 ordered pairs
    assert _roc.balanced_accuracy(member, score, 2.5) == pytest.approx((0.75 + 0.75) / 2)
    calibration = _roc.calibration_half(member, seed=0)
    assert calibration[member == 1].sum() == 2 and calibration[member == 0].sum() == 2


def test_fast_roc_points_match_scikit_learn_with_ties():
    import numpy as np
    from sklearn.metrics import roc_auc_score, roc_curve

    from privbench_builtins.attacks._roc import RocCurves, roc_points_fast

    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(5, 200))
        member = rng.integers(0, 2, n)
        if member.min() == member.max():
            continue
        score = np.round(rng.normal(size=n), int(rng.integers(0, 3)))  # rounding makes ties
        fpr, tpr = roc_points_fast(member, score)
        ref_fpr, ref_tpr, _ = roc_curve(member, score, drop_intermediate=False)
        assert np.allclose(fpr, ref_fpr) and np.allclose(tpr, ref_tpr)
        assert abs(RocCurves().auc(member, score) - roc_auc_score(member, score)) < 1e-12


# --------------------------------------------------------------------------- exact rates and ties


def test_tied_scores_at_the_threshold_are_counted_together():
    """Three members tie with one non-member at the top: no threshold can take the members without it."""
    member = np.array([1, 1, 1, 0] + [0] * 99 + [1])
    score = np.array([5.0, 5.0, 5.0, 5.0] + [0.0] * 99 + [1.0])
    strict = _roc.rate_at_fpr(member, score, 0.0)  # no false positive allowed: the tie cannot be split
    assert (strict["tp"], strict["fp"], strict["threshold"]) == (0, 0, None)
    one = _roc.rate_at_fpr(member, score, 0.01)  # one of 100 allowed: the whole tie comes in, then member 1.0
    assert (one["tp"], one["fp"], one["threshold"]) == (4, 1, 1.0)
    # a per-candidate count that broke the tie (sorted members first) would report 3 true positives at FPR 0
    fpr, tpr = _roc.roc_points_fast(member, score)
    assert not np.any((fpr == 0) & (tpr > 0))


def test_clopper_pearson_bounds_equal_scipy_binomtest():
    from scipy.stats import binomtest

    from privbench.stats import exact_rate_ci

    rng = np.random.default_rng(0)
    cases = [(0, 20), (20, 20), (1, 1000), (7, 23)] + [(int(k), int(n)) for n in rng.integers(1, 3000, 20)
                                                       for k in [rng.integers(0, n + 1)]]
    for k, n in cases:
        ours = exact_rate_ci(k, n)
        ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        assert ours.value == k / n and ours.n == n
        assert ours.ci_low == pytest.approx(ref.low, abs=1e-12) and ours.ci_high == pytest.approx(ref.high, abs=1e-12)


def test_tpr_rows_are_exact_or_insufficient():
    rng = np.random.default_rng(1)
    member = np.r_[np.ones(500, int), np.zeros(1200, int)]
    score = np.r_[rng.normal(1, 1, 500), rng.normal(0, 1, 1200)]
    row = _roc.tpr_row("loss.tpr_at_fpr_0.01", member, score, 0.01, subset="all", game="release", extra={})
    d = row.detail
    assert row.status == "ok" and row.game == "release" and d["false_positives"] <= 12 == d["false_positives_allowed"]
    assert row.value == d["true_positives"] / 500 and row.ci_low < row.value < row.ci_high
    assert d["fpr_achieved"] == d["false_positives"] / 1200 and d["fpr_achieved_ci"][0] <= d["fpr_achieved"]
    low = _roc.tpr_row("loss.tpr_at_fpr_0.001", member, score, 0.001, subset="all", game="release", extra={})
    assert low.status == "insufficient" and low.value is None and "needs at least 10000" in low.detail["reason"]
    assert low.detail["nonmembers"] == 1200 and low.n == 1700
    # every member released verbatim (distance 0, tied) against 230 non-members: no figure, and no contradiction
    copies = _roc.variant_rows("release_distance", np.r_[np.ones(20, int), np.zeros(230, int)],
                               np.r_[np.zeros(20), -rng.random(230) - 0.1], [("all", np.ones(250, bool))],
                               calibration=_roc.calibration_half(np.r_[np.ones(20), np.zeros(230)], 0), resamples=50,
                               seed=0)
    by = {r.measure: r for r in copies}
    assert by["release_distance.auc"].value == 1.0
    assert {by[f"release_distance.tpr_at_fpr_{f}"].status for f in ("0.01", "0.001")} == {"insufficient"}


# --------------------------------------------------------------------------- RMIA by hand


def test_rmia_matches_a_hand_computation():
    """2 reference models, candidates x1 x2, population z1 z2 z3, a = 0.5 (worked in the comments)."""
    target_x, target_z = np.array([0.9, 0.5]), np.array([0.6, 0.3, 0.8])
    refs_x = np.array([[0.7, 0.6], [0.5, 0.4]])  # r1, r2 on x1, x2
    refs_z = np.array([[0.5, 0.4, 0.6], [0.7, 0.2, 0.6]])
    out_x = np.array([[False, True], [True, True]])  # x1 is IN r1
    pop_x = _rmia.population_probability(refs_x, out_x, 0.5)
    pop_z = _rmia.population_probability(refs_z, np.ones((2, 3), bool), 0.5)
    # Pr(x1) = (1.5 * 0.5 + 0.5) / 2 = 0.625 (only r2 is OUT); Pr(x2) = (1.5 * 0.5 + 0.5) / 2 = 0.625
    np.testing.assert_allclose(pop_x, [0.625, 0.625])
    np.testing.assert_allclose(pop_z, [0.7, 0.475, 0.7])  # means 0.6, 0.3, 0.6
    # ratios: x1 0.9 / 0.625 = 1.44, x2 0.8; z: 0.857, 0.632, 1.143
    np.testing.assert_allclose(_rmia.rmia_scores(target_x, pop_x, target_z, pop_z, gamma=1.0), [1.0, 1 / 3])
    # gamma 1.3: x1 beats z with ratio below 1.44 / 1.3 = 1.108 (z1, z2); x2 none below 0.615
    np.testing.assert_allclose(_rmia.rmia_scores(target_x, pop_x, target_z, pop_z, gamma=1.3), [2 / 3, 0.0])
    # a candidate that is itself z3 is not compared with itself: ratio 1.143 beats z1 and z2, of the other two
    np.testing.assert_allclose(_rmia.rmia_scores(np.array([0.8]), np.array([0.7]), target_z, pop_z,
                                                 same=np.array([2])), [1.0])
    # no OUT reference: undefined, never a made-up number
    assert np.isnan(_rmia.population_probability(refs_x, np.zeros((2, 2), bool), 0.5)).all()


def test_true_label_probability_averages_queries():
    logits = np.log(np.array([[[0.2, 0.8], [0.6, 0.4]], [[0.4, 0.6], [0.6, 0.4]]]))  # 2 queries x 2 images x 2
    np.testing.assert_allclose(_rmia.true_label_probability(logits, np.array([1, 0])), [0.7, 0.6])


# --------------------------------------------------------------------------- shadow sets


def test_shadow_sets_have_exact_class_counts_and_balanced_inclusion():
    labels = np.array([0] * 181 + [1] * 300 + [2] * 7)
    sets = _assignment.fixed_margin_sets(labels, [150, 250, 5], 6, seed=1)
    for row in sets:
        assert np.bincount(labels[row], minlength=3).tolist() == [150, 250, 5]
    for c, take in ((0, 150), (1, 250), (2, 5)):
        counts = sets[:, labels == c].sum(axis=0)
        share = 6 * take / (labels == c).sum()
        assert counts.min() >= np.floor(share) and counts.max() <= np.ceil(share)
    assert np.unique(sets, axis=0).shape[0] == 6
    halves = _assignment.halves(labels, 3, 4)
    method = _assignment.fixed_margin_sets(labels, halves, 4, seed=2)
    assert (method.sum(axis=0) == 2).all()  # every entry IN exactly half of the pipelines, odd classes too
    facts = _assignment.inclusion_facts(sets)
    assert facts["sets"] == 6 and 0.4 < facts["inclusion_rate_mean"] < 1

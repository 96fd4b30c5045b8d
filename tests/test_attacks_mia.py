"""Membership inference: LiRA's statistics by hand, attacks that succeed and fail, shadows end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attack_data import digits_small, noise_release, original_release  # noqa: F401 - fixtures
from privbench.api import AuditTarget, RunContext
from privbench.config import build_config
from privbench.errors import UserError
from privbench.testing import attack, check_plugin
from privbench_builtins.attacks import _lira, _roc
from privbench_builtins.attacks.mia import MembershipInference

FAST_TARGET = {"target_epochs": 100, "target_width": 32, "target_depth": 2, "resamples": 300}


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
    is_in = _lira.balanced_assignment(candidates, shadows, seed=0)
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


def test_each_candidate_is_in_exactly_half_of_the_shadows():
    even = _lira.balanced_assignment(500, 8, seed=1)
    assert (even.sum(axis=0) == 4).all()
    assert abs(even.sum(axis=1).mean() - 250) < 1e-9 and even.sum(axis=1).min() > 200
    odd = _lira.balanced_assignment(500, 3, seed=1)
    assert set(odd.sum(axis=0).tolist()) == {1, 2}


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
    assert curves.tpr_at_fpr(member, score, 0.0) == 0.5  # 9 and 8 score above every non-member
    assert curves.tpr_at_fpr(member, score, 0.25) == 0.75  # one false positive (7) allows 3
    assert curves.auc(member, score) == pytest.approx(13 / 16)  # 4 + 4 + 3 + 2 ordered pairs
    assert _roc.balanced_accuracy(member, score, 2.5) == pytest.approx((0.75 + 0.75) / 2)
    calibration = _roc.calibration_half(member, seed=0)
    assert calibration[member == 1].sum() == 2 and calibration[member == 0].sum() == 2


# --------------------------------------------------------------------------- attacks that succeed and fail


def test_mia_registers_as_a_valid_plugin():
    from privbench.nets import MODELS
    from privbench_builtins.attacks._options import TARGET_MODELS

    check_plugin(MembershipInference, "attack")
    assert TARGET_MODELS == MODELS
    with pytest.raises(UserError, match="shadows"):
        build_config(MembershipInference.Config, {"shadows": "1"}, owner="attack mia")
    with pytest.raises(UserError, match="variants"):
        build_config(MembershipInference.Config, {"variants": "loss,nope"}, owner="attack mia")


def test_loss_attack_detects_members_of_an_overfit_model():
    data = digits_small()
    rows = attack(MembershipInference, data, original_release(data), variants=("loss", "lira_offline"), **FAST_TARGET)
    auc = _row(rows, "loss.auc")
    assert auc.ci_low > 0.55, auc
    # every member, and as many non-members of each class (120 available)
    assert auc.n == 80 and auc.detail["members"] == 40 and auc.detail["nonmembers"] == 40
    tpr = _row(rows, "loss.tpr_at_fpr_0.01")
    assert tpr.detail["false_positives_allowed"] == 0 and tpr.ci_low is not None
    bal = _row(rows, "loss.balanced_accuracy")
    assert bal.n == 40 and bal.detail["calibration_members"] == 20 and "calibration half" in bal.detail["threshold_rule"]
    assert {r.subset for r in rows} == ({"all", "nonmembers=val", "nonmembers=test"}
                                        | {f"class={c}" for c in data.class_names})
    by_source = [_row(rows, "loss.auc", f"nonmembers={s}") for s in ("val", "test")]
    assert all(r.detail["members"] == 40 for r in by_source)
    assert sum(r.detail["nonmembers"] for r in by_source) == 40
    # this target cannot re-run its pipeline, so LiRA says so instead of making up a number
    lira = _row(rows, "lira_offline.auc")
    assert lira.status == "unavailable" and lira.value is None and "re-run" in lira.detail["reason"]


def test_loss_attack_on_a_noise_release_is_at_chance():
    data = digits_small()
    rows = attack(MembershipInference, data, noise_release(data), variants=("loss",), **FAST_TARGET)
    auc = _row(rows, "loss.auc")
    assert auc.ci_low < 0.5 < auc.ci_high, auc


def test_lira_end_to_end_with_shadow_pipelines(tmp_path):
    """Shadows re-run the `random` distiller through target.rebuild; every row comes back with a CI."""
    from privbench.engine import make_rebuild, run_distiller
    from privbench.plugins import get_registry
    from privbench.testing import tiny_dataset

    registry = get_registry()
    data = tiny_dataset(classes=3, per_class=20)
    release = run_distiller(registry, "random", data, 2, None, RunContext(seed=0))
    calls = []
    rebuild = make_rebuild(registry, release.manifest)

    def counting_rebuild(private, ctx):
        calls.append((len(private.train), ctx.seed))
        return rebuild(private, ctx)

    target = AuditTarget(data, release, {}, counting_rebuild)
    config = build_config(MembershipInference.Config, {"shadows": 4, "target_epochs": 30, "target_width": 16,
                                                        "target_depth": 2, "resamples": 200}, owner="attack mia")
    rows = MembershipInference().run(target, config, RunContext(seed=0, out_dir=tmp_path))
    population = len(data.train) + len(data.nonmembers)
    assert len(calls) == 4 and len({seed for _, seed in calls}) == 4
    assert sum(size for size, _ in calls) == 2 * population  # every candidate IN exactly half of the shadows
    expected = {f"{v}.{s}" for v in ("loss", "lira_offline", "lira_online", "release_distance") for s in _roc.STATISTICS}
    assert {r.measure for r in rows} == expected
    for r in rows:
        if r.subset == "all":
            assert r.status == "ok" and r.ci_low is not None and r.ci_low <= r.value <= r.ci_high, r
    offline = _row(rows, "lira_offline.auc")
    assert offline.detail["shadows"] == 4 and offline.detail["variance"] == "fixed"
    assert offline.detail["queries"] == ["identity", "flip"]
    assert (tmp_path / "roc.png").stat().st_size > 1000


def test_non_members_can_come_from_one_split():
    data = digits_small()
    rows = attack(MembershipInference, data, noise_release(data), variants=("release_distance",), resamples=50,
                  nonmember_splits=("val",))
    assert {r.subset for r in rows} == {"all"} | {f"class={c}" for c in data.class_names}
    auc = _row(rows, "release_distance.auc")
    assert auc.detail["nonmembers"] == auc.detail["members"] <= 40  # per class, as many as val offers
    with pytest.raises(UserError, match="nonmember_splits"):
        build_config(MembershipInference.Config, {"nonmember_splits": "train"}, owner="attack mia")


def test_release_distance_finds_the_released_members():
    from privbench.api import Release

    data = digits_small()
    release = Release(data.train.images[:20].clone(), data.train.labels[:20].clone(), {"method": "copies"})
    rows = attack(MembershipInference, data, release, variants=("release_distance",), resamples=200)
    tpr = _row(rows, "release_distance.tpr_at_fpr_0.001")
    assert tpr.value >= 0.5  # the 20 released of 40 members sit at distance 0
    assert tpr.detail["false_positives_allowed"] == 0 and "zero false positives" in tpr.detail["note"]


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

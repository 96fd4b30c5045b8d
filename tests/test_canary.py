"""The canary audit end to end: a bound within dp-dm's guarantee, clearly positive on a copy, honest bookkeeping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from attack_data import digits_small
from privbench.api import AuditTarget, Dataset, Release, RunContext
from privbench.config import build_config
from privbench.engine import make_rebuild, run_distiller
from privbench.errors import UserError
from privbench.plugins import get_registry
from privbench.testing import check_plugin
from privbench_builtins.attacks import _canary
from privbench_builtins.attacks.canary import CanaryAudit

FAST = {"target_steps": 40, "target_width": 16, "target_depth": 2, "resamples": 100}
DP = {"iterations": 8, "sample_rate": 0.2, "width": 16, "depth": 2, "lr_img": 10.0,
      "dsa_strategy": "color_crop_cutout_scale_rotate"}


def _run(data: Dataset, release: Release, ctx: RunContext | None = None, **options):
    config = build_config(CanaryAudit.Config, {**FAST, **options}, owner="attack canary")
    target = AuditTarget(data, release, {}, make_rebuild(get_registry(), release.manifest))
    return CanaryAudit().run(target, config, ctx or RunContext(seed=0))


def _row(rows, measure):
    return next(r for r in rows if r.measure == measure)


def _release(data, method, ipc=None, **config):
    return run_distiller(get_registry(), method, data, ipc, config or None, RunContext(seed=0))


@pytest.fixture(scope="module")
def data() -> Dataset:
    return digits_small(train=200, nonmembers=100, seed=0)


def test_canary_registers_and_refuses_bad_options():
    check_plugin(CanaryAudit, "attack")
    for bad, needle in (({"canaries": "5"}, "canaries"), ({"scores": "loss,nope"}, "scores"),
                        ({"scores": "lira_offline", "runs": "2"}, "runs"), ({"fractions": "0,1"}, "fractions"),
                        ({"confidence": "1"}, "confidence"), ({"kind": "ood"}, "kind")):
        with pytest.raises(UserError, match=needle):
            build_config(CanaryAudit.Config, bad, owner="attack canary")


def test_a_release_that_copies_its_private_set_gives_a_clearly_positive_bound(data):
    rows = _run(data, _release(data, "original"), canaries=60, scores=("release_distance",))
    bound = _row(rows, "canary.epsilon_lower")
    assert bound.value > 1.0, bound  # every inserted canary is in the release, at distance 0
    assert bound.n == 60 and bound.ci_low == bound.value and math.isinf(bound.ci_high)
    assert bound.detail["theoretical_epsilon"] == "inf" and bound.detail["violation"] is False
    assert _row(rows, "canary.release_distance.auc").value == 1.0
    accuracy = _row(rows, "canary.release_distance.guess_accuracy")
    assert accuracy.ci_low > 0.5 and accuracy.n == bound.detail["guesses"]


@pytest.mark.parametrize("epsilon", [0.5, 2.0])
def test_the_bound_never_exceeds_the_guarantee_of_dp_dm(data, epsilon):
    release = _release(data, "dp-dm", 2, epsilon=epsilon, **DP)
    rows = _run(data, release, canaries=60, runs=3, scores=("release_distance", "loss", "lira_offline"))
    bound = _row(rows, "canary.epsilon_lower")
    theory = bound.detail["theoretical_epsilon"]
    assert theory == pytest.approx(epsilon, rel=0.01)
    assert 0 <= bound.value <= theory and bound.detail["violation"] is False
    assert bound.n == 180 and bound.detail["family"] == 3 * 4
    assert bound.detail["delta"] < 1 / len(data.train)  # the release's own delta, below 1 / n


def test_a_release_that_claims_a_guarantee_it_does_not_have_is_caught(data):
    """A pipeline that copies its private set but states epsilon 0.5: the bound exceeds it, and says so."""

    def lying(private: Dataset, ctx: RunContext) -> Release:
        return Release(private.train.images.clone(), private.train.labels.clone(),
                       {"method": "liar", "privacy": {"epsilon": 0.5, "delta": 1e-5}})

    release = lying(data, RunContext())
    config = build_config(CanaryAudit.Config, {**FAST, "canaries": 80, "scores": ("release_distance",)},
                          owner="attack canary")
    ctx = RunContext(seed=0)
    rows = CanaryAudit().run(AuditTarget(data, release, {}, lying), config, ctx)
    bound = _row(rows, "canary.epsilon_lower")
    assert bound.value > 0.5 and bound.detail["violation"] is True and bound.detail["theoretical_epsilon"] == 0.5
    assert any("exceeds the release's guarantee" in w for w in ctx.warnings)


def test_the_mechanism_normalises_by_counts_declared_before_the_coins(data):
    """Every run's dp-dm reads the declared class sizes, whichever canaries the coins put in."""
    release = _release(data, "dp-dm", 2, epsilon=1.0, **DP)
    config = build_config(CanaryAudit.Config, {**FAST, "canaries": 40, "runs": 2, "scores": ("release_distance",)},
                          owner="attack canary")
    target = AuditTarget(data, release, {}, make_rebuild(get_registry(), release.manifest))
    experiment = _canary.run_experiment(target, config, RunContext(seed=0))
    for j, rebuilt in enumerate(experiment.releases):
        own = experiment.run == j
        labels = experiment.labels[own]
        declared = _canary.declared_counts(data.train, labels, data.num_classes)
        assert rebuilt.manifest["privacy"]["public_class_counts"] == list(declared)
        assert "declared with the dataset" in rebuilt.manifest["privacy"]["public"]


def test_mislabeled_canaries_carry_a_wrong_label_and_come_from_outside_the_training_set(data):
    config = build_config(CanaryAudit.Config, {**FAST, "canaries": 50}, owner="attack canary")
    target = AuditTarget(data, _release(data, "original"), {}, make_rebuild(get_registry(), {}))
    images, labels, run, facts = _canary.choose_canaries(target, config, RunContext(seed=0))
    train = data.train.images.reshape(len(data.train), -1)
    flat = images.reshape(images.shape[0], -1)
    assert (torch_cdist(flat, train).min(dim=1).values > 0).all()  # no canary is a training image
    pool = np.concatenate([data.val.images.reshape(len(data.val), -1).numpy(),
                           data.test.images.reshape(len(data.test), -1).numpy()])
    original = [int(np.flatnonzero((pool == row.numpy()).all(axis=1))[0]) for row in flat]
    true_labels = np.concatenate([data.val.labels.numpy(), data.test.labels.numpy()])[original]
    assert (labels.numpy() != true_labels).all() and facts["kind"] == "mislabeled" and run.size == 50


def test_too_few_non_members_is_one_clear_error():
    small = digits_small(train=60, nonmembers=4, seed=0)
    with pytest.raises(UserError, match="need 10 non-member images"):
        _run(small, _release(small, "original"), canaries=10)


def torch_cdist(a, b):
    import torch

    return torch.cdist(a.float(), b.float())


def test_bad_canary_options_are_one_line_and_write_nothing(cli, tmp_path):
    from helpers import assert_one_line_error

    out = tmp_path / "audit"
    for setting, needle in (("canary.runs=2", "needs runs of at least 3"), ("canary.confidence=nan", "confidence"),
                            ("canary.canaries=-1", "canaries")):
        extra = ["--set", "canary.scores=lira_offline"] if "runs" in setting else []
        result = cli("audit", "--data", "digits", "--release", "original", "--attack", "canary", "--set", setting,
                     *extra, "--out", out)
        assert_one_line_error(result, needle)
        assert not out.exists()

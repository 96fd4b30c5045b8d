"""Attribute inference: the attribute it targets, the partial record, members against controls, and the baseline."""

from __future__ import annotations

import pytest
import torch

from attack_data import digits_small, noise_release, original_release  # noqa: F401 - fixtures
from privbench.api import Dataset, Split
from privbench.errors import UserError
from privbench.testing import attack, check_plugin
from privbench_builtins.attacks import _partial
from privbench_builtins.attacks._aia_rows import anonymeter_risk, risk_ci
from privbench_builtins.attacks.aia import MEASURES, AttributeInference

FAST = {"target_epochs": 30, "target_width": 32, "target_depth": 2, "resamples": 200}


def _with_attributes(split: Split) -> Split:
    return Split(split.images, split.labels, {"odd": split.labels % 2, "big": (split.labels >= 5).long()})


@pytest.fixture(scope="module")
def data() -> Dataset:
    base = digits_small(train=200, nonmembers=100)
    return Dataset("digits-attributes", _with_attributes(base.train), _with_attributes(base.val),
                   _with_attributes(base.test), base.class_names, public=True).validate()


def _rows(rows):
    return {r.measure: r for r in rows}


def test_aia_registers_and_refuses_bad_options():
    from privbench.config import build_config

    check_plugin(AttributeInference, "attack")
    for bad in ({"mask_fraction": "1.5"}, {"downsample_factor": "1"}, {"target_model": "vit"}, {"partial": "crop"}):
        with pytest.raises(UserError):
            build_config(AttributeInference.Config, bad, owner="attack aia")


def test_a_release_that_knows_nothing_adds_nothing_over_the_baseline(data):
    """Noise release: the model's outputs are a random transform, so with-model and baseline agree, and the
    attacker does no better on members than on controls."""
    rows = _rows(attack(AttributeInference, data, noise_release(data), **FAST))
    assert list(rows) == list(MEASURES)
    for r in rows.values():
        assert r.status == "ok" and r.ci_low is not None and r.ci_low <= r.value <= r.ci_high, r
        assert r.game == "release"
    auc = rows["with_model.auc"]
    assert auc.n == 200 and auc.detail["attribute"] == "big"  # the first attribute column by default
    assert auc.detail["members"] == 200 and auc.detail["controls"] == 50  # the held-out half of val
    assert rows["with_model.control_auc"].n == 50 and "half" in auc.detail["auxiliary"]
    assert rows["baseline.auc"].value > 0.6  # the partial record alone says a good deal
    gain = rows["gain.auc"]
    assert gain.ci_low <= 0 <= gain.ci_high or abs(gain.value) < 0.03, gain
    risk = rows["risk"]
    assert risk.ci_low < 0 < risk.ci_high, risk
    members, controls = rows["success.members"], rows["success.controls"]
    assert members.n == controls.n == 50  # matched: as many members as controls of every attribute value
    assert risk.value == pytest.approx(anonymeter_risk([1] * members.detail["successes"] + [0] * (50 - members.detail[
        "successes"]), [1] * controls.detail["successes"] + [0] * (50 - controls.detail["successes"])))
    assert auc.detail["mixes_utility"] is False


def test_anonymeter_risk_by_hand():
    # members right 9 of 10, controls 6 of 10: (0.9 - 0.6) / (1 - 0.6) = 0.75
    assert anonymeter_risk([1] * 9 + [0], [1] * 6 + [0] * 4) == pytest.approx(0.75)
    assert anonymeter_risk([1, 0], [1, 0]) == 0
    value, lo, hi = risk_ci([1] * 90 + [0] * 10, [1] * 60 + [0] * 40, 500, 0)
    assert value == pytest.approx(0.75) and lo < 0.75 < hi and hi <= 1


def test_label_and_named_attributes_and_downsampled_records(data):
    ten_values = {**FAST, "resamples": 50}  # ten one-vs-rest AUCs per resample
    rows = _rows(attack(AttributeInference, data, original_release(data), attribute="label", partial="downsample",
                        **ten_values))
    auc = rows["with_model.auc"]
    assert auc.detail["attribute"] == "label" and auc.detail["attribute_values"] == list(range(10))
    assert auc.detail["mixes_utility"] is True and "utility" in auc.detail["note"]
    assert auc.detail["partial_record"] == "downsampled x4"
    assert auc.value > 0.7
    odd = _rows(attack(AttributeInference, data, original_release(data), attribute="odd", attack_model="mlp", **FAST))
    assert odd["baseline.auc"].detail["attribute_values"] == [0, 1] and odd["baseline.auc"].detail["attack_model"] == "mlp"
    test = _rows(attack(AttributeInference, data, noise_release(data), holdout="test", **FAST))
    assert test["with_model.control_auc"].n == 100 and test["baseline.auc"].detail["controls_from"] == "test split"
    with pytest.raises(UserError, match="valid: label, big, odd"):
        attack(AttributeInference, data, noise_release(data), attribute="age", **FAST)


def test_without_attribute_columns_the_label_is_the_target():
    data = digits_small(train=60, nonmembers=40)
    rows = _rows(attack(AttributeInference, data, noise_release(data), **{**FAST, "resamples": 20}))
    assert rows["baseline.auc"].detail["attribute"] == "label"


def test_partial_records_hide_what_they_say():
    images = torch.rand(2, 1, 10, 10)
    fill = torch.tensor([0.5])
    centre = _partial.masked(images, "center", 0.36, fill)  # a 6 x 6 square
    assert (centre[:, :, 2:8, 2:8] == 0.5).all() and torch.equal(centre[:, :, :2], images[:, :, :2])
    bottom = _partial.masked(images, "bottom", 0.3, fill)
    assert (bottom[:, :, 7:] == 0.5).all() and torch.equal(bottom[:, :, :7], images[:, :, :7])
    low = _partial.downsampled(images, 5)
    assert low.shape == images.shape and low[0, 0, :5, :5].unique().numel() == 1
    assert _partial.pixel_features(torch.rand(3, 3, 28, 28), 16).shape == (3, 3 * 16 * 16)

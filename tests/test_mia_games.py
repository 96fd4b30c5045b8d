"""Membership inference end to end, on data whose truth is known: both games, the null control, class matching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attack_data import digits_small
from privbench.api import AuditTarget, Dataset, Release, RunContext, Split
from privbench.config import build_config
from privbench.engine import make_rebuild, run_distiller
from privbench.errors import UserError
from privbench.plugins import get_registry
from privbench.testing import check_plugin
from privbench_builtins.attacks import _roc
from privbench_builtins.attacks.mia import MembershipInference

FAST = {"target_epochs": 30, "target_width": 16, "target_depth": 2, "resamples": 200}


def _run(data: Dataset, release: Release, rebuild=None, ctx: RunContext | None = None, **options):
    config = build_config(MembershipInference.Config, {**FAST, **options}, owner="attack mia")
    target = AuditTarget(data, release, {}, rebuild or make_rebuild(get_registry(), release.manifest))
    return MembershipInference().run(target, config, ctx or RunContext(seed=0))


def _row(rows, measure, subset="all"):
    return next(r for r in rows if r.measure == measure and r.subset == subset)


def _release(data, method, ipc=None, **config):
    return run_distiller(get_registry(), method, data, ipc, config or None, RunContext(seed=0))


@pytest.fixture(scope="module")
def data() -> Dataset:
    return digits_small(train=200, nonmembers=100, seed=0)  # random draws: members and non-members exchangeable


def test_mia_registers_and_refuses_bad_options():
    check_plugin(MembershipInference, "attack")
    for bad, needle in (({"shadows": "1"}, "shadows"), ({"variants": "loss,nope"}, "variants"),
                        ({"pipelines": "3"}, "pipelines"), ({"null_holdout": "0.7"}, "null_holdout"),
                        ({"nonmember_splits": "train"}, "nonmember_splits"), ({"game": "tournament"}, "game"),
                        ({"target_steps": "-1"}, "target_steps"), ({"rmia_offline_a": "2"}, "rmia_offline_a")):
        with pytest.raises(UserError, match=needle):
            build_config(MembershipInference.Config, bad, owner="attack mia")


def test_a_release_equal_to_the_training_set_is_found_by_release_distance(data):
    rows = _run(data, _release(data, "original"), variants=("release_distance",), shadows=0)
    auc = _row(rows, "release_distance.auc")
    assert auc.value == 1.0 and auc.game == "release" and auc.detail["confounded"] is False
    tpr = _row(rows, "release_distance.tpr_at_fpr_0.01")  # 200 non-members cannot resolve 1%
    assert tpr.status == "insufficient" and tpr.value is None
    null = _row(rows, "release_distance.auc", "null")  # the null pipeline never saw A: no distance of 0
    assert null.ci_low < 0.5 < null.ci_high, null
    assert null.detail["held_out_A"] == null.detail["nonmembers_B"] == null.n // 2


def _brightened(data: Dataset, by: float) -> Dataset:
    def lift(split: Split) -> Split:
        return Split((split.images + by).clamp(0, 1), split.labels)

    return Dataset("digits-bright", data.train, lift(data.val), lift(data.test), data.class_names,
                   public=True).validate()


def test_brightened_nonmembers_make_the_null_control_exclude_half_and_mark_the_rows():
    data = digits_small(train=400, nonmembers=150, seed=0)
    bright = _brightened(data, 0.5)
    options = {"variants": ("loss", "release_distance"), "shadows": 0, "null_holdout": 0.5, "target_augment": False}
    rows = _run(bright, _release(bright, "original"), **options)
    for variant in ("loss", "release_distance"):
        null = _row(rows, f"{variant}.auc", "null")
        assert null.ci_low > 0.5, null  # A (train-like) and B (brighter) were both unseen: the attack reads the shift
    assert _row(rows, "loss.auc").value > 0.6  # what would otherwise read as leakage
    for r in rows:
        if r.subset != "null" and r.status == "ok":
            assert r.detail["confounded"] is True and r.detail["null_auc"][1] > 0.5, r
    # the same data unshifted: the null holds
    plain = _run(data, _release(data, "original"), **options)
    assert _row(plain, "loss.auc").detail["confounded"] is False


def _noise_rebuild(private: Dataset, ctx: RunContext) -> Release:
    """A pipeline that ignores its private set: seeded uniform noise, 4 images per class."""
    g = torch.Generator().manual_seed(ctx.seed)
    labels = torch.arange(private.num_classes).repeat_interleave(4)
    return Release(torch.rand((labels.numel(), *private.image_shape), generator=g), labels,
                   {"method": "noise", "ipc": 4})


def test_a_noise_release_gives_every_attack_a_ci_containing_half(data):
    release = _noise_rebuild(data, RunContext(seed=0))
    for game in ("release", "method"):
        rows = _run(data, release, rebuild=_noise_rebuild, game=game, shadows=4, pipelines=4)
        for variant in ("loss", "lira_offline", "lira_online", "rmia", "release_distance"):
            for subset in ("all", "null"):
                auc = _row(rows, f"{variant}.auc", subset)
                assert auc.status == "ok" and auc.ci_low < 0.5 < auc.ci_high, (game, auc)


def test_release_game_shadows_are_drawn_like_the_target(data):
    registry = get_registry()
    release = _release(data, "random", 3)
    seen = []
    rebuild = make_rebuild(registry, release.manifest)

    def counting(private, ctx):
        seen.append((private.train.class_counts(private.num_classes), ctx.seed, private.name))
        return rebuild(private, ctx)

    ctx = RunContext(seed=0)
    rows = _run(data, release, rebuild=counting, ctx=ctx, shadows=4, variants=("lira_offline", "rmia"))
    shadows = [s for s in seen if "shadow" in s[2]]
    assert len(shadows) == 4 and len({seed for _, seed, _ in shadows}) == 4
    assert all(counts == data.train.class_counts(10) for counts, _, _ in shadows)  # the target's size and mix
    auc = _row(rows, "lira_offline.auc")
    facts = auc.detail["shadows"]
    # each class: 20 of about 40 pool entries per shadow, so every candidate is IN 1 to 3 of the 4 (floor / ceil)
    assert facts["set_size"] == 200 and 0.25 <= facts["inclusion_rate_min"] <= facts["inclusion_rate_max"] <= 0.75
    assert abs(facts["inclusion_rate_mean"] - 0.5) < 0.05
    assert auc.detail["members_per_class"] == auc.detail["nonmembers_per_class"]
    assert ctx.settings["mia"]["target_recipe"]["optimiser_steps"] == 30
    assert ctx.settings["mia"]["reference_recipe"]["training_images"] == 30
    null = _row(rows, "rmia.auc", "null")
    assert null.status == "ok" and null.detail["private_set"] == 200 - null.detail["held_out_A"]
    # members that seeded the release (random: the released images) are scored on their own, all of them
    init = _row(rows, "lira_offline.auc", "init_members")
    assert init.detail["members"] == 30 and init.detail["members_per_class"] == [3] * 10
    for split in ("val", "test"):  # per-source rows compare equal class mixes
        by_source = _row(rows, "rmia.auc", f"nonmembers={split}")
        assert by_source.detail["members_per_class"] == by_source.detail["nonmembers_per_class"]


def test_method_game_leaves_each_target_out_and_reports_the_spread(data):
    ctx = RunContext(seed=0)
    rows = _run(data, _release(data, "random", 2), ctx=ctx, game="method", pipelines=4,
                variants=("loss", "lira_online", "release_distance"))
    assert {r.game for r in rows} == {"method"}
    facts = ctx.settings["mia"]["pipelines"]
    assert facts["sets"] == 4 and facts["inclusion_rate_min"] == facts["inclusion_rate_max"] == 0.5
    online = _row(rows, "lira_online.auc")
    assert online.detail["pooled_targets"] == 4 and len(online.detail["per_target"]) == 4
    assert online.detail["min_over_targets"] <= online.detail["mean_over_targets"] <= online.detail["max_over_targets"]
    assert online.detail["references_balanced"] is True and online.detail["in_references_per_candidate"] == [1, 1]
    # every pipeline's released members are scored: 2 per class x 10 classes x 4 targets
    assert _row(rows, "release_distance.auc", "init_members").detail["members"] == 80
    assert _row(rows, "release_distance.auc", "init_members").value == 1.0
    null = _row(rows, "loss.auc", "null")  # members and non-members come from one pool: the null shows it
    assert null.ci_low < 0.5 < null.ci_high
    assert not any(r.subset.startswith("nonmembers=") for r in rows)


def test_a_target_that_cannot_rebuild_says_so_instead_of_a_number(data):
    from privbench.testing import attack

    rows = attack(MembershipInference, data, _release(data, "random", 2), variants=("loss", "lira_offline"), **FAST)
    lira = _row(rows, "lira_offline.auc")
    assert lira.status == "unavailable" and "re-run" in lira.detail["reason"]
    assert _row(rows, "loss.auc").status == "ok" and "unavailable" in _row(rows, "loss.auc").detail["null_control"]
    with_rows = {r.subset for r in rows}
    assert {"all", "null", "class=0", "nonmembers=val"} <= with_rows


def test_pooled_rows_and_rates_stay_consistent():
    member = np.r_[np.ones(300, int), np.zeros(300, int)]
    score = np.r_[np.arange(300) + 0.5, np.arange(300)].astype(float)
    groups = np.r_[np.zeros(150), np.ones(150), np.zeros(150), np.ones(150)].astype(int)
    rows = _roc.variant_rows("loss", member, score, [("all", np.ones(600, bool))],
                             calibration=_roc.calibration_half(member, 0), resamples=50, seed=0, game="method",
                             groups=groups)
    auc = next(r for r in rows if r.measure == "loss.auc")
    assert auc.detail["pooled_targets"] == 2 and len(auc.detail["per_target"]) == 2


def test_a_null_excursion_confounds_the_release_game_only():
    from privbench.api import ResultRow
    from privbench_builtins.attacks._membership import confounding

    off = [ResultRow("loss.auc", 0.512, 0.505, 0.520, 2000, True, subset="null")]
    assert confounding(off)["confounded"] is True  # release game: the splits differ
    method = confounding(off, one_pool=True)  # method game: one pool, nothing else to read
    assert method["confounded"] is False and "chance" in method["null_control"]
    assert method["null_auc"] == [0.512, 0.505, 0.520]
    held = [ResultRow("loss.auc", 0.50, 0.48, 0.52, 2000, True, subset="null")]
    assert confounding(held)["confounded"] is False
    gone = [ResultRow.unavailable("loss.auc", "no null pipeline", subset="null")]
    assert "unavailable: no null pipeline" == confounding(gone)["null_control"]


def test_shadow_target_models_trained_as_one_ensemble_give_the_rows_of_one_at_a_time(data):
    """Groups of pipelines (one task each) with their models as one ensemble: the same rows up to rounding."""
    release = _release(data, "random", ipc=10)
    options = {"shadows": 4, "variants": ("loss", "lira_offline", "rmia"), "null_control": False,
               "target_epochs": 6}
    rows = {setting: {(r.measure, r.subset): r for r in _run(data, release, **options, **extra)}
            for setting, extra in (("one at a time", {"shadow_group": 1, "shadow_ensemble": "off"}),
                                   ("ensemble", {"shadow_group": 3, "shadow_ensemble": "on"}))}
    assert rows["one at a time"].keys() == rows["ensemble"].keys()
    for key, row in rows["ensemble"].items():
        other = rows["one at a time"][key]
        assert row.status == other.status and row.n == other.n, key
        if row.value is not None:
            assert row.value == pytest.approx(other.value, abs=2e-3), key
    assert rows["ensemble"]["rmia.auc", "all"].status == "ok"

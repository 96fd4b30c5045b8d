"""Seeds trained as one vectorised ensemble come out as the same models as seeds trained one after another."""

from __future__ import annotations

import pytest
import torch

from privbench.api import Release, RunContext
from privbench.data import load_dataset
from privbench.ensemble import can_ensemble, train_ensemble
from privbench.errors import UserError
from privbench.nets import make_model
from privbench.training import TrainConfig, classification_scores, predict_proba, train_classifier
from privbench.utility import UtilityConfig, evaluate_release, train_on_release, train_seeds


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _models(k, **options):
    return [make_model("convnet", 1, 10, 16, seed=100 + s, width=16, **options) for s in range(k)]


def _generators(k):
    return [torch.Generator().manual_seed(7 + s) for s in range(k)]


def test_an_ensemble_of_three_seeds_equals_three_sequential_trainings(digits):
    x, y = digits.train.images[:96], digits.train.labels[:96]
    # Three batches per epoch, augmentation on, the learning rate decayed half-way.
    config = TrainConfig(epochs=4, batch_size=32)
    ctx = RunContext()
    sequential = [train_classifier(m, x, y, config, ctx, generator=g) for m, g in zip(_models(3), _generators(3))]
    ensemble = train_ensemble(_models(3), x, y, config, ctx, generators=_generators(3))
    untrained = _models(3)
    for seq, ens, init in zip(sequential, ensemble, untrained):
        for (name, a), b, c in zip(seq.state_dict().items(), ens.state_dict().values(), init.state_dict().values()):
            assert torch.allclose(a, b, atol=2e-5, rtol=1e-4), name
            if name.endswith("weight") and "features.0" in name:
                assert not torch.allclose(a, c)  # the models did train
        test_x, test_y = digits.test.images, digits.test.labels
        s_seq = classification_scores(predict_proba(seq, test_x, ctx), test_y, 10)
        s_ens = classification_scores(predict_proba(ens, test_x, ctx), test_y, 10)
        assert s_seq["accuracy"] == s_ens["accuracy"]
        assert s_seq["roc_auc"] == pytest.approx(s_ens["roc_auc"], abs=1e-6)
    # The members are different models (own initialisation and own data order).
    w = [m.classifier.weight for m in ensemble]
    assert not torch.allclose(w[0], w[1]) and not torch.allclose(w[1], w[2])


def test_what_vmap_cannot_take_trains_sequentially_and_exactly_as_before(digits):
    assert not can_ensemble(_models(2, norm="batchnorm"))
    assert not can_ensemble(_models(1))
    assert not can_ensemble([_models(1)[0], make_model("convnet", 1, 10, 16, seed=0, width=8)])
    assert can_ensemble(_models(2))
    with pytest.raises(UserError, match="ensemble needs"):
        train_ensemble(_models(2, norm="batchnorm"), digits.train.images[:8], digits.train.labels[:8],
                       TrainConfig(epochs=1), RunContext(), generators=_generators(2))
    with pytest.raises(UserError, match="as many generators"):
        train_ensemble(_models(2), digits.train.images[:8], digits.train.labels[:8],
                       TrainConfig(epochs=1), RunContext(), generators=_generators(1))
    release = Release(digits.train.images[:40], digits.train.labels[:40], {"method": "t"})
    config = UtilityConfig(epochs=2, width=8, norm="batchnorm")
    ctx = RunContext()
    together = train_seeds(release, digits, "convnet", [3, 4], config, ctx)
    alone = [train_on_release(release, digits, "convnet", s, config, ctx) for s in (3, 4)]
    for a, b in zip(together, alone):
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_utility_scores_are_the_same_with_and_without_the_ensemble(digits):
    release = Release(digits.train.images[:60], digits.train.labels[:60], {"method": "t"})
    rows = {}
    for ensemble in ("on", "off"):
        config = UtilityConfig(epochs=3, width=8, ensemble=ensemble)
        [(info, result)] = evaluate_release(release, digits, models=["convnet"], seeds=3, config=config,
                                            ctx=RunContext(seed=5))
        rows[ensemble] = {r.measure: r for r in result}
        assert info.config["options"]["ensemble"] == ensemble
    for measure, row in rows["on"].items():
        other = rows["off"][measure]
        assert row.n == other.n == 3
        assert row.detail["per_seed"] == pytest.approx(other.detail["per_seed"], abs=1e-6), measure


def test_auto_trains_one_seed_at_a_time_on_a_cpu_and_together_on_cuda(digits):
    from privbench.utility import trains_together

    assert not trains_together(UtilityConfig(), RunContext(device="cpu"))
    assert trains_together(UtilityConfig(), RunContext(device="cuda"))
    assert trains_together(UtilityConfig(ensemble="on"), RunContext(device="cpu"))
    assert not trains_together(UtilityConfig(ensemble="off"), RunContext(device="cuda"))
    small = Release(digits.train.images[:60], digits.train.labels[:60], {"method": "t"})
    ctx = RunContext()
    auto = train_seeds(small, digits, "convnet", [1, 2], UtilityConfig(epochs=2, width=8), ctx)
    off = train_seeds(small, digits, "convnet", [1, 2], UtilityConfig(epochs=2, width=8, ensemble="off"), ctx)
    on = train_seeds(small, digits, "convnet", [1, 2], UtilityConfig(epochs=2, width=8, ensemble="on"), ctx)
    for a, b, c in zip(auto, off, on):
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
        assert all(torch.allclose(p, q, atol=2e-5) for p, q in zip(a.state_dict().values(), c.state_dict().values()))


def test_models_on_their_own_sets_of_one_shape_equal_their_sequential_trainings(digits):
    """The shadow case: model k trains on set k (one shape), as it would alone."""
    sets = [(digits.train.images[i * 40:(i + 1) * 40], digits.train.labels[i * 40:(i + 1) * 40]) for i in range(3)]
    config = TrainConfig(epochs=3, batch_size=16)
    ctx = RunContext()
    alone = [train_classifier(m, x, y, config, ctx, generator=g)
             for m, g, (x, y) in zip(_models(3), _generators(3), sets)]
    together = train_ensemble(_models(3), [x for x, _ in sets], [y for _, y in sets], config, ctx,
                              generators=_generators(3))
    for a, b in zip(alone, together):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.allclose(p, q, atol=2e-5, rtol=1e-4), name
    # Each model saw its own set: trained on one shared set instead, the first model comes out different.
    shared = train_ensemble(_models(3), sets[1][0], sets[1][1], config, ctx, generators=_generators(3))
    assert not torch.allclose(shared[0].classifier.weight, together[0].classifier.weight, atol=1e-3)
    with pytest.raises(UserError, match="of one shape"):
        train_ensemble(_models(2), [sets[0][0], sets[1][0][:20]], [sets[0][1], sets[1][1][:20]], config, ctx,
                       generators=_generators(2))


def test_shadow_models_of_one_shape_train_together_and_equal_their_own_trainings(digits):
    from privbench_builtins.attacks._common import TargetSpec, shadow_models

    releases = [Release(digits.train.images[i * 50:(i + 1) * 50], digits.train.labels[i * 50:(i + 1) * 50],
                        {"method": "t"}) for i in range(3)]
    releases.append(Release(digits.train.images[:30], digits.train.labels[:30], {"method": "t"}))  # another shape
    spec = TargetSpec(epochs=2, width=8, depth=2)
    ctx = RunContext()
    on = shadow_models(releases, [digits] * 4, spec, [11, 12, 13, 14], ctx, ensemble="on")
    off = shadow_models(releases, [digits] * 4, spec, [11, 12, 13, 14], ctx, ensemble="off")
    for a, b in zip(on, off):
        assert all(torch.allclose(p, q, atol=2e-5, rtol=1e-4) for p, q in zip(a.state_dict().values(),
                                                                              b.state_dict().values()))
    alone = train_on_release(releases[1], digits, "convnet", 12, spec.utility_config(50), ctx)
    assert all(torch.equal(p, q) for p, q in zip(alone.state_dict().values(), off[1].state_dict().values()))
    assert not torch.allclose(on[0].classifier.weight, on[1].classifier.weight)

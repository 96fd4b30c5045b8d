"""``dp-dm``: the mechanism is DM's update when its noise and clipping are off, the manifest states a
guarantee the accountant library confirms, and a request without a guarantee is refused."""

from __future__ import annotations

import json
import math

import pytest
import torch

from helpers import assert_one_line_error
from privbench.accounting import epsilon_for
from privbench.api import RunContext
from privbench.augment import DSA
from privbench.data import load_dataset
from privbench.testing import check_plugin, distill
from privbench_builtins.distillers import _dm, _dp_dm, _matching
from privbench_builtins.distillers.dp_dm import DPDistributionMatching

SMALL = {"width": 16, "dsa_strategy": "color_crop_cutout_scale_rotate"}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_contract_and_defaults():
    check_plugin(DPDistributionMatching, "distiller")
    config = DPDistributionMatching.Config()
    assert config.init == "noise" and math.isfinite(config.epsilon) and config.norm == "instancenorm"


def test_without_noise_and_clipping_the_update_is_plain_dm(digits):
    """q = 1, C = inf, sigma = 0: the noisy class means are the true ones, so loss and gradient equal DM's."""
    stats = (torch.full((1,), 0.5), torch.full((1,), 0.5))
    net = _matching.matching_net(digits, stats, 7, width=16, depth=3, norm="instancenorm")
    net.requires_grad_(False)
    dsa = DSA("color_crop_cutout_scale_rotate", mean=stats[0], std=stats[1])
    params = _matching.sample_per_class(dsa, torch.Generator().manual_seed(3), digits.num_classes)
    syn = _matching.SyntheticSet(digits, 2, "noise", stats, torch.device("cpu"), torch.Generator().manual_seed(1))
    labels = digits.train.labels
    by_class = [torch.nonzero(labels == k).flatten() for k in range(digits.num_classes)]
    fake = _dp_dm.synthetic_class_means(net, dsa, syn, params, math.inf)
    counts = [int(i.numel()) for i in by_class]
    real = _dp_dm.noisy_class_means(net, dsa, by_class, digits.train.images, params, 1.0, math.inf, 0.0,
                                    fake.shape[1], torch.Generator(), torch.Generator(), None, counts)
    dp_loss = (real - fake).pow(2).sum()
    (dp_grad,) = torch.autograd.grad(dp_loss, syn.z)
    index = torch.cat(by_class)
    dm_loss = _dm.dm_loss(net, dsa, digits.train.images[index], counts, syn.pixels(), syn.counts, params)
    (dm_grad,) = torch.autograd.grad(dm_loss, syn.z)
    assert float(dp_loss.detach()) == pytest.approx(float(dm_loss.detach()), rel=1e-4)
    assert torch.allclose(dp_grad, dm_grad, rtol=1e-3, atol=1e-6)


def test_clipping_bounds_every_row_and_keeps_short_ones():
    rows = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    clipped = _dp_dm.clip_rows(rows, 1.0)
    assert torch.allclose(clipped.norm(dim=1), torch.tensor([1.0, 0.5]))


def test_the_manifest_states_a_guarantee_the_library_confirms(digits):
    release = distill(DPDistributionMatching, digits, 2, seed=0, iterations=5, epsilon=8.0, sample_rate=0.1, **SMALL)
    privacy = release.manifest["privacy"]
    assert privacy["delta"] == pytest.approx(1 / (10 * len(digits.train)))
    assert privacy["noise_multiplier"] > 0 and privacy["steps"] == 5 and privacy["clip_norm"] == 1.0
    recomputed = epsilon_for(privacy["noise_multiplier"], privacy["sample_rate"], privacy["steps"], privacy["delta"],
                             privacy["accountant"])
    assert recomputed == pytest.approx(privacy["epsilon"]) and recomputed <= 8.0 * 1.01 and recomputed >= 8.0 * 0.99
    assert privacy["accountant_library"].startswith("opacus")
    images = release.images
    assert images.shape == (2 * digits.num_classes, 1, 16, 16) and 0 <= images.min() and images.max() <= 1
    assert "init_indices" not in release.provenance


def test_epsilon_inf_is_seeded_dm_from_noise(digits):
    first = distill(DPDistributionMatching, digits, 1, seed=0, iterations=3, epsilon=math.inf, **SMALL)
    again = distill(DPDistributionMatching, digits, 1, seed=0, iterations=3, epsilon=math.inf, **SMALL)
    assert first.manifest["privacy"]["epsilon"] == "inf" and first.manifest["privacy"]["noise_multiplier"] == 0
    assert torch.equal(first.images, again.images)


def test_a_release_without_a_guarantee_is_refused_in_one_line(cli, tmp_path):
    out = tmp_path / "rel"
    for setting, needle in (("init=real", "init=real"), ("clip_norm=inf", "clip_norm"), ("norm=batchnorm", "norm")):
        result = cli("distill", "--data", "digits", "--method", "dp-dm", "--ipc", "1", "--set", setting,
                     "--no-evaluate", "--out", out)
        assert_one_line_error(result, needle)
        assert not out.exists() and not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_the_cli_release_json_carries_the_guarantee(cli, tmp_path):
    out = tmp_path / "rel"
    result = cli("distill", "--data", "digits", "--method", "dp-dm", "--ipc", "1", "--set", "iterations=2",
                 "--set", "width=8", "--set", "epsilon=4", "--no-evaluate", "--out", out, "-q")
    assert result.code == 0, result.err
    manifest = json.loads((out / "release.json").read_text())
    assert manifest["privacy"]["epsilon"] <= 4.04 and manifest["config"]["epsilon"] == 4.0


def test_an_epsilon_inf_release_survives_its_own_manifest(cli, tmp_path):
    """Standard JSON has no Infinity: the manifest spells it "inf", and the release loads and re-runs from it."""
    from privbench.engine import make_rebuild
    from privbench.plugins import get_registry
    from privbench.releases import load_release

    out = tmp_path / "rel"
    result = cli("distill", "--data", "digits", "--method", "dp-dm", "--ipc", "1", "--set", "iterations=2",
                 "--set", "width=8", "--set", "epsilon=inf", "--no-evaluate", "--out", out, "-q")
    assert result.code == 0, result.err
    text = (out / "release.json").read_text()
    assert "Infinity" not in text and json.loads(text)["config"]["epsilon"] == "inf"
    release = load_release(out)
    rebuilt = make_rebuild(get_registry(), release.manifest)(load_dataset("digits"), RunContext(seed=0))
    assert rebuilt.manifest["privacy"]["epsilon"] == "inf"

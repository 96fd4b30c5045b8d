"""The reconstruction attack, its member/non-member contrast and null control, and the memorisation check."""

from __future__ import annotations

import pytest
import torch

from attack_data import digits_small, noise_release, original_release  # noqa: F401 - fixtures
from privbench.api import Release, RunContext
from privbench.testing import attack, check_plugin
from privbench_builtins.attacks._autoencoder_net import ConvAutoencoder, latent_channels_for
from privbench_builtins.attacks.autoencoder import AutoencoderAttack

FAST = {"epochs": 2, "min_steps": 60, "max_images": 80, "resamples": 200}


def _metrics(*names):
    from privbench.engine import metric_instances
    from privbench.plugins import get_registry

    return metric_instances(get_registry(), "cpu", list(names))


def _row(rows, measure):
    return next(r for r in rows if r.measure == measure)


@pytest.fixture(scope="module")
def data():
    return digits_small(train=300, nonmembers=20)


def test_autoencoder_registers_and_fits_odd_sizes_and_colour():
    check_plugin(AutoencoderAttack, "attack")
    for shape, depth in (((1, 28, 28), 3), ((3, 15, 13), 2), ((1, 7, 9), 3)):
        net = ConvAutoencoder(shape[0], shape[1:], width=4, depth=depth, latent_channels=2)
        with torch.no_grad():
            out = net(torch.rand(2, *shape))
        assert out.shape == (2, *shape) and 0 <= float(out.min()) and float(out.max()) <= 1


def test_the_latent_is_smaller_than_the_input():
    """The default bottleneck: 4 x 7 x 7 = 196 values for a 28 x 28 image, a quarter of its pixels."""
    assert latent_channels_for(0.25, 1, (28, 28), 2) == 4
    net = ConvAutoencoder(1, (28, 28), width=32, depth=2, latent_channels=4)
    with torch.no_grad():
        code = net.encoder(torch.rand(1, 1, 28, 28))
    assert tuple(code.shape[1:]) == net.code_shape == (4, 7, 7) and code[0].numel() < 28 * 28
    assert latent_channels_for(0.25, 3, (64, 64), 2) * 16 * 16 <= 0.25 * 3 * 64 * 64


def test_trained_on_the_data_it_reconstructs_better_than_trained_on_noise(data):
    metrics = _metrics("ssim", "psnr")
    real = attack(AutoencoderAttack, data, original_release(data), metrics=metrics, **FAST)
    noise = attack(AutoencoderAttack, data, noise_release(data, per_class=30), metrics=metrics, **FAST)
    ssim_real, ssim_noise = _row(real, "reconstruction.ssim"), _row(noise, "reconstruction.ssim")
    assert ssim_real.n == 40 and ssim_real.detail["steps"] >= 60  # class-matched to the 40 non-members
    assert ssim_real.detail["latent_fraction_of_input"] <= 0.25
    assert ssim_real.ci_low > ssim_noise.ci_high, (ssim_real, ssim_noise)
    assert _row(real, "reconstruction.psnr").value > _row(noise, "reconstruction.psnr").value
    # nothing in a noise release is a copy of anyone
    copies = _row(noise, "memorisation.near_copies")
    assert copies.value == 0 and copies.detail["near_copies"] == 0 and copies.ci_high > 0
    assert _row(noise, "memorisation.verbatim").value == 0


def test_members_the_release_memorised_are_reconstructed_better_than_non_members():
    """The release is the whole (tiny) private set and the autoencoder overfits it: the contrast shows it, and the
    null pipeline (the same without half of the members) shows no gap between two unseen groups."""
    from privbench.api import AuditTarget
    from privbench.config import build_config
    from privbench.engine import make_rebuild, run_distiller
    from privbench.plugins import get_registry

    data = digits_small(train=20, nonmembers=40, seed=0)
    release = run_distiller(get_registry(), "original", data, None, None, RunContext(seed=0))
    config = build_config(AutoencoderAttack.Config, {"epochs": 2, "min_steps": 800, "null_holdout": 0.5,
                                                     "resamples": 300}, owner="attack autoencoder")
    target = AuditTarget(data, release, _metrics("ssim"), make_rebuild(get_registry(), release.manifest))
    rows = AutoencoderAttack().run(target, config, RunContext(seed=0))
    gap = _row(rows, "reconstruction_gap.ssim")
    assert gap.ci_low > 0 and gap.detail["confounded"] is False, gap
    auc = _row(rows, "reconstruction_mia.auc")
    assert auc.ci_low > 0.5 and auc.game == "release", auc
    null_gap = next(r for r in rows if r.measure == "reconstruction_gap.ssim" and r.subset == "null")
    assert null_gap.detail["held_out_A"] == null_gap.detail["nonmembers_B"] > 5 and null_gap.ci_low < gap.value
    assert _row(rows, "reconstruction_nonmembers.ssim").value < _row(rows, "reconstruction.ssim").value


def test_a_noise_release_shows_no_contrast(data):
    rows = attack(AutoencoderAttack, data, noise_release(data, per_class=30), metrics=_metrics("ssim"), **FAST)
    gap = _row(rows, "reconstruction_gap.ssim")
    assert gap.ci_low < 0 < gap.ci_high, gap
    auc = _row(rows, "reconstruction_mia.auc")
    assert auc.ci_low < 0.5 < auc.ci_high, auc
    null = next(r for r in rows if r.measure == "reconstruction_mia.auc" and r.subset == "null")
    assert null.status == "unavailable" and "re-run" in null.detail["reason"]  # this target cannot rebuild


def test_copied_private_images_are_all_flagged_as_near_copies(data):
    index = torch.arange(0, 300, 15)
    release = Release(data.train.images[index].clone(), data.train.labels[index].clone(), {"method": "copies"})
    rows = attack(AutoencoderAttack, data, release, metrics=_metrics("ssim", "lpips"), **FAST)
    copies = _row(rows, "memorisation.near_copies")
    assert copies.value == 1.0 and copies.n == 20 and copies.detail["near_copies"] == 20
    verbatim = _row(rows, "memorisation.verbatim")
    assert verbatim.value == 1.0 and verbatim.detail["verbatim"] == 20 and verbatim.ci_low < 1
    assert copies.detail["threshold"] == 0.95 and copies.detail["metric"] == "ssim"
    assert 0.8 < copies.ci_low < 1.0 and copies.ci_high == 1.0  # exact binomial interval, not a collapsed bootstrap
    for space in ("pixel", "feature"):
        assert _row(rows, f"memorisation.{space}.ssim").value == pytest.approx(1.0, abs=1e-4)
    # LPIPS cannot run here (no backbone weights): its rows say so and carry no number
    for measure in ("reconstruction.lpips", "memorisation.pixel.lpips", "memorisation.feature.lpips"):
        row = _row(rows, measure)
        assert row.status == "unavailable" and row.value is None and row.detail["reason"]


def test_near_copy_threshold_is_configurable_and_needs_its_metric(data):
    index = torch.arange(0, 300, 30)
    images = (data.train.images[index] + 0.1 * torch.rand(index.numel(), *data.image_shape,
                                                          generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    release = Release(images, data.train.labels[index].clone(), {"method": "noisy-copies"})
    strict = attack(AutoencoderAttack, data, release, metrics=_metrics("ssim"), near_copy_threshold=0.999, **FAST)
    assert _row(strict, "memorisation.near_copies").value == 0
    loose = attack(AutoencoderAttack, data, release, metrics=_metrics("ssim", "psnr"), near_copy_metric="psnr",
                   near_copy_threshold=15.0, **FAST)
    assert _row(loose, "memorisation.near_copies").value == 1.0
    missing = attack(AutoencoderAttack, data, release, metrics=_metrics("psnr"), **FAST)
    row = _row(missing, "memorisation.near_copies")
    assert row.status == "unavailable" and "'ssim'" in row.detail["reason"]


def test_figures_only_when_private_images_may_be_shown(data, tmp_path):
    from privbench.api import AuditTarget
    from privbench.config import build_config

    release = Release(data.train.images[:20].clone(), data.train.labels[:20].clone(), {"method": "copies"})
    target = AuditTarget(data, release, _metrics("ssim"), lambda private, ctx: None)
    config = build_config(AutoencoderAttack.Config, FAST, owner="attack autoencoder")
    hidden, shown = tmp_path / "hidden", tmp_path / "shown"
    hidden.mkdir(), shown.mkdir()
    ctx = RunContext(out_dir=hidden, allow_private_images=False)
    AutoencoderAttack().run(target, config, ctx)
    assert list(hidden.iterdir()) == []
    assert any("--show-private-images" in w for w in ctx.warnings)
    AutoencoderAttack().run(target, config, RunContext(out_dir=shown, allow_private_images=True))
    assert {p.name for p in shown.iterdir()} == {"reconstructions.png", "memorisation.png"}


def test_an_empty_release_is_refused(data):
    from privbench.errors import UserError

    empty = Release(torch.empty(0, *data.image_shape), torch.empty(0, dtype=torch.long), {"method": "empty"})
    with pytest.raises(UserError, match="no images"):
        attack(AutoencoderAttack, data, empty, metrics=_metrics("ssim"), **FAST)

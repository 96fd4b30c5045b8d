"""The ``gm`` distiller: the distance by hand, the loop schedule, a falling loss, repeatable runs, exit 2."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from helpers import assert_one_line_error
from privbench.augment import DSA, AugParams
from privbench.data import load_dataset
from privbench.testing import check_plugin, distill
from privbench_builtins.distillers import _gm, _matching
from privbench_builtins.distillers.gm import GradientMatching

SMALL = {"width": 16, "depth": 2, "batch_real": 16}



@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_contract_and_published_defaults():
    check_plugin(GradientMatching, "distiller")
    c = GradientMatching.Config()
    assert (c.iterations, c.lr_img, c.momentum, c.lr_net, c.batch_real, c.init) == (1000, 0.1, 0.5, 0.01, 256, "noise")
    assert c.dsa_strategy == "none" and (c.width, c.depth, c.norm) == (128, 3, "instancenorm")
    assert c.class_batching == "auto"


def test_gradient_distance_by_hand():
    syn = {
        "conv.weight": torch.tensor([[[[3.0, 4.0]]], [[[1.0, 0.0]]]]),  # 2 x 1 x 1 x 2: rows (3, 4) and (1, 0)
        "fc.weight": torch.tensor([[1.0, 0.0], [1.0, 1.0]]),
        "fc.bias": torch.tensor([5.0, -5.0]),  # 1-D: skipped
    }
    real = {
        "conv.weight": torch.tensor([[[[4.0, 3.0]]], [[[-2.0, 0.0]]]]),
        "fc.weight": torch.tensor([[0.0, 2.0], [3.0, 3.0]]),
        "fc.bias": torch.tensor([-1.0, 1.0]),
    }
    # Row cosines: (3,4).(4,3) = 24 / (5 * 5) = 0.96; (1,0).(-2,0) = -1; (1,0).(0,2) = 0; (1,1).(3,3) = 1.
    # Distance: (1 - 0.96) + (1 + 1) + (1 - 0) + (1 - 1) = 3.04 (the reference adds 1e-6 to each norm product).
    expected = (1 - 24 / (25 + 1e-6)) + (1 + 2 / (2 + 1e-6)) + 1 + (1 - 6 / (math.sqrt(2) * math.sqrt(18) + 1e-6))
    value = _gm.gradient_distance(syn, real)
    assert value.item() == pytest.approx(expected, abs=1e-6)
    assert value.item() == pytest.approx(3.04, abs=1e-5)
    # Sequences and a leading class dimension give the same number.
    assert _gm.gradient_distance(list(syn.values()), list(real.values())).item() == pytest.approx(expected, abs=1e-6)
    stacked_syn = {k: torch.stack([v, v]) for k, v in syn.items()}
    stacked_real = {k: torch.stack([v, v]) for k, v in real.items()}
    assert _gm.gradient_distance(stacked_syn, stacked_real, classes=True).item() == pytest.approx(2 * expected, abs=1e-5)


def test_loop_schedule_follows_the_reference_and_interpolates():
    reference = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}
    for ipc, loops in reference.items():
        assert _gm.loops_for(ipc) == loops
    assert _gm.loops_for(2) == (2, 6) and _gm.loops_for(5) == (5, 23) and _gm.loops_for(15) == (15, 38)
    assert _gm.loops_for(100) == (50, 10) and _gm.loops_for(1000) == (50, 10)


def test_loss_falls(digits):
    release = distill(GradientMatching, digits, 1, seed=0, iterations=12, lr_img=1.0, **SMALL)
    history = release.provenance["loss_history"]
    assert len(history) == 12 and release.manifest["outer_loop"] == 1
    assert np.mean(history[-3:]) < 0.8 * np.mean(history[:3]), history
    assert release.images.min() >= 0 and release.images.max() <= 1


def test_batched_gradients_equal_the_per_class_loop(digits):
    stats = _matching.image_stats(digits)
    net = _matching.matching_net(digits, stats, seed=1, width=8, depth=2, norm="instancenorm")
    dsa = DSA("crop_rotate", mean=stats[0], std=stats[1])
    g = torch.Generator().manual_seed(0)
    params = [AugParams(op, torch.rand(1, {"crop": 2, "rotate": 1}[op], generator=g)) for op in ["crop", "rotate", "crop"]]
    z = torch.rand(6, 1, 16, 16, generator=g).requires_grad_(True)
    for real_counts in ([4, 4, 4], [5, 3, 4]):  # equal sizes are vectorised; unequal ones fall back to the loop
        real = torch.rand(sum(real_counts), 1, 16, 16, generator=g)
        losses, grads = [], []
        for vectorise in (True, False):
            loss = _gm.gm_loss(_gm.ClassGradients(net, vectorise), dsa, real, real_counts, z, [2, 2, 2], params)
            losses.append(loss)
            grads.append(torch.autograd.grad(loss, z)[0])
        assert torch.allclose(losses[0], losses[1], rtol=1e-5, atol=1e-5), losses
        assert torch.allclose(grads[0], grads[1], rtol=1e-3, atol=1e-5)


def test_same_seed_same_release_with_inner_loop_and_dsa(digits):
    options = dict(SMALL, iterations=1, init="real", dsa_strategy="color_crop_cutout_scale_rotate", batch_train=8)
    a = distill(GradientMatching, digits, 2, seed=3, **options)
    b = distill(GradientMatching, digits, 2, seed=3, **options)
    assert (a.manifest["outer_loop"], a.manifest["inner_loop"]) == (2, 6)
    assert torch.equal(a.images, b.images) and a.provenance["loss_history"] == b.provenance["loss_history"]
    c = distill(GradientMatching, digits, 2, seed=4, **options)
    assert not torch.equal(a.images, c.images)
    vectorised = distill(GradientMatching, digits, 2, seed=3, class_batching="vmap", **options)
    assert torch.allclose(a.images, vectorised.images, atol=1e-4)


def test_batchnorm_network_runs_in_both_modes(digits):
    options = dict(iterations=1, norm="batchnorm", width=8, depth=2, batch_real=8)
    loop = distill(GradientMatching, digits, 1, class_batching="loop", **options)
    vectorised = distill(GradientMatching, digits, 1, class_batching="vmap", **options)
    assert loop.images.shape == (10, 1, 16, 16)
    assert torch.allclose(loop.images, vectorised.images, atol=1e-4)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--ipc", "0"], "positive"),
        (["--ipc", "-1"], "positive"),
        (["--ipc", "500", "--set", "init=real"], "larger than class"),
        (["--ipc", "1", "--set", "outer=3"], "unknown option outer"),
        (["--ipc", "1", "--set", "outer_loop=0"], "outer_loop"),
        (["--ipc", "1", "--set", "init=pixels"], "init must be one of"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, tmp_path, args, needle):
    out = tmp_path / "release"
    result = cli("distill", "--data", "digits", "--method", "gm", *args, "--no-evaluate", "--out", out)
    assert_one_line_error(result, needle)
    assert not out.exists()


def test_cli_any_ipc_runs(cli, tmp_path):
    out = tmp_path / "gm"
    result = cli("distill", "--data", "digits", "--method", "gm", "--ipc", "3", "--set", "iterations=1",
                 "--set", "width=8", "--set", "depth=2", "--set", "batch_real=8", "--set", "inner_loop=1",
                 "--no-evaluate", "--device", "cpu", "--out", out)
    assert result.code == 0, result.err
    assert (out / "release.json").is_file() and (out / "preview.png").is_file()


def test_bf16_precision_keeps_the_loss_close_and_the_release_valid(digits):
    """precision=bf16: the real gradients under autocast give a loss within bf16 rounding; float32 images out."""
    stats = _matching.image_stats(digits)
    net = _matching.matching_net(digits, stats, seed=1, width=16, depth=2, norm="instancenorm")
    dsa = DSA("none", mean=stats[0], std=stats[1])
    real, counts = digits.train.images[:60], [20, 20, 20]
    z = digits.train.images[60:66].clone().requires_grad_(True)
    grads = _gm.ClassGradients(net, False)
    full = _gm.gm_loss(grads, dsa, real, counts, z, [2, 2, 2], None)
    half = _gm.gm_loss(grads, dsa, real, counts, z, [2, 2, 2], None, real_dtype=torch.bfloat16)
    assert half.dtype == torch.float32 and not torch.equal(full, half)
    assert float(half.detach()) == pytest.approx(float(full.detach()), rel=0.1)
    release = distill(GradientMatching, digits, 1, seed=0, iterations=2, precision="bf16", inner_loop=2,
                      outer_loop=2, **SMALL)
    assert release.images.dtype == torch.float32 and 0 <= float(release.images.min()) <= float(release.images.max()) <= 1


@pytest.mark.parametrize("norm", ["instancenorm", "batchnorm"])
def test_real_gradients_summed_over_chunks_equal_one_pass(digits, norm):
    """The CPU's chunked real gradients are the full batch's, for every chunk size and uneven classes."""
    stats = _matching.image_stats(digits)
    net = _matching.matching_net(digits, stats, seed=2, width=8, depth=2, norm=norm)
    if norm == "batchnorm":
        _gm.freeze_batchnorm(net, _matching.RealBatches(digits, 4, torch.device("cpu"), torch.Generator()))
    real, counts = digits.train.images[:23], [11, 5, 7]
    whole = _gm.ClassGradients(net, False)(real, counts, differentiable=False)
    for chunk in (1, 3, 11, 64):
        parts = _gm.ClassGradients(net, False, chunk)(real, counts, differentiable=False)
        assert parts.keys() == whole.keys()
        for name in whole:
            assert not parts[name].requires_grad
            assert torch.allclose(parts[name], whole[name], rtol=1e-4, atol=1e-6), (chunk, name)
    assert _gm.gradient_chunk(torch.device("cuda"), 128, (1, 28, 28)) is None
    assert _gm.gradient_chunk(torch.device("cpu"), 128, (1, 28, 28)) == 31  # 31 x 128 x 28 x 28 floats: 12 MiB
    assert _gm.gradient_chunk(torch.device("cpu"), 128, (3, 224, 224)) == 1

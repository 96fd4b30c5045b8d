"""The ``dm`` distiller: its loss falls, batching changes nothing, runs repeat, bad input exits 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import assert_one_line_error
from privbench.augment import DSA, AugParams
from privbench.data import load_dataset
from privbench.testing import check_plugin, distill
from privbench_builtins.distillers import _dm, _matching
from privbench_builtins.distillers.dm import DistributionMatching

NO_FLIP = "color_crop_cutout_scale_rotate"  # the reference's strategy for digits
SMALL = {"width": 16, "batch_real": 32, "dsa_strategy": NO_FLIP}



@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_contract_and_published_defaults():
    check_plugin(DistributionMatching, "distiller")
    config = DistributionMatching.Config()
    assert (config.iterations, config.momentum, config.batch_real, config.init) == (20000, 0.5, 256, "real")
    assert (config.width, config.depth, config.norm) == (128, 3, "instancenorm")
    assert _dm.learning_rate(config, 10) == 1.0 and _dm.learning_rate(config, 50) == 1.0
    assert _dm.learning_rate(config, 51) == 10.0


def test_loss_falls_and_release_is_valid(digits):
    release = distill(DistributionMatching, digits, 2, seed=0, iterations=30, **SMALL)
    history = release.provenance["loss_history"]
    assert len(history) == 30 and release.provenance["loss_history_every"] == 1
    first, last = np.mean(history[:5]), np.mean(history[-5:])
    assert last < 0.6 * first, history
    assert release.images.shape == (20, 1, 16, 16)
    assert release.images.min() >= 0 and release.images.max() <= 1
    assert release.labels.tolist() == [c for c in range(10) for _ in range(2)]
    # Initialised from real images: the private provenance says which, and they are of the right class.
    init = torch.tensor(release.provenance["init_indices"])
    assert torch.equal(digits.train.labels[init], release.labels)


def test_batched_loss_equals_per_class_loop(digits):
    torch.manual_seed(0)
    net = _matching.matching_net(digits, _matching.image_stats(digits), seed=3, width=16, depth=3, norm="instancenorm")
    net.requires_grad_(False)
    mean, std = _matching.image_stats(digits)
    dsa = DSA(NO_FLIP, mean=mean, std=std)
    g = torch.Generator().manual_seed(1)
    real_counts = [7, 5, 6]  # unequal class sizes, as with a small class
    real = torch.rand(sum(real_counts), 1, 16, 16, generator=g)
    syn_counts = [2, 2, 2]
    ops = ["rotate", "color", "rotate"]  # two classes share an operation, one differs
    params = [AugParams(op, torch.rand(1, {"rotate": 1, "color": 3}[op], generator=g)) for op in ops]
    for p in (params, None):
        z = torch.rand(6, 1, 16, 16, generator=g).requires_grad_(True)
        batched = _dm.dm_loss(net, dsa, real, real_counts, z, syn_counts, p)
        looped = _dm.dm_loss_per_class(net, dsa, real, real_counts, z, syn_counts, p)
        assert torch.allclose(batched, looped, rtol=1e-5, atol=1e-6), (batched, looped)
        g_batched, = torch.autograd.grad(batched, z)
        g_looped, = torch.autograd.grad(looped, z)
        assert torch.allclose(g_batched, g_looped, rtol=1e-4, atol=1e-6)


def test_same_seed_same_release_and_loop_variant_agrees(digits):
    options = dict(SMALL, iterations=3, batch_real=16)
    a = distill(DistributionMatching, digits, 1, seed=5, **options)
    b = distill(DistributionMatching, digits, 1, seed=5, **options)
    c = distill(DistributionMatching, digits, 1, seed=6, **options)
    loop = distill(DistributionMatching, digits, 1, seed=5, batched=False, **options)
    assert torch.equal(a.images, b.images) and a.provenance["loss_history"] == b.provenance["loss_history"]
    assert not torch.equal(a.images, c.images)
    assert torch.allclose(a.images, loop.images, atol=1e-4)


def test_noise_init_and_streamed_real_batches(digits, monkeypatch):
    release = distill(DistributionMatching, digits, 1, iterations=2, init="noise", dsa_strategy="none", width=8,
                      batch_real=8)
    assert "init_indices" not in release.provenance and release.images.shape == (10, 1, 16, 16)
    batchnorm = distill(DistributionMatching, digits, 1, iterations=2, norm="batchnorm", width=8, batch_real=8)
    assert batchnorm.images.shape == (10, 1, 16, 16)
    # A private set too large for the device stays in host memory; the draws are the same.
    staged = _matching.RealBatches(digits, 4, torch.device("cpu"), torch.Generator().manual_seed(0))
    monkeypatch.setattr(_matching, "ON_DEVICE_LIMIT", 0)
    streamed = _matching.RealBatches(digits, 4, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert streamed.source is digits.train.images
    x1, counts = staged.draw()
    x2, _ = streamed.draw()
    assert counts == [4] * 10 and torch.equal(x1, x2)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--ipc", "0"], "positive"),
        (["--ipc", "-3"], "positive"),
        (["--ipc", "500", "--set", "iterations=1"], "larger than class"),
        (["--ipc", "1", "--set", "itertions=5"], "unknown option itertions"),
        (["--ipc", "1", "--set", "iterations=1", "--set", "dsa_strategy=crop_blur"], "unknown augmentation"),
        (["--ipc", "1", "--set", "batch_real=0"], "batch_real"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, tmp_path, args, needle):
    out = tmp_path / "release"
    result = cli("distill", "--data", "digits", "--method", "dm", *args, "--no-evaluate", "--out", out)
    assert_one_line_error(result, needle)
    assert not out.exists()


def test_cli_writes_release_manifest_preview_and_results(cli, tmp_path):
    out = tmp_path / "dm"
    result = cli(
        "distill", "--data", "digits", "--method", "dm", "--ipc", "2",
        "--set", "iterations=5", "--set", "width=16", "--set", "batch_real=16", "--set", f"dsa_strategy={NO_FLIP}",
        "--eval-seeds", "1", "--eval-set", "epochs=2", "--eval-set", "width=16", "--device", "cpu", "--out", out,
    )
    assert result.code == 0, result.err
    for name in ("release.npz", "release.json", "preview.png", "results.parquet"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "release.json").read_text())
    for key in ("method", "config", "seed", "versions", "wall_time_s", "device"):
        assert key in manifest, key
    assert manifest["method"] == "dm" and manifest["config"]["iterations"] == 5 and manifest["device"] == "cpu"
    private = json.loads((out / "provenance.private.json").read_text())
    assert len(private["loss_history"]) == 5 and len(private["source_fingerprint"]) == 64
    with np.load(out / "release.npz", allow_pickle=False) as data:
        assert sorted(data.files) == ["images", "labels"]
        assert data["images"].shape[0] == 20
    import pyarrow.parquet as pq

    measures = set(pq.read_table(out / "results.parquet").column("measure").to_pylist())
    assert {"accuracy", "balanced_accuracy"} <= measures


def test_bf16_real_pass_is_a_close_loss_and_gradient_and_a_valid_release(digits):
    """real_precision=bf16 autocasts only the real images' pass: the loss within bf16's rounding, float32 out."""
    from privbench.nets import make_model

    mean, std = _matching.image_stats(digits)
    net = make_model("convnet", 1, 10, (16, 16), seed=3, mean=mean, std=std, width=16, depth=2)
    dsa = DSA(NO_FLIP, mean=mean, std=std)
    real, counts = digits.train.images[:60], [20, 20, 20]
    z = digits.train.images[60:66].clone().requires_grad_(True)
    full = _dm.dm_loss(net, dsa, real, counts, z, [2, 2, 2], None)
    half = _dm.dm_loss(net, dsa, real, counts, z, [2, 2, 2], None, real_dtype=torch.bfloat16)
    assert half.dtype == torch.float32 and not torch.equal(full, half)  # bf16 really ran, and rounded
    assert float(half.detach()) == pytest.approx(float(full.detach()), rel=0.05)
    g_full, = torch.autograd.grad(full, z)
    g_half, = torch.autograd.grad(half, z)
    assert torch.nn.functional.cosine_similarity(g_full.flatten(), g_half.flatten(), dim=0) > 0.99
    release = distill(DistributionMatching, digits, 1, seed=5, real_precision="bf16", **dict(SMALL, iterations=2))
    assert release.images.dtype == torch.float32 and 0 <= float(release.images.min()) <= float(release.images.max()) <= 1

"""ddm on tiny digits: the release contract, diversity or logged relaxation, the DDPM cache, determinism, CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import assert_one_line_error
from privbench.api import RunContext
from privbench.data import load_dataset
from privbench.engine import run_distiller
from privbench.plugins import get_registry

TINY = {
    "train_steps": 20,
    "batch_size": 32,
    "timesteps": 100,
    "unet_channels": "8,16",
    "norm_groups": 4,
    "attention": False,
    "sampling_steps": 4,
    "min_candidates": 6,
    "candidates_per_image": 3,
    "feature_epochs": 1,
    "feature_width": 16,
    "refine_steps": 3,
}
"""Seconds, not minutes: a two-level UNet of 8/16 channels, 20 training steps, 4 DDIM steps."""



@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _distill(data, cache_dir: Path, ipc: int = 2, seed: int = 0, **changes):
    ctx = RunContext(seed=seed, cache_dir=cache_dir)
    return run_distiller(get_registry(), "ddm", data, ipc, {**TINY, **changes}, ctx)


def _cache_files(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "ddm").glob("ddpm-*.pt"))


@pytest.fixture(scope="module")
def first(digits, tmp_path_factory):
    """One release made from scratch (ipc 2, seed 0) and the cache directory it filled."""
    cache = tmp_path_factory.mktemp("ddm-cache")
    return _distill(digits, cache), cache


def _cache_copy(cache: Path, to: Path) -> Path:
    (to / "ddm").mkdir(parents=True)
    for path in _cache_files(cache):
        shutil.copy(path, to / "ddm" / path.name)
    return to


def test_release_has_k_images_per_class_in_range_with_diverse_picks(digits, first):
    release, _ = first
    k, classes = 2, digits.num_classes
    assert release.images.shape == (k * classes, *digits.image_shape)
    assert release.images.dtype == torch.float32 and release.labels.dtype == torch.int64
    assert 0 <= float(release.images.min()) and float(release.images.max()) <= 1
    assert torch.bincount(release.labels, minlength=classes).tolist() == [k] * classes
    m, p = release.manifest, release.provenance
    assert p["ddpm"]["cached"] is False and p["ddpm"]["final_loss"] > 0
    assert "ddpm" not in m and "refinement" not in m  # statistics of the private images are not shared
    assert set(m["stage_seconds"]) >= {"ddpm_training", "feature_network", "sampling", "refinement", "selection"}
    assert sum(m["candidates"]["after_assignment"]) == sum(m["candidates"]["generated"])
    assert m["candidates"]["label_changes"] == sum(d["count"] for d in m["candidates"]["label_change_detail"])
    logged = {r["class"] for r in m["selection"]["relaxations"]}
    for entry in m["selection"]["per_class"]:
        # Picks honour tau, or the relaxation that let them closer is on record (manifest and warning).
        assert entry["min_pick_distance"] >= entry["final_tau"] - 1e-9
        assert entry["final_tau"] == entry["tau"] or entry["class"] in logged
    assert len([w for w in p["warnings"] if "relaxed tau" in w]) == len(logged)
    json.dumps(m)  # the manifest is written as JSON


def test_huge_tau_forces_a_logged_relaxation(digits, first, tmp_path):
    release = _distill(digits, _cache_copy(first[1], tmp_path), ipc=2, tau=1000.0, max_halvings=2)
    m, p = release.manifest, release.provenance
    relaxed = m["selection"]["relaxations"]
    assert {r["class"] for r in relaxed} == set(digits.class_names)
    assert all(r["halvings"] >= 1 and r["final_tau"] < r["tau"] for r in relaxed)
    warned = [w for w in p["warnings"] if "relaxed tau" in w]
    assert len(warned) == digits.num_classes and all("\n" not in w for w in warned)
    assert torch.bincount(release.labels, minlength=digits.num_classes).tolist() == [2] * digits.num_classes


def test_cache_reuses_the_ddpm_and_same_seed_gives_the_same_release(digits, first, tmp_path):
    reference, cache = first
    cache = _cache_copy(cache, tmp_path / "a")
    again = _distill(digits, cache)
    fresh = _distill(digits, tmp_path / "b")  # trained again from scratch, same seed
    assert again.provenance["ddpm"]["cached"] is True and fresh.provenance["ddpm"]["cached"] is False
    assert again.provenance["ddpm"]["final_loss"] == reference.provenance["ddpm"]["final_loss"]
    assert again.manifest["stage_seconds"]["ddpm_training"] < fresh.manifest["stage_seconds"]["ddpm_training"]
    for other in (again, fresh):
        assert torch.equal(other.images, reference.images) and torch.equal(other.labels, reference.labels)
    # Another ipc on the same data shares the model; another seed does not.
    assert _distill(digits, cache, ipc=1).provenance["ddpm"]["cached"] is True
    assert _distill(digits, cache, seed=1).provenance["ddpm"]["cached"] is False
    assert len(_cache_files(cache)) == 2


@pytest.mark.parametrize("damage", ["garbage", "truncated", "tampered"])
def test_a_damaged_cache_file_is_retrained(digits, first, tmp_path, damage):
    reference, cache = first
    (path,) = _cache_files(_cache_copy(cache, tmp_path))
    if damage == "garbage":
        path.write_bytes(b"not a model")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    else:  # readable, but a weight changed behind the checksum's back
        payload = torch.load(path, weights_only=True)
        name = next(iter(payload["state_dict"]))
        payload["state_dict"][name] += 1.0
        torch.save(payload, path)
    rerun = _distill(digits, tmp_path)
    assert rerun.provenance["ddpm"]["cached"] is False
    assert any("damaged" in w for w in rerun.provenance["warnings"])
    assert torch.equal(rerun.images, reference.images)
    if damage == "garbage":
        assert _distill(digits, tmp_path).provenance["ddpm"]["cached"] is True  # the file was rewritten


def test_an_unwritable_cache_is_a_warning_not_a_failure(digits, first, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    release = _distill(digits, blocker)
    assert any("could not cache" in w for w in release.provenance["warnings"])
    assert torch.equal(release.images, first[0].images)


def test_a_class_without_training_images_is_refused_before_any_training(tmp_path):
    from privbench.testing import tiny_dataset
    from privbench.errors import UserError

    data = tiny_dataset(classes=3)
    data = data.with_train(data.train.subset(data.train.labels < 2))
    with pytest.raises(UserError, match="class '2' has none"):
        _distill(data, tmp_path)
    assert not (tmp_path / "ddm").exists()


def test_greedy_selection_keeps_tau_and_halves_it_when_short():
    from privbench_builtins.distillers._selection import greedy_diverse, reclaim

    points = torch.tensor([[0.0], [0.1], [0.2], [1.0], [3.0]])
    to_mean = points.flatten().abs()
    sel = greedy_diverse(points, to_mean, k=3, tau=0.9, max_halvings=4)
    assert sel.picks == [0, 3, 4] and sel.halvings == 0
    sel = greedy_diverse(points, to_mean, k=4, tau=0.9, max_halvings=4)
    assert sel.picks == [0, 3, 4, 2] and sel.halvings == 3 and sel.tau == pytest.approx(0.9 / 8)
    sel = greedy_diverse(torch.zeros(3, 2), torch.zeros(3), k=3, tau=1.0, max_halvings=1)
    assert sorted(sel.picks) == [0, 1, 2] and sel.tau == 0.0  # identical candidates still fill k
    labels, moves = reclaim(torch.tensor([0, 0, 0, 1]), points[:4], torch.tensor([[0.0], [1.0]]), k=2)
    assert torch.bincount(labels).tolist() == [2, 2] and moves == [(0, 1)]


def test_chunked_refinement_gives_the_exact_gradient():
    from privbench.nets import make_model
    from privbench_builtins.distillers._refine import _match_class

    net = make_model("convnet", 1, 2, 8, seed=0, width=4, depth=1)
    target = torch.randn(net.feature_shape[0] * 16, generator=torch.Generator().manual_seed(1))
    grads = []
    for chunk in (100, 3):
        leaf = torch.rand(7, 1, 8, 8, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
        loss = _match_class(net, leaf, torch.tensor([0, 2, 3, 5, 6]), target, chunk, lambda x: x)
        grads.append((float(loss), leaf.grad.clone()))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-6)
    assert grads[0][1][[1, 4]].abs().sum() == 0  # candidates of other classes are untouched


def test_odd_sizes_are_padded_for_the_unet_and_cropped_back():
    from privbench_builtins.distillers._diffusion import canvas_padding, to_image_space, to_model_space

    assert canvas_padding(28, 28, 3) == (0, 0, 0, 0)  # 28 -> 14 -> 7
    assert canvas_padding(28, 28, 4) == (2, 2, 2, 2)  # 32 -> 16 -> 8 -> 4
    assert canvas_padding(10, 13, 3) == (1, 2, 1, 1)
    images = torch.rand(2, 1, 10, 13)
    canvas = to_model_space(images, canvas_padding(10, 13, 3))
    assert canvas.shape[-2:] == (12, 16) and canvas.min() >= -1 and canvas.max() <= 1
    assert torch.allclose(to_image_space(canvas, canvas_padding(10, 13, 3)), images, atol=1e-6)


def _set_args(options: dict) -> list[str]:
    args = []
    for key, value in options.items():
        args += ["--set", f"{key}={str(value).lower() if isinstance(value, bool) else value}"]
    return args


def test_cli_end_to_end_writes_the_release(cli, tmp_path):
    out = tmp_path / "release"
    result = cli("distill", "--data", "digits", "--method", "ddm", "--ipc", "2", *_set_args(TINY),
                 "--no-evaluate", "--out", out, "--quiet", "--device", "cpu", "--cache-dir", tmp_path / "cache")
    assert result.code == 0, result.err
    for name in ("release.npz", "release.json", "preview.png"):
        assert (out / name).is_file(), name
    with np.load(out / "release.npz", allow_pickle=False) as arrays:
        labels = arrays["labels"]
    assert np.bincount(labels, minlength=10).tolist() == [2] * 10
    manifest = json.loads((out / "release.json").read_text())
    assert manifest["method"] == "ddm" and manifest["config"]["unet_channels"] == [8, 16]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--ipc", "0"], "positive"),
        (["--ipc", "2", "--set", "steps=5"], "unknown option steps"),
        (["--ipc", "2", "--set", "unet_channels=8,12"], "multiples of norm_groups"),
        (["--ipc", "2", "--set", "features=pretrained"], "features must be one of"),
        (["--ipc", "2", "--set", "refine_dsa=blur"], "unknown augmentation"),
    ],
)
def test_cli_refuses_bad_input_in_one_line(cli, tmp_path, args, needle):
    result = cli("distill", "--data", "digits", "--method", "ddm", *args, "--no-evaluate", "--out", tmp_path / "o")
    assert_one_line_error(result, needle)


def test_listing_plugins_does_not_import_torch_or_diffusers():
    code = (
        "import sys, privbench_builtins.distillers.ddm as m; m.DDM.Config();"
        "print('torch' in sys.modules, 'diffusers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]

"""``dm`` and ``ddm`` with the fixed ImageNet ResNet-18 feature extractor: local weights only, one-line refusals.

The weights written here are a randomly initialised torchvision ResNet-18 of
the right shapes: the loading path and the matching loop run for real, the
feature values mean nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import assert_one_line_error
from privbench.api import RunContext, UserError
from privbench.data import load_dataset
from privbench.engine import check_distiller_request, run_distiller
from privbench.plugins import get_registry
from privbench.testing import distill
from privbench_builtins.distillers import _pretrained
from privbench_builtins.distillers.dm import DistributionMatching

NO_FLIP = "color_crop_cutout_scale_rotate"
HUB_FILE = "resnet18-f37072fd.pth"


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


@pytest.fixture(autouse=True)
def _torch_home(monkeypatch, tmp_path) -> Path:
    """A predictable, empty hub cache; any attempt to download fails the test."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))

    def refuse(*args, **kwargs):
        raise AssertionError("tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    return home / "hub" / "checkpoints" / HUB_FILE


def test_resnet18_noise_init_release_is_valid_and_moves(digits, weights):
    options = {"iterations": 4, "batch_real": 8, "dsa_strategy": NO_FLIP, "init": "noise"}
    release = distill(DistributionMatching, digits, 2, seed=0, feature_extractor="resnet18",
                      feature_weights=str(weights), **options)
    start = distill(DistributionMatching, digits, 2, seed=0, feature_extractor="resnet18",
                    feature_weights=str(weights), **{**options, "iterations": 0})
    assert release.images.shape == (20, 1, 16, 16) and release.images.dtype == torch.float32
    assert release.images.min() >= 0 and release.images.max() <= 1
    assert release.labels.tolist() == [c for c in range(10) for _ in range(2)]
    assert "init_indices" not in release.provenance and len(release.provenance["loss_history"]) == 4
    assert (release.images - start.images).abs().max() > 1e-3  # learnt away from the same noise
    facts = release.manifest["feature_extractor"]
    assert facts["name"] == "resnet18" and facts["embedding"] == 512 and len(facts["weights_sha256"]) == 64
    assert release.manifest["config"]["feature_extractor"] == "resnet18"


def test_extractor_is_frozen_imagenet_normalised_and_batch_independent(weights):
    net = _pretrained.ResNet18Features(torch.load(weights, weights_only=True), weights)
    net.train()  # stays in eval mode: the ImageNet batch-norm statistics are fixed
    assert not net.backbone.training and not any(p.requires_grad for p in net.parameters())
    x = torch.rand(5, 1, 16, 16, requires_grad=True)
    f = net.embed(x)
    assert f.shape == (5, 512)
    assert torch.allclose(net.embed(x[:2]), f[:2], atol=1e-5)  # per image, as DM's batched loss needs
    grey_as_rgb = net.embed(x.detach().expand(-1, 3, -1, -1))
    assert torch.allclose(grey_as_rgb, f.detach(), atol=1e-5)
    f.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_default_extractor_release_is_unchanged(digits):
    options = {"iterations": 3, "width": 16, "batch_real": 16}
    default = distill(DistributionMatching, digits, 2, seed=5, **options)
    explicit = distill(DistributionMatching, digits, 2, seed=5, feature_extractor="random_convnet", **options)
    assert torch.equal(default.images, explicit.images)
    assert "feature_extractor" not in default.manifest
    # The losses of this run before the option existed (CPU, float32).
    assert default.provenance["loss_history"] == pytest.approx([0.573932, 0.680476, 0.483039], rel=1e-3)


def test_hub_cache_file_is_found(digits, weights, _torch_home):
    _torch_home.parent.mkdir(parents=True)
    _torch_home.write_bytes(weights.read_bytes())
    release = distill(DistributionMatching, digits, 1, iterations=1, batch_real=4, init="noise",
                      dsa_strategy="none", feature_extractor="resnet18")
    assert release.images.shape == (10, 1, 16, 16) and release.manifest["config"]["feature_weights"] == ""


def test_missing_weights_exit_2_naming_the_path_and_option(cli, tmp_path, _torch_home):
    out = tmp_path / "release"
    result = cli("distill", "--data", "digits", "--method", "dm", "--ipc", "1", "--set", "feature_extractor=resnet18",
                 "--set", "init=noise", "--set", "iterations=1", "--no-evaluate", "--out", out)
    assert_one_line_error(result, str(_torch_home), "feature_weights")
    assert not out.exists()
    missing = tmp_path / "nowhere.pth"
    result = cli("distill", "--data", "digits", "--method", "dm", "--ipc", "1", "--set", "feature_extractor=resnet18",
                 "--set", f"feature_weights={missing}", "--no-evaluate", "--out", out)
    assert_one_line_error(result, str(missing), "does not exist")


def test_check_refuses_before_any_work(digits):
    """What suites call for every release before they write anything."""
    for method in ("dm", "ddm"):
        with pytest.raises(UserError, match="resnet18-f37072fd.pth"):
            check_distiller_request(get_registry(), method, digits, 1, {"feature_extractor": "resnet18"})
    check_distiller_request(get_registry(), "dm", digits, 1, {})  # the default needs no file


def test_suite_refuses_without_weights_and_creates_nothing(cli, tmp_path, _torch_home):
    suite = tmp_path / "paper.toml"
    suite.write_text('name = "paper"\ndatasets = ["digits"]\n[[releases]]\nmethod = "dm"\nipc = [1]\n'
                     'config = { feature_extractor = "resnet18", init = "noise", iterations = 1 }\n')
    out = tmp_path / "suite-out"
    assert_one_line_error(cli("run", suite, "--out", out, "-q"), str(_torch_home))
    assert not out.exists()


def test_wrong_shapes_and_misplaced_option_are_one_line(cli, tmp_path, weights):
    import torchvision

    wrong = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), wrong)
    for method in ("dm", "ddm"):
        result = cli("distill", "--data", "digits", "--method", method, "--ipc", "1",
                     "--set", "feature_extractor=resnet18", "--set", f"feature_weights={wrong}",
                     "--no-evaluate", "--out", tmp_path / method)
        assert_one_line_error(result, str(wrong), "does not fit torchvision resnet18")
    result = cli("distill", "--data", "digits", "--method", "dm", "--ipc", "1", "--set", f"feature_weights={weights}",
                 "--no-evaluate", "--out", tmp_path / "dm")
    assert_one_line_error(result, "feature_weights applies to feature_extractor=resnet18 only")


def test_ddm_with_resnet18_features(digits, weights, tmp_path):
    from test_ddm import TINY

    options = {**TINY, "feature_extractor": "resnet18", "feature_weights": str(weights), "refine_steps": 2}
    release = run_distiller(get_registry(), "ddm", digits, 1, options, RunContext(seed=0, cache_dir=tmp_path))
    assert release.images.shape == (10, 1, 16, 16)
    assert 0 <= float(release.images.min()) and float(release.images.max()) <= 1
    assert torch.bincount(release.labels, minlength=10).tolist() == [1] * 10
    assert release.manifest["feature_extractor"]["name"] == "resnet18"
    assert release.provenance["refinement"]["features"] == "resnet18"
    json.dumps(release.manifest)  # the manifest stays JSON

"""LPIPS loads its backbone from local files only, and says where to put them when they are absent.

The weights written here are a randomly initialised torchvision AlexNet of the
right shapes: the loading path is exercised for real, the values mean nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from privbench.api import MetricUnavailable, score_images, summarise_scores
from privbench.engine import metric_instances
from privbench.plugins import get_registry

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"


@pytest.fixture(scope="module")
def alexnet_state():
    """torchvision's AlexNet state dict layout (the feature extractor), random values; built once."""
    import torchvision

    torch.manual_seed(0)
    features = torchvision.models.alexnet().features
    return {f"features.{k}": v.clone() for k, v in features.state_dict().items()}


def write_weights(state: dict, path: Path, scale: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v * scale for k, v in state.items()}, path)
    return path


def hub_dir() -> Path:
    return Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints"


def lpips_metric(**options):
    return metric_instances(get_registry(), "cpu", ["lpips"], {"lpips": options})["lpips"]


def images(n=4, size=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.avg_pool2d(torch.rand(n, 1, size + 2, size + 2, generator=g), 3, stride=1)


@pytest.fixture(autouse=True)
def _no_download(monkeypatch):
    """Any attempt to fetch weights from the network fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("LPIPS tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.delenv("PRIVBENCH_LPIPS_WEIGHTS", raising=False)


def test_without_weights_lpips_is_unavailable_and_says_where_to_put_them():
    metric = lpips_metric()
    with pytest.raises(MetricUnavailable) as info:
        metric.check_available()
    message = str(info.value)
    assert ALEXNET_FILE in message and str(hub_dir()) in message and "PRIVBENCH_LPIPS_WEIGHTS" in message
    assert "\n" not in message
    ref = images()
    rows = summarise_scores(score_images({"lpips": metric}, ref, ref), "reconstruction")
    assert rows[0].status == "unavailable" and rows[0].value is None
    assert ALEXNET_FILE in rows[0].detail["reason"]


def test_with_weights_in_the_torch_hub_cache_lpips_scores(alexnet_state):
    write_weights(alexnet_state, hub_dir() / ALEXNET_FILE)
    metric = lpips_metric()
    metric.check_available()
    ref = images()
    light = (ref + 0.03 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    heavy = (ref + 0.3 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    same = metric.score(ref, ref).numpy()
    a, b = metric.score(ref, light).numpy(), metric.score(ref, heavy).numpy()
    assert same.shape == (4,) and np.allclose(same, 0, atol=1e-6)
    assert (a < b).all() and (a > 0).all()
    rgb = metric.score(ref.repeat(1, 3, 1, 1), light.repeat(1, 3, 1, 1)).numpy()
    np.testing.assert_allclose(rgb, a, rtol=1e-4, atol=1e-6)  # grayscale is replicated to RGB


def test_backbone_weights_are_actually_loaded(tmp_path, alexnet_state):
    """Two different weight files give two different scores: nothing random is used in their place."""
    ref = images()
    cand = images(seed=5)
    metric = lpips_metric(weights=str(write_weights(alexnet_state, tmp_path / "a.pth")))
    a = metric.score(ref, cand)
    torch.testing.assert_close(metric.score(ref, cand), a)
    b = lpips_metric(weights=str(write_weights(alexnet_state, tmp_path / "b.pth", scale=0.5))).score(ref, cand)
    assert not torch.allclose(a, b)


def test_weights_from_the_environment_variable(tmp_path, monkeypatch, alexnet_state):
    monkeypatch.setenv("PRIVBENCH_LPIPS_WEIGHTS", str(write_weights(alexnet_state, tmp_path / "w.pth")))
    lpips_metric().check_available()
    monkeypatch.setenv("PRIVBENCH_LPIPS_WEIGHTS", str(tmp_path / "missing.pth"))
    with pytest.raises(MetricUnavailable, match="missing.pth .from PRIVBENCH_LPIPS_WEIGHTS. does not exist"):
        lpips_metric().check_available()


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"not a tensor file", "cannot be read"),
        ({"features.0.weight": torch.zeros(3)}, "has shape"),
        ({"classifier.1.weight": torch.zeros(3)}, "no features.0.weight"),
    ],
)
def test_unusable_weight_files_make_lpips_unavailable(tmp_path, content, needle):
    path = tmp_path / "weights.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(MetricUnavailable, match=needle):
        lpips_metric(weights=str(path)).check_available()


def test_vgg_is_selectable_and_named_in_the_message():
    with pytest.raises(MetricUnavailable, match="vgg16-397923af.pth"):
        lpips_metric(net="vgg").check_available()

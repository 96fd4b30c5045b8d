"""``lpips``: learned perceptual image patch similarity (Zhang et al. 2018), the paper's equations 7 and 8.

Both images go through an ImageNet-trained backbone (AlexNet by default, VGG-16
selectable); at each of its L stages the channel-normalised activations are
subtracted, squared, weighted per channel by the learned linear layer w_l and
averaged over positions:

    LPIPS(x, y) = sum_l 1 / (H_l W_l) sum_hw || w_l * (f_l(x)_hw - f_l(y)_hw) ||^2

0 for identical images; lower means a closer copy. Inputs are scaled from
[0, 1] to [-1, 1] as the lpips package expects; grayscale is replicated to
three channels; images whose shorter side is below ``min_size`` (64 by
default; AlexNet's stages need at least 32) are bilinearly upsampled first,
so 28 x 28 MedMNIST images are scored at 64 x 64.

Weights: the linear layers ship inside the lpips package. The backbone's
ImageNet weights are torchvision's files (``alexnet-owt-7be5be79.pth``,
``vgg16-397923af.pth``), which privbench never downloads. They are read, with
``torch.load(weights_only=True)``, from the first of: ``--set lpips.weights=PATH``,
the ``PRIVBENCH_LPIPS_WEIGHTS`` environment variable, or torch's hub cache
(``$TORCH_HOME/hub/checkpoints/``, by default ``~/.cache/torch/hub/checkpoints/``).
Without them the metric is unavailable and says which file to put where; it
never falls back to random backbone weights.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from privbench import hookimpl
from privbench.api import Metric, MetricUnavailable

ENV_WEIGHTS = "PRIVBENCH_LPIPS_WEIGHTS"
BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
BACKBONE_LABELS = {"alex": "AlexNet", "vgg": "VGG-16"}


@dataclass(frozen=True)
class LPIPSConfig:
    """Backbone, where its ImageNet weights are (empty: environment, then torch's hub cache), and input size."""

    net: Literal["alex", "vgg"] = "alex"
    weights: str = ""
    min_size: int = 64
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.min_size < 0:
            raise ValueError(f"min_size must be 0 (no upsampling) or more, got {self.min_size}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


def hub_checkpoints_dir() -> Path:
    """Where torchvision keeps downloaded weights: ``$TORCH_HOME/hub/checkpoints`` (torch decides)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def backbone_weights_path(config: LPIPSConfig) -> Path:
    """The backbone weights file to use, or :class:`MetricUnavailable` saying where to put one."""
    for value, source in ((config.weights, "lpips.weights"), (os.environ.get(ENV_WEIGHTS, ""), ENV_WEIGHTS)):
        if value.strip():
            path = Path(value.strip()).expanduser()
            if not path.is_file():
                raise MetricUnavailable(f"LPIPS backbone weights file {path} (from {source}) does not exist")
            return path
    file_name = BACKBONE_FILES[config.net]
    hub = hub_checkpoints_dir()
    if (hub / file_name).is_file():
        return hub / file_name
    raise MetricUnavailable(
        f"LPIPS needs torchvision's ImageNet {BACKBONE_LABELS[config.net]} weights, which privbench never "
        f"downloads: put {file_name} in {hub}/ (or set {ENV_WEIGHTS} or --set lpips.weights to its path)"
    )


def _load_tensors(path: Path, what: str) -> dict[str, Any]:
    import pickle

    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise MetricUnavailable(f"{what} {path} cannot be read as a tensor file: {' '.join(str(exc).split())[:200]}") from exc
    if not isinstance(state, dict):
        raise MetricUnavailable(f"{what} {path} holds a {type(state).__name__}, not a state dict")
    return state


def build_model(config: LPIPSConfig, device: str):
    """An lpips model with the package's linear layers and the backbone weights found on disk."""
    weights_path = backbone_weights_path(config)  # before importing lpips: fail fast and cheaply
    import lpips as lpips_package

    label = BACKBONE_LABELS[config.net]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's notice about the 'pretrained' argument lpips passes
        model = lpips_package.LPIPS(pretrained=False, net=config.net, pnet_rand=True, verbose=False)

    state = _load_tensors(weights_path, "LPIPS backbone weights")
    backbone = {}
    for key, target in model.net.state_dict().items():
        _slice, index, param = key.split(".")
        source = f"features.{index}.{param}"
        if source not in state:
            raise MetricUnavailable(f"{weights_path} does not hold torchvision {label} weights (no {source})")
        if tuple(state[source].shape) != tuple(target.shape):
            raise MetricUnavailable(
                f"{weights_path} does not hold torchvision {label} weights ({source} has shape "
                f"{tuple(state[source].shape)}, expected {tuple(target.shape)})"
            )
        backbone[key] = state[source]
    model.net.load_state_dict(backbone, strict=True)

    linear_path = Path(lpips_package.__file__).parent / "weights" / "v0.1" / f"{config.net}.pth"
    if not linear_path.is_file():
        raise MetricUnavailable(f"the lpips package lacks its linear-layer weights {linear_path}; reinstall lpips")
    linear = _load_tensors(linear_path, "LPIPS linear-layer weights")
    result = model.load_state_dict(linear, strict=False)
    if result.unexpected_keys or not linear:
        raise MetricUnavailable(f"{linear_path} does not match the lpips {config.net} model")
    return model.to(device).eval().requires_grad_(False)


class LPIPS(Metric):
    """Learned perceptual similarity (LPIPS, AlexNet); 0 = identical, lower = closer copy."""

    name = "lpips"
    Config = LPIPSConfig
    higher_is_better = False

    def __init__(self, config: Any = None, device: str = "cpu"):
        super().__init__(config, device)
        self._model = None

    def check_available(self) -> None:
        self._get_model()

    def _get_model(self):
        if self._model is None:
            self._model = build_model(self.config, self.device)
        return self._model

    def score(self, reference, candidate):
        import torch.nn.functional as F

        from privbench_builtins.metrics._batching import batched, grey_or_rgb

        model = self._get_model()
        min_size = self.config.min_size
        h, w = int(reference.shape[-2]), int(reference.shape[-1])
        size = None
        if min_size and min(h, w) < min_size:
            scale = min_size / min(h, w)
            size = (max(min_size, round(h * scale)), max(min_size, round(w * scale)))

        def fn(x, y):
            x, y = grey_or_rgb(x) * 2 - 1, grey_or_rgb(y) * 2 - 1
            if size is not None:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            return model(y, x)

        return batched(reference, candidate, self.config.batch_size, self.device, fn)


@hookimpl
def register_metrics(register):
    register(LPIPS)

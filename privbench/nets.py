"""The classifiers every plugin that trains a model shares.

* :class:`ConvNet`: the ConvNet of the dataset-distillation literature
  (conv 3x3 -> norm -> activation -> pool per block, one linear classifier);
* torchvision's ResNet-18 / ResNet-50, adapted to the number of channels and to
  small images.

Every model here takes images in ``[0, 1]`` and normalises them itself (a
:class:`Normalize` layer holding the per-channel mean and std), so no caller
ever normalises by hand. Every model also offers ``embed(x)``: the flattened
features just before the classifier, which distribution matching compares.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from privbench.errors import UserError

MODELS = ("convnet", "resnet18", "resnet50")
NORMS = ("instancenorm", "batchnorm", "none")
ACTIVATIONS = ("relu", "leakyrelu", "sigmoid")
POOLS = ("avgpool", "maxpool", "none")

SMALL_IMAGE = 64
"""Below this side length a ResNet gets a 3x3 stride-1 stem and no max-pool."""


def _per_channel(value: float | Sequence[float] | torch.Tensor | None, channels: int, default: float, what: str) -> torch.Tensor:
    if value is None:
        value = default
    t = torch.as_tensor(value, dtype=torch.float32).flatten()
    if t.numel() == 1:
        t = t.expand(channels)
    if t.numel() != channels:
        raise UserError(f"{what} has {t.numel()} values for {channels} channels")
    return t.clone().view(1, channels, 1, 1)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; the statistics travel with the model's state."""

    def __init__(self, channels: int, mean: Any = None, std: Any = None):
        super().__init__()
        std_t = _per_channel(std, channels, 0.5, "std")
        if (std_t <= 0).any():
            raise UserError("std must be positive for every channel")
        self.register_buffer("mean", _per_channel(mean, channels, 0.5, "mean"))
        self.register_buffer("std", std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


POOL_AS_CONV_BYTES = 24 << 20
"""On a CPU, a 2 x 2 average pool over at most this many bytes runs as a depthwise convolution."""


class AvgPool2x2(nn.AvgPool2d):
    """``AvgPool2d(2, 2)`` that, on a CPU, runs as a depthwise convolution with weights 1/4.

    PyTorch's CPU kernel for a contiguous NCHW pool is several times slower
    than oneDNN's depthwise convolution on the cache-sized feature maps a
    ConvNet's blocks produce (3.7x forward, 3.8x with the backward pass, on
    16 x 128 x 32 x 32), and it was a fifth of a DM iteration. Quartering is
    exact in floating point, and the four-term sums come out bit for bit the
    same as the pool's (checked in ``tests/test_nets.py``). Beyond
    :data:`POOL_AS_CONV_BYTES` the native pool is the faster one again, as it is
    off the CPU and in bfloat16 (where oneDNN's depthwise convolution measured
    2x slower than the pool), so only float32 takes the convolution.
    """

    def __init__(self) -> None:
        super().__init__(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type != "cpu" or x.ndim != 4 or x.dtype != torch.float32
                or x.element_size() * x.nelement() > POOL_AS_CONV_BYTES or not x.is_contiguous()):
            return super().forward(x)
        channels = x.shape[1]
        weight = torch.full((channels, 1, 2, 2), 0.25, dtype=x.dtype, device=x.device)
        with torch.autocast("cpu", enabled=False):  # pool in the input's dtype, as avg_pool2d does
            return F.conv2d(x, weight, stride=2, groups=channels)


def _image_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = (int(s) for s in image_size)
    return h, w


class ConvNet(nn.Module):
    """The distillation literature's ConvNet: ``depth`` blocks of conv 3x3 -> norm -> act -> pool.

    ``instancenorm`` is ``GroupNorm(width, width, affine=True)`` as in the
    reference code (one group per channel, with learnt affine terms). For
    28 x 28 single-channel input the first convolution pads by 3, so the
    network sees 32 x 32 as in the reference; any other size is used as is and
    the classifier is sized from the feature map the blocks actually produce.
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        image_size: int | Sequence[int],
        width: int = 128,
        depth: int = 3,
        norm: str = "instancenorm",
        act: str = "relu",
        pool: str = "avgpool",
        mean: Any = None,
        std: Any = None,
    ):
        super().__init__()
        for value, valid, what in ((norm, NORMS, "norm"), (act, ACTIVATIONS, "act"), (pool, POOLS, "pool")):
            if value not in valid:
                raise UserError(f"ConvNet: unknown {what} {value!r}; valid: {', '.join(valid)}")
        if depth < 1 or width < 1:
            raise UserError(f"ConvNet: depth and width must be positive, got depth={depth}, width={width}")
        h, w = _image_hw(image_size)
        self.normalize = Normalize(channels, mean, std)
        layers: list[nn.Module] = []
        in_ch = channels
        for d in range(depth):
            pad = 3 if (d == 0 and channels == 1 and (h, w) == (28, 28)) else 1
            layers.append(nn.Conv2d(in_ch, width, kernel_size=3, padding=pad))
            h, w = h + 2 * pad - 2, w + 2 * pad - 2
            if norm == "instancenorm":
                layers.append(nn.GroupNorm(width, width, affine=True))
            elif norm == "batchnorm":
                layers.append(nn.BatchNorm2d(width))
            # In place, as in the reference: the norm's and the convolution's backward passes need their inputs only.
            layers.append(nn.Sigmoid() if act == "sigmoid" else {"relu": nn.ReLU, "leakyrelu": nn.LeakyReLU}[act](inplace=True))
            if pool != "none":
                layers.append(AvgPool2x2() if pool == "avgpool" else nn.MaxPool2d(2, 2))
                h, w = h // 2, w // 2
            if h < 1 or w < 1:
                raise UserError(
                    f"ConvNet: depth {depth} with pooling is too deep for {_image_hw(image_size)} images; use a smaller depth"
                )
            in_ch = width
        self.features = nn.Sequential(*layers)
        self.feature_shape = (width, h, w)
        self.classifier = nn.Linear(width * h * w, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened features before the classifier (what distribution matching compares)."""
        return self.features(self.normalize(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


class TorchvisionClassifier(nn.Module):
    """A torchvision backbone whose ``fc`` is split off as ``classifier``, behind a :class:`Normalize`."""

    def __init__(self, backbone: nn.Module, classifier: nn.Linear, normalize: Normalize):
        super().__init__()
        self.normalize = normalize
        self.backbone = backbone
        self.classifier = classifier

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


def _read_state_dict(weights: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a weights file, loaded without pickle; a file that is none is one :class:`UserError` line."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input
        raise UserError(f"{path} is not a readable PyTorch state dict: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} does not hold a state dict (a mapping of parameter names to tensors)")
    return state


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], path: Any, what: str) -> None:
    """Load ``state`` into ``module`` only if every entry fits; otherwise one :class:`UserError` line naming ``what``."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        first = (missing or unexpected or wrong)[0]
        raise UserError(
            f"{path} does not fit {what}: {len(missing)} missing, {len(unexpected)} unexpected and "
            f"{len(wrong)} mis-shaped entries (first: {first!r})"
        )
    module.load_state_dict(state)


read_state_dict = _read_state_dict
load_strict = _load_strict
"""The same loaders under public names, for plugins that read pretrained weights (one-line errors, no pickle)."""


def _resnet(
    name: str, channels: int, num_classes: int, image_size: Any, weights: str | Path | None, mean: Any, std: Any
) -> TorchvisionClassifier:
    """A torchvision ResNet adapted to ``channels`` and small images.

    Without ``weights`` the network is freshly initialised. With ``weights`` (a
    local state dict of the standard torchvision architecture, e.g. the
    ImageNet file) the weights are loaded into the unmodified network first,
    then adapted:

    * fewer input channels: for a single-channel image the 7x7 stem keeps its
      pretrained filters summed over RGB, which is exactly what the network
      would compute on the grey image copied into three channels;
    * images below 64 px: the 7x7 stride-2 stem and the max-pool would shrink a
      32 px image to 8 px before the first block, so the stem becomes a freshly
      initialised 3x3 stride-1 convolution and the max-pool is dropped; every
      other layer keeps its pretrained weights;
    * the classifier keeps the pretrained one only when it already has
      ``num_classes`` outputs, otherwise it is freshly initialised.

    Normalisation uses ``mean``/``std`` (default 0.5), not ImageNet's constants;
    fine-tuning absorbs the difference.
    """
    import torchvision

    builder = getattr(torchvision.models, name)
    net = builder(weights=None)
    if weights is not None:
        _load_strict(net, _read_state_dict(weights), weights, f"torchvision {name}")
    h, w = _image_hw(image_size)
    small = min(h, w) < SMALL_IMAGE
    old = net.conv1
    if small:
        net.conv1 = nn.Conv2d(channels, old.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif channels != old.in_channels:
        net.conv1 = nn.Conv2d(channels, old.out_channels, kernel_size=7, stride=2, padding=3, bias=False)
        if weights is not None:
            with torch.no_grad():
                # Spread the RGB filters' sum evenly, so a grey image gives the pretrained response.
                summed = old.weight.sum(dim=1, keepdim=True)
                net.conv1.weight.copy_(summed.repeat(1, channels, 1, 1) / channels)
    features = net.fc.in_features
    if weights is not None and net.fc.out_features == num_classes:
        classifier = net.fc
    else:
        classifier = nn.Linear(features, num_classes)
    net.fc = nn.Identity()
    return TorchvisionClassifier(net, classifier, Normalize(channels, mean, std))


def make_model(
    name: str,
    channels: int,
    num_classes: int,
    image_size: int | Sequence[int],
    weights: str | Path | None = None,
    *,
    seed: int | None = None,
    mean: Any = None,
    std: Any = None,
    **kwargs: Any,
) -> nn.Module:
    """A fresh classifier by name: ``convnet``, ``resnet18`` or ``resnet50``.

    ``seed`` makes the initialisation reproducible without touching the global
    random state. ``kwargs`` go to :class:`ConvNet` (width, depth, norm, act,
    pool); ResNets take none. ``weights`` is a local state-dict file: for the
    ConvNet one saved from this same architecture, for ResNets see
    :func:`_resnet`. Nothing is ever downloaded.
    """
    key = str(name).lower()
    if key not in MODELS:
        raise UserError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    if channels < 1 or num_classes < 2:
        raise UserError(f"a classifier needs at least one channel and two classes, got {channels} and {num_classes}")
    if key != "convnet" and kwargs:
        raise UserError(f"{key} takes no options {', '.join(sorted(kwargs))} (those are ConvNet options)")

    def build() -> nn.Module:
        if key == "convnet":
            model = ConvNet(channels, num_classes, image_size, mean=mean, std=std, **kwargs)
            if weights is not None:
                state = _read_state_dict(weights)
                state.setdefault("normalize.mean", model.normalize.mean)
                state.setdefault("normalize.std", model.normalize.std)
                _load_strict(model, state, weights, "this ConvNet")
            return model
        return _resnet(key, channels, num_classes, image_size, weights, mean, std)

    if seed is None:
        return build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return build()


def input_stats(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The per-channel (mean, std) a model normalises with, or None if it has none."""
    norm = getattr(model, "normalize", None)
    if isinstance(norm, Normalize):
        return norm.mean.detach().flatten().cpu(), norm.std.detach().flatten().cpu()
    return None


def channel_stats(images: torch.Tensor, min_std: float = 1e-3, batch: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of ``N x C x H x W`` images, streamed in batches (float64 sums).

    A batch holds at most ``batch`` images and about 256 MiB of float64, so a
    large or streamed set (:mod:`privbench.imagestore`) is never converted whole.
    """
    c = images.shape[1]
    per_image = 8 * max(1, int(images.shape[1] * images.shape[2] * images.shape[3]))
    batch = max(1, min(batch, (256 << 20) // per_image))
    total = torch.zeros(c, dtype=torch.float64)
    squares = torch.zeros(c, dtype=torch.float64)
    count = 0
    for start in range(0, images.shape[0], batch):
        x = images[start : start + batch].detach().to("cpu", torch.float64)
        total += x.sum(dim=(0, 2, 3))
        squares += (x * x).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    if count == 0:
        raise UserError("cannot compute image statistics of an empty set")
    mean = total / count
    var = (squares / count - mean * mean).clamp_min(0)
    return mean.float(), var.sqrt().clamp_min(min_std).float()

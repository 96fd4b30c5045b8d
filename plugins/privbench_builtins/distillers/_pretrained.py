"""A fixed ImageNet ResNet-18 as the feature extractor of ``dm`` and ``ddm`` (Razi et al., Algorithm 1).

The embedding is torchvision's ResNet-18 up to its global average pool: 512
features per image, the input of its classifier. The network is frozen and in
eval mode, so batch norm uses its ImageNet running statistics and every image
is embedded on its own (a batch of all classes gives the same features as one
class at a time).

Inputs are images in ``[0, 1]``, as for every privbench model: grey images are
repeated to three channels, images whose shorter side is below
:data:`MIN_SIDE` are bilinearly upsampled so that side is :data:`MIN_SIDE`
(16 px digits and 28 px MedMNIST images are embedded at 32 px, the smallest
size at which the five stride-2 stages still leave a 1 x 1 map), and then
normalised with ImageNet's mean and std, the statistics the weights were
trained with. All of it is differentiable, so gradients reach the pixels.

The weights are torchvision's ImageNet file, read from disk and never
downloaded: from the ``feature_weights`` option, or else torch's hub cache
(``$TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth``, by default under
``~/.cache/torch``), where ``torchvision.models.resnet18(weights="DEFAULT")``
leaves it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from privbench.data.npz import file_sha256
from privbench.errors import UserError
from privbench.nets import load_strict, read_state_dict
from privbench_builtins.metrics.lpips import hub_checkpoints_dir

RESNET18_FILE = "resnet18-f37072fd.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_SIDE = 32
FEATURES = 512
WEIGHTS_OPTION = "feature_weights"


def weights_path(configured: str, method: str) -> Path:
    """The weights file to read, or one :class:`UserError` line saying where to put it and what to pass."""
    if configured.strip():
        path = Path(configured.strip()).expanduser()
        if not path.is_file():
            raise UserError(
                f"distiller {method}: the ResNet-18 weights file {path} (from {WEIGHTS_OPTION}) does not exist"
            )
        return path
    path = hub_checkpoints_dir() / RESNET18_FILE
    if path.is_file():
        return path
    raise UserError(
        f"distiller {method}: feature_extractor=resnet18 needs torchvision's ImageNet ResNet-18 weights, which "
        f"privbench never downloads: put {RESNET18_FILE} at {path} or pass --set {WEIGHTS_OPTION}=PATH"
    )


class ResNet18Features(nn.Module):
    """ImageNet ResNet-18 up to its average pool, taking ``[0, 1]`` grey or RGB images of any size."""

    def __init__(self, state: dict[str, torch.Tensor], where: object):
        import torchvision

        super().__init__()
        # A throw-away initialisation that must not move the global random stream.
        with torch.random.fork_rng(devices=[]):
            net = torchvision.models.resnet18(weights=None)
        load_strict(net, state, where, "torchvision resnet18")
        net.fc = nn.Identity()
        self.backbone = net.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> ResNet18Features:
        """Always eval: the ImageNet batch-norm statistics are part of the fixed extractor."""
        return super().train(False)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Three channels, a shorter side of at least :data:`MIN_SIDE`, ImageNet normalisation."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h, w = x.shape[-2:]
        if min(h, w) < MIN_SIDE:
            scale = MIN_SIDE / min(h, w)
            size = (max(MIN_SIDE, round(h * scale)), max(MIN_SIDE, round(w * scale)))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.prepare(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x)


def check_channels(channels: int, method: str) -> None:
    if channels not in (1, 3):
        raise UserError(
            f"distiller {method}: feature_extractor=resnet18 takes grey or RGB images, not {channels} channels"
        )


def check_weights(configured: str, channels: int, method: str) -> Path:
    """Refuse, before any work, what :func:`resnet18_features` would refuse (each file version is read once)."""
    check_channels(channels, method)
    path = weights_path(configured, method)
    stat = path.stat()
    _checked(str(path), stat.st_size, stat.st_mtime_ns, method)
    return path


@lru_cache(maxsize=4)
def _checked(path: str, size: int, mtime_ns: int, method: str) -> None:
    _load(Path(path), method)


def _load(path: Path, method: str) -> ResNet18Features:
    """The extractor from ``path``; a file that is not a fitting state dict is one line naming the distiller."""
    try:
        return ResNet18Features(read_state_dict(path), path)
    except UserError as exc:
        raise UserError(f"distiller {method}: {exc}") from None


def resnet18_features(configured: str, channels: int, method: str, device: torch.device) -> tuple[nn.Module, dict]:
    """The frozen extractor on ``device`` and what the manifest records of it (not the path: the config has it)."""
    check_channels(channels, method)
    path = weights_path(configured, method)
    net = _load(path, method).to(device)
    facts = {
        "name": "resnet18",
        "weights_sha256": file_sha256(path),
        "embedding": FEATURES,
        "min_side": MIN_SIDE,
        "normalisation": "imagenet",
    }
    return net, facts

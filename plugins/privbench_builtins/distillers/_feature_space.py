"""The feature space f_phi in which ``ddm`` refines, assigns and selects candidates.

``trained``: a ConvNet trained briefly on the private training set with the
shared protocol (:func:`privbench.training.train_classifier`); its embedding
separates the classes, so "nearest class mean" is a meaningful label.
``random``: a freshly initialised ConvNet, as distribution matching uses; no
training cost, weaker separation. With ``feature_extractor=resnet18`` f_phi is
instead the fixed ImageNet ResNet-18 of ``_pretrained.py`` (the paper's), used
through the same :func:`embed` and :func:`class_means`.

Real class means are computed by streaming the private images through f_phi in
batches, so the whole set never has to sit on the device.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from privbench.api import RunContext, Split
from privbench.errors import UserError
from privbench.nets import channel_stats, make_model
from privbench.training import TrainConfig, derive_seed, train_classifier

EMBED_BATCH = 512


def feature_net(
    train: Split,
    num_classes: int,
    config: Any,
    ctx: RunContext,
    seed: int,
    *,
    trained: bool,
    salt: object = "net",
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> nn.Module:
    """f_phi: a ConvNet normalised with the private set's statistics, trained or left random; frozen, eval mode.

    ``stats`` (per-channel mean, std) saves recomputing them when many random
    networks are drawn.
    """
    mean, std = stats if stats is not None else channel_stats(train.images)
    net = make_model(
        "convnet",
        int(train.images.shape[1]),
        num_classes,
        tuple(train.images.shape[2:]),
        seed=derive_seed(seed, "ddm", "features", salt, "init"),
        mean=mean,
        std=std,
        width=config.feature_width,
        depth=config.feature_depth,
    )
    if trained:
        generator = torch.Generator().manual_seed(derive_seed(seed, "ddm", "features", salt, "batches"))
        net = train_classifier(
            net,
            train.images,
            train.labels,
            TrainConfig(epochs=config.feature_epochs),
            ctx,
            generator=generator,
            progress_label="ddm: training the feature network",
        )
    net = net.to(ctx.torch_device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@torch.no_grad()
def embed(net: nn.Module, images: torch.Tensor, ctx: RunContext, batch: int = EMBED_BATCH) -> torch.Tensor:
    """f_phi(images) as a CPU float32 matrix, batch by batch on the device."""
    device = ctx.torch_device
    out = [net.embed(images[i : i + batch].to(device, torch.float32)).float().cpu() for i in range(0, len(images), batch)]
    return torch.cat(out)


@torch.no_grad()
def class_means(
    net: nn.Module, train: Split, num_classes: int, class_names: tuple[str, ...], ctx: RunContext
) -> torch.Tensor:
    """The mean embedding of each class's real training images (C x D, on the device)."""
    device = ctx.torch_device
    sums = None
    counts = torch.bincount(train.labels, minlength=num_classes).to(device)
    for i in range(0, len(train), EMBED_BATCH):
        f = net.embed(train.images[i : i + EMBED_BATCH].to(device, torch.float32))
        if sums is None:
            sums = torch.zeros(num_classes, f.shape[1], device=device, dtype=torch.float64)
        sums.index_add_(0, train.labels[i : i + EMBED_BATCH].to(device), f.double())
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        raise UserError(
            f"ddm needs training images of every class to match class means; class {class_names[empty[0]]!r} has none"
        )
    assert sums is not None
    return (sums / counts.unsqueeze(1)).float()

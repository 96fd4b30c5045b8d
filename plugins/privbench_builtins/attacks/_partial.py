"""The attribute-inference attacker's partial record of a patient, and its features.

A partial record is the patient's image with a region hidden (filled with the
auxiliary data's mean grey level, so it is neither black nor white) or
degraded by downsampling (block means, shown back at full size so the target
model can be queried with it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def masked(images: torch.Tensor, region: str, fraction: float, fill: torch.Tensor) -> torch.Tensor:
    """``images`` with ``fraction`` of the area hidden: a centred rectangle, or a band at one edge."""
    x = images.clone()
    h, w = x.shape[-2:]
    if region == "center":
        s = math.sqrt(fraction)
        mh, mw = max(1, round(h * s)), max(1, round(w * s))
        top, left = (h - mh) // 2, (w - mw) // 2
        rows, cols = slice(top, top + mh), slice(left, left + mw)
    elif region in ("top", "bottom"):
        m = max(1, round(h * fraction))
        rows, cols = (slice(0, m) if region == "top" else slice(h - m, h)), slice(0, w)
    elif region in ("left", "right"):
        m = max(1, round(w * fraction))
        rows, cols = slice(0, h), (slice(0, m) if region == "left" else slice(w - m, w))
    else:
        raise ValueError(f"unknown mask region {region!r}")
    x[:, :, rows, cols] = fill.view(1, -1, 1, 1).to(x.dtype)
    return x


def downsampled(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Block means over ``factor`` x ``factor`` pixels, shown back at the original size."""
    h, w = images.shape[-2:]
    small = F.avg_pool2d(images, factor, ceil_mode=True)
    return F.interpolate(small, size=(h, w), mode="nearest")


def pixel_features(partial: torch.Tensor, side: int) -> torch.Tensor:
    """The partial record as a vector: block-averaged to at most ``side`` x ``side`` pixels, flattened."""
    h, w = partial.shape[-2:]
    pooled = F.adaptive_avg_pool2d(partial, (min(side, h), min(side, w)))
    return pooled.flatten(1)


def untrained_like(spec, dataset, aux_images: torch.Tensor, seed: int, ctx):
    """A freshly initialised network of the target's architecture: the control attacker's placebo model.

    Its outputs are a fixed random transform of the partial record, as many
    numbers as the target model gives, but learnt from nothing; the control
    gets them so that with-model minus control measures what training on the
    release adds, not merely a few more nonlinear features.
    """
    from privbench.nets import channel_stats, make_model

    mean, std = channel_stats(aux_images)
    options = {"width": spec.width, "depth": spec.depth} if spec.model == "convnet" else {}
    model = make_model(spec.model, dataset.channels, dataset.num_classes, dataset.image_shape[1:], seed=seed,
                       mean=mean, std=std, **options)
    return model.to(ctx.torch_device).eval()

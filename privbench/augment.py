"""Differentiable Siamese augmentation (DSA, Zhao & Bilen 2021).

Distribution and gradient matching compare a real batch with a synthetic one;
DSA transforms both with the *same* randomly drawn transformation and lets the
gradient flow back through it to the synthetic pixels. The same module also
augments mini-batches while training a classifier on a release.

Strategy strings name operations joined by ``_``
(``color_crop_cutout_flip_scale_rotate``). As in the reference code, each call
picks ONE of the named operations at random and applies it:

``color``   brightness shift, then saturation, then contrast (on one channel
            saturation is the identity: there is no chroma to scale; brightness
            and contrast still apply)
``crop``    translate by up to ``crop`` x side pixels, empty border filled
``cutout``  blank a square of ``cutout`` x side
``flip``    horizontal flip with probability ``flip``
``scale``   scale each axis by a factor in [1/scale, scale]
``rotate``  rotate by up to +-``rotate`` degrees

The reference augments *normalised* tensors, so its strengths (a brightness
shift of up to 0.5, zero-filled borders and cut-outs) are in normalised units.
Images here are in ``[0, 1]``; :class:`DSA` therefore works in the space
``(x - mean) / std`` given by ``mean``/``std`` (pass the model's statistics,
see :func:`privbench.nets.input_stats`) and maps back, so strengths mean what
they meant in the reference and empty pixels take the mean colour.

Randomness: :meth:`DSA.sample` draws from the ``torch.Generator`` it is given
(normally on the CPU) and returns device-free parameters; :meth:`DSA.apply`
moves them to the images' device. Parameters are unit uniforms, mapped to
pixels at apply time, so one draw fits any batch size: one row (Siamese, the
whole batch and any other batch share one transformation) or one row per image
(independent per image, how the reference augments while training a model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from privbench.errors import UserError

DEFAULT_STRATEGY = "color_crop_cutout_flip_scale_rotate"

# How many unit uniforms each operation consumes per image.
_DRAWS = {"color": 3, "crop": 2, "cutout": 2, "flip": 1, "scale": 2, "rotate": 1}
OPERATIONS = tuple(_DRAWS)


def parse_strategy(strategy: str) -> tuple[str, ...]:
    """``"color_crop"`` -> ``("color", "crop")``; ``"none"`` or ``""`` -> ``()``."""
    text = (strategy or "").strip().lower()
    if text in ("", "none"):
        return ()
    parts = tuple(text.split("_"))
    unknown = [p for p in parts if p not in _DRAWS]
    if unknown:
        raise UserError(
            f"unknown augmentation {unknown[0]!r} in strategy {strategy!r}; valid parts: "
            f"{', '.join(OPERATIONS)} joined by '_', or 'none'"
        )
    return parts


@dataclass(frozen=True)
class AugParams:
    """One sampled transformation: the operation and its unit uniforms (rows x draws, CPU).

    One row is shared by every image of any batch it is applied to; ``n`` rows
    apply row ``i`` to image ``i``.
    """

    op: str | None
    u: torch.Tensor

    @property
    def rows(self) -> int:
        return int(self.u.shape[0])


class DSA:
    """Differentiable Siamese augmentation with the reference's default strengths.

    ``DSA(strategy, scale=1.2, rotate=15, crop=0.125, cutout=0.5, flip=0.5,
    brightness=1.0, saturation=2.0, contrast=0.5, mean=0.5, std=0.5)``.
    """

    def __init__(
        self,
        strategy: str = DEFAULT_STRATEGY,
        *,
        scale: float = 1.2,
        rotate: float = 15.0,
        crop: float = 0.125,
        cutout: float = 0.5,
        flip: float = 0.5,
        brightness: float = 1.0,
        saturation: float = 2.0,
        contrast: float = 0.5,
        mean: float | Sequence[float] | torch.Tensor = 0.5,
        std: float | Sequence[float] | torch.Tensor = 0.5,
    ):
        self.strategy = strategy
        self.ops = parse_strategy(strategy)
        if scale < 1:
            raise UserError(f"DSA scale must be at least 1 (factors span 1/scale..scale), got {scale}")
        if not 0 <= crop < 0.5 or not 0 <= cutout <= 1 or not 0 <= flip <= 1:
            raise UserError("DSA crop must lie in [0, 0.5), cutout and flip in [0, 1]")
        self.scale, self.rotate, self.crop, self.cutout, self.flip = scale, rotate, crop, cutout, flip
        self.brightness, self.saturation, self.contrast = brightness, saturation, contrast
        self.mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
        self.std = torch.as_tensor(std, dtype=torch.float32).flatten()
        if (self.std <= 0).any():
            raise UserError("DSA std must be positive")

    def __repr__(self) -> str:
        return f"DSA({self.strategy!r})"

    @property
    def enabled(self) -> bool:
        return bool(self.ops)

    # ------------------------------------------------------------------ sampling

    def sample(self, generator: torch.Generator, n: int = 1) -> AugParams:
        """Draw one transformation: the operation, then ``n`` rows of its parameters."""
        if not self.ops:
            return AugParams(None, torch.empty(n, 0))
        dev = generator.device
        op = self.ops[int(torch.randint(len(self.ops), (1,), generator=generator, device=dev))]
        u = torch.rand(n, _DRAWS[op], generator=generator, device=dev).cpu()
        return AugParams(op, u)

    def __call__(self, x: torch.Tensor, generator: torch.Generator, per_sample: bool = False) -> torch.Tensor:
        """Sample and apply: one transformation for the batch, or one per image with ``per_sample``."""
        if not self.ops:
            return x
        return self.apply(x, self.sample(generator, x.shape[0] if per_sample else 1))

    # ------------------------------------------------------------------ applying

    def apply(self, x: torch.Tensor, params: AugParams) -> torch.Tensor:
        """Transform ``x`` (N x C x H x W, in [0, 1]) by ``params``; differentiable in ``x``."""
        if params.op is None:
            return x
        if x.ndim != 4:
            raise UserError(f"DSA expects N x C x H x W images, got shape {tuple(x.shape)}")
        n, c = x.shape[:2]
        if params.rows not in (1, n):
            raise UserError(f"augmentation parameters have {params.rows} rows for a batch of {n}")
        u = params.u.to(device=x.device, dtype=x.dtype).expand(n, -1)
        mean, std = (self._per_channel(t, c, x) for t in (self.mean, self.std))
        z = (x - mean) / std
        z = getattr(self, f"_{params.op}")(z, u)
        return z * std + mean

    @staticmethod
    def _per_channel(t: torch.Tensor, c: int, x: torch.Tensor) -> torch.Tensor:
        if t.numel() not in (1, c):
            raise UserError(f"DSA mean/std have {t.numel()} values for {c}-channel images")
        return t.to(device=x.device, dtype=x.dtype).expand(c).view(1, c, 1, 1)

    def _color(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        b, s, k = (u[:, i].view(-1, 1, 1, 1) for i in range(3))
        z = z + (b - 0.5) * self.brightness
        m = z.mean(dim=1, keepdim=True)
        z = (z - m) * (s * self.saturation) + m
        m = z.mean(dim=(1, 2, 3), keepdim=True)
        return (z - m) * (k + self.contrast) + m

    def _crop(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        n, _, h, w = z.shape
        sh, sw = int(h * self.crop + 0.5), int(w * self.crop + 0.5)
        if sh == 0 and sw == 0:
            return z
        dy = (u[:, 0] * (2 * sh + 1)).floor().long().clamp(max=2 * sh) - sh
        dx = (u[:, 1] * (2 * sw + 1)).floor().long().clamp(max=2 * sw) - sw
        padded = F.pad(z, (sw, sw, sh, sh))
        rows = torch.arange(h, device=z.device).view(1, h) + sh + dy.view(n, 1)
        cols = torch.arange(w, device=z.device).view(1, w) + sw + dx.view(n, 1)
        batch = torch.arange(n, device=z.device).view(n, 1, 1)
        # Advanced indices around a slice put their dimensions first: N x H x W x C.
        return padded[batch, :, rows.view(n, h, 1), cols.view(n, 1, w)].permute(0, 3, 1, 2)

    def _cutout(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        n, _, h, w = z.shape
        ch, cw = int(h * self.cutout + 0.5), int(w * self.cutout + 0.5)
        span_y, span_x = h + (1 - ch % 2), w + (1 - cw % 2)
        top = (u[:, 0] * span_y).floor().long().clamp(max=span_y - 1) - ch // 2
        left = (u[:, 1] * span_x).floor().long().clamp(max=span_x - 1) - cw // 2
        ys = torch.arange(h, device=z.device).view(1, h)
        xs = torch.arange(w, device=z.device).view(1, w)
        in_y = (ys >= top.view(n, 1)) & (ys < (top + ch).view(n, 1))
        in_x = (xs >= left.view(n, 1)) & (xs < (left + cw).view(n, 1))
        keep = ~(in_y.view(n, 1, h, 1) & in_x.view(n, 1, 1, w))
        return z * keep.to(z.dtype)

    def _flip(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return torch.where((u[:, 0] < self.flip).view(-1, 1, 1, 1), z.flip(3), z)

    def _scale(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        lo = 1.0 / self.scale
        sx, sy = (u[:, i] * (self.scale - lo) + lo for i in range(2))
        zero = torch.zeros_like(sx)
        theta = torch.stack([torch.stack([sx, zero, zero], 1), torch.stack([zero, sy, zero], 1)], 1)
        return self._warp(z, theta)

    def _rotate(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        angle = (u[:, 0] - 0.5) * 2 * math.radians(self.rotate)
        cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        return self._warp(z, theta)

    @staticmethod
    def _warp(z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        grid = F.affine_grid(theta, list(z.shape), align_corners=False)
        return F.grid_sample(z, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


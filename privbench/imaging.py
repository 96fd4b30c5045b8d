"""Image grids as PNG: release previews and side-by-side comparisons."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch


def _to_uint8_hwc(img: torch.Tensor) -> np.ndarray:
    arr = (img.detach().float().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    arr = np.transpose(arr, (1, 2, 0))
    return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr


def grid_image(rows: Sequence[Sequence[torch.Tensor | None]], pad: int = 2, scale: int = 1) -> np.ndarray:
    """Tile C x H x W images into one RGB uint8 array; ``None`` leaves a blank cell."""
    sample = next(img for row in rows for img in row if img is not None)
    h, w = sample.shape[-2:]
    ncols = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + pad) + pad, ncols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            if img is None:
                continue
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y : y + h, x : x + w] = _to_uint8_hwc(img)
    if scale > 1:
        out = np.repeat(np.repeat(out, scale, axis=0), scale, axis=1)
    return out


def save_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(array).save(path, format="PNG")


def release_preview(images: torch.Tensor, labels: torch.Tensor, num_classes: int, path: Path, max_per_class: int = 20) -> None:
    """One row per class, up to ``max_per_class`` images each, upscaled so small images stay visible."""
    rows = []
    for c in range(num_classes):
        idx = torch.nonzero(labels == c).flatten()[:max_per_class]
        rows.append([images[i] for i in idx] or [None])
    if all(r == [None] for r in rows):
        return
    h = images.shape[-1]
    scale = max(1, 64 // max(1, h))
    save_png(grid_image(rows, scale=scale), path)

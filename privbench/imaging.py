"""Image files: reading them within the limits, and writing grids as PNG (release previews).

Every image file a user hands privbench is opened through :func:`open_image`,
which reads the declared width and height first and refuses an image beyond
``PRIVBENCH_MAX_IMAGE_SIDE`` before any pixel is decoded, and turns every
decoder complaint into one :class:`UserError` line naming the file.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from privbench.errors import UserError
from privbench.limits import ENV_MAX_IMAGE_SIDE, check_image_side, max_image_side

# What Pillow raises on a damaged or hostile file, besides its own error classes.
DECODER_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError, ZeroDivisionError,
                  struct.error, zlib.error)


def printable(name: str | os.PathLike) -> str:
    """A file name that can be printed and stored: bytes that are not UTF-8 become ``\\xNN``."""
    text = os.fspath(name)
    if isinstance(text, bytes):
        return text.decode("utf-8", "backslashreplace")
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _sync_pillow_limit() -> None:
    """Pillow's own bomb limit never refuses an image that privbench's limit allows."""
    from PIL import Image

    pixels = max_image_side() ** 2
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < pixels:
        Image.MAX_IMAGE_PIXELS = pixels


def image_size(path: Path, what: str = "image") -> tuple[int, int]:
    """Width and height that a file declares, checked against the limit; no pixel is decoded."""
    from PIL import Image

    _sync_pillow_limit()
    name = f"{what} {printable(path)}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UserError(
            f"{name} is larger than the limit of {max_image_side()} pixels a side ({exc}); "
            f"set {ENV_MAX_IMAGE_SIDE} higher to allow it"
        ) from exc
    except DECODER_ERRORS as exc:
        raise UserError(f"cannot read {name}: {printable(str(exc)) or type(exc).__name__}") from exc
    check_image_side(width, height, name)
    return width, height


@contextmanager
def open_image(path: Path, what: str = "image") -> "Iterator[Image.Image]":  # noqa: F821
    """An image opened for decoding once its declared size passed the limit; any decoder error is one line.

    Safe in worker threads; call :func:`image_size` first (in one thread) so that
    an oversized file is refused without Pillow printing a warning of its own.
    """
    from PIL import Image

    _sync_pillow_limit()
    name = f"{what} {printable(path)}"
    try:
        with Image.open(path) as img:
            check_image_side(*img.size, name)
            yield img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UserError(f"{name} is too large to decode ({printable(str(exc))}); set {ENV_MAX_IMAGE_SIDE} higher to allow it") from exc
    except DECODER_ERRORS as exc:
        raise UserError(f"cannot read {name}: {printable(str(exc)) or type(exc).__name__}") from exc


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

"""Array conversions shared by the loaders: every loader ends in float32 N x C x H x W in [0, 1]."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from privbench.errors import UserError
from privbench.limits import check_bytes, check_size, shape_bytes


def images_to_tensor(arr: np.ndarray, where: str) -> torch.Tensor:
    """uint8 (0-255) or float ([0, 1]) images, N x H x W or N x H x W x C, to float32 N x C x H x W."""
    if arr.ndim == 3:
        arr = arr[:, None, :, :]
    elif arr.ndim == 4 and arr.shape[-1] in (1, 3):
        arr = np.transpose(arr, (0, 3, 1, 2))
    elif arr.ndim == 4 and arr.shape[1] in (1, 3):
        pass
    else:
        raise UserError(f"{where}: images have shape {arr.shape}; expected N x H x W or N x H x W x C (C = 1 or 3)")
    if arr.shape[0] == 0:
        raise UserError(f"{where}: there are no images")
    if 0 in arr.shape[2:]:
        raise UserError(f"{where}: images are {arr.shape[2]} x {arr.shape[3]} pixels; both sides must be at least 1")
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
        if np.isnan(out).any():
            raise UserError(f"{where}: images contain NaN pixels")
        if out.size and (out.min() < 0 or out.max() > 1):
            raise UserError(f"{where}: float images must lie in [0, 1] (found {out.min():.3g}..{out.max():.3g})")
    else:
        raise UserError(f"{where}: images have dtype {arr.dtype}; expected uint8 or float in [0, 1]")
    return torch.from_numpy(np.ascontiguousarray(out))


def labels_to_tensor(arr: np.ndarray, n: int, where: str) -> torch.Tensor:
    """Integer labels of shape N or N x 1 to an int64 vector."""
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 2 and arr.shape[1] > 1:
        raise UserError(f"{where}: labels have shape {arr.shape}: multi-label data is not supported")
    if arr.ndim != 1:
        raise UserError(f"{where}: labels have shape {arr.shape}; expected N or N x 1")
    if arr.shape[0] != n:
        raise UserError(f"{where}: {n} images but {arr.shape[0]} labels")
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        if (np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))
                and np.all(np.abs(arr) <= 2**53)):
            arr = arr.astype(np.int64)
        else:
            raise UserError(f"{where}: labels have dtype {arr.dtype}; expected integers")
    if arr.size and arr.min() < 0:
        raise UserError(f"{where}: labels must be non-negative")
    if arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise UserError(f"{where}: label {int(arr.max())} is too large")
    return torch.from_numpy(arr.astype(np.int64))


def set_channels(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    """Grayscale to RGB by replication, RGB to grayscale by ITU-R 601 luma."""
    if channels is None or images.shape[1] == channels:
        return images
    if channels == 3 and images.shape[1] == 1:
        check_bytes(shape_bytes(images.shape) * 3, f"{images.shape[0]} images in colour")
        return images.repeat(1, 3, 1, 1)
    if channels == 1 and images.shape[1] == 3:
        w = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype).view(1, 3, 1, 1)
        return (images * w).sum(1, keepdim=True).clamp(0, 1)
    raise UserError(f"cannot convert {images.shape[1]} channels to {channels}")


def resize(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Square resize with antialiasing when shrinking; values stay in [0, 1]."""
    if size is None or (images.shape[-1] == size and images.shape[-2] == size):
        return images
    check_size(size, "image size")
    n, c = images.shape[:2]
    check_bytes(shape_bytes((n, c, size, size)), f"{n} images resized to {size} x {size}")
    shrinking = size < max(images.shape[-2:])
    out = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking)
    return out.clamp_(0, 1)

"""Running a per-pair image function over a large set in batches on the metric's device.

Imported lazily by the metric modules (it imports torch), so listing plugins
never pays for it.
"""

from __future__ import annotations

from typing import Callable

import torch

from privbench.api import UserError

PIXEL_BUDGET = 1 << 23


def batched(
    reference: torch.Tensor,
    candidate: torch.Tensor,
    batch_size: int,
    device: str,
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``fn`` on consecutive batches moved to ``device``; one float64 CPU value per pair.

    Only one batch lives on the device at a time, so ten thousand images fit on
    a small GPU; gradients are never recorded. A batch holds at most
    ``batch_size`` pairs and, for large images, fewer: about ``PIXEL_BUDGET``
    pixel values, so 224 x 224 RGB scans do not exhaust memory with a batch
    size chosen for 28 x 28 ones.
    """
    if reference.shape != candidate.shape:
        raise UserError(
            f"reference images {tuple(reference.shape)} and candidates {tuple(candidate.shape)} differ in shape"
        )
    n = int(reference.shape[0])
    per_pair = max(1, int(reference[:1].numel()))
    batch_size = max(1, min(batch_size, PIXEL_BUDGET // per_pair))
    out = []
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            ref = reference[start : start + batch_size].to(device, torch.float32, non_blocking=True)
            cand = candidate[start : start + batch_size].to(device, torch.float32, non_blocking=True)
            out.append(fn(ref, cand).reshape(-1).to("cpu", torch.float64))
    if not out:
        return torch.zeros(0, dtype=torch.float64)
    return torch.cat(out)


def grey_or_rgb(images: torch.Tensor) -> torch.Tensor:
    """Grayscale replicated to three channels for networks trained on RGB."""
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images

"""``ncc``: normalised cross-correlation, the paper's equation 9.

Per image pair, over all pixels and channels together (n values each),

    NCC(x, y) = sum_i (x_i - mean(x)) (y_i - mean(y)) / sqrt(sum_i (x_i - mean(x))^2 * sum_i (y_i - mean(y))^2)

the Pearson correlation of the pixel values, in [-1, 1]: 1 for identical
images, -1 for a negative (1 - x), and unchanged by brightness and contrast
changes (a x + b with a > 0). Higher means a closer copy.

Constant images (a blank reconstruction) make the denominator zero. privbench
reports 1 when both images are constant, since they then differ by no more
than a brightness change, which NCC is blind to by design; and 0 when only one
is, since a flat image carries no pattern that could correlate, and 0 is the
value NCC gives unrelated images. An image counts as constant when the root
mean square deviation of its pixels is below 1e-6 (an 8-bit grey level is
0.004). No library offers this batched and with these conventions, so it is
computed here: centred in float32, summed in float64 (within 1e-7 of a float64
computation).
"""

from __future__ import annotations

from dataclasses import dataclass

from privbench import hookimpl
from privbench.api import Metric

CONSTANT_RMS = 1e-6


@dataclass(frozen=True)
class NCCConfig:
    batch_size: int = 4096

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


def _ncc(x, y):
    import torch

    x = x.reshape(x.shape[0], -1)
    y = y.reshape(y.shape[0], -1)
    x = x - x.mean(dim=1, keepdim=True)
    y = y - y.mean(dim=1, keepdim=True)
    sxx = (x * x).sum(dim=1, dtype=torch.float64)
    syy = (y * y).sum(dim=1, dtype=torch.float64)
    sxy = (x * y).sum(dim=1, dtype=torch.float64)
    floor = x.shape[1] * CONSTANT_RMS**2
    flat_x, flat_y = sxx <= floor, syy <= floor
    ncc = sxy / torch.sqrt(torch.where(flat_x | flat_y, 1.0, sxx * syy))
    ncc = torch.where(flat_x | flat_y, 0.0, ncc.clamp(-1.0, 1.0))
    return torch.where(flat_x & flat_y, 1.0, ncc)


class NCC(Metric):
    """Normalised cross-correlation (Pearson r of pixels) in [-1, 1]; higher = closer copy."""

    name = "ncc"
    Config = NCCConfig
    higher_is_better = True

    def score(self, reference, candidate):
        from privbench_builtins.metrics._batching import batched

        return batched(reference, candidate, self.config.batch_size, self.device, _ncc)


@hookimpl
def register_metrics(register):
    register(NCC)

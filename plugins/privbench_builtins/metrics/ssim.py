"""``ssim``: the structural similarity index (Wang et al. 2004), the paper's equation 5, with piq.

Per image and channel, local means, variances and the covariance are taken in
an 11 x 11 Gaussian window (sigma 1.5) and combined as

    SSIM(x, y) = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))

with C1 = (0.01 L)^2, C2 = (0.03 L)^2 and L = 1 (images in [0, 1]); the map is
averaged over the positions where the whole window fits, then over channels
(RGB images: the mean of the three per-channel SSIMs). 1 means identical.

This equals scikit-image's ``structural_similarity(x, y, data_range=1,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``: scikit-image
filters with reflected borders and then crops the border the window overhangs,
which leaves exactly piq's "valid" positions. Its defaults differ (a 7 x 7
uniform window and the sample covariance), which changes values by a few
hundredths, so compare with those options. The remaining difference is float32
against float64 arithmetic, below 1e-4. Images smaller than the window use the
largest odd window that fits (7 x 7 for 8 x 8 images).
"""

from __future__ import annotations

from dataclasses import dataclass

from privbench import hookimpl
from privbench.api import Metric


@dataclass(frozen=True)
class SSIMConfig:
    """Wang et al.'s constants; ``downsample`` applies piq's average pooling of images over 384 pixels."""

    kernel_size: int = 11
    kernel_sigma: float = 1.5
    k1: float = 0.01
    k2: float = 0.03
    downsample: bool = False
    batch_size: int = 1024

    def __post_init__(self) -> None:
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {self.kernel_size}")
        if self.kernel_sigma <= 0:
            raise ValueError(f"kernel_sigma must be positive, got {self.kernel_sigma}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


class SSIM(Metric):
    """Structural similarity (SSIM, Gaussian 11 x 11 window); 1 = identical, higher = closer copy."""

    name = "ssim"
    Config = SSIMConfig
    higher_is_better = True

    def score(self, reference, candidate):
        import piq

        from privbench_builtins.metrics._batching import batched

        cfg = self.config
        smallest = min(int(reference.shape[-2]), int(reference.shape[-1]))
        kernel = cfg.kernel_size if smallest >= cfg.kernel_size else max(1, smallest - (1 - smallest % 2))
        pools = cfg.downsample and round(smallest / 256) > 1
        per_channel = None if pools else _per_channel_ssim()

        def fn(x, y):
            if per_channel is not None:
                return per_channel(y, x, kernel, cfg)
            return piq.ssim(y, x, kernel_size=kernel, kernel_sigma=cfg.kernel_sigma, data_range=1.0,
                            reduction="none", downsample=cfg.downsample, k1=cfg.k1, k2=cfg.k2)

        return batched(reference, candidate, cfg.batch_size, self.device, fn)


def _per_channel_ssim():
    """piq's per-channel SSIM applied to a batch laid out along the channel axis, or None.

    ``piq.ssim`` convolves an N x C batch as N images of C channels; for
    grayscale that is N single-channel convolutions, several times slower on a
    CPU than one depthwise convolution over N x C channels. piq computes the
    per-channel values anyway and averages them over channels; asking it for
    those values of the (1, N x C) layout gives the same numbers as
    ``piq.ssim`` (the tests check this) in a quarter of the time. If a piq
    release drops that function, the public ``piq.ssim`` is used instead.
    """
    try:
        from piq.functional import gaussian_filter
        from piq.ssim import _ssim_per_channel
    except ImportError:  # pragma: no cover - depends on the piq release
        return None

    def run(x, y, kernel_size, cfg):
        n, c, h, w = x.shape
        window = gaussian_filter(kernel_size, cfg.kernel_sigma, device=x.device, dtype=x.dtype)
        window = window.repeat(n * c, 1, 1, 1)
        ssim, _cs = _ssim_per_channel(x.reshape(1, n * c, h, w), y.reshape(1, n * c, h, w), window,
                                      data_range=1.0, k1=cfg.k1, k2=cfg.k2)
        return ssim.reshape(n, c).mean(dim=1)

    return run


@hookimpl
def register_metrics(register):
    register(SSIM)

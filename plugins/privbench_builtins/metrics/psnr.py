"""``psnr``: the peak signal-to-noise ratio in decibels, the paper's equation 6, with piq.

    PSNR(x, y) = 10 log10(L^2 / (MSE(x, y) + 1e-8)),   L = 1 (images in [0, 1])

where MSE is the mean squared difference over all pixels and channels (RGB
images are not converted to grayscale). piq adds 1e-8 to the MSE, which keeps
identical images finite: they score 10 log10(1e8) = 80 dB, the PSNR of a root
mean squared error of 1e-4 (a fortieth of one 8-bit grey level), so a mean
with a confidence interval over images that include exact copies stays a
number. Against scikit-image's ``peak_signal_noise_ratio(x, y, data_range=1)``
the only difference is that epsilon: 10 log10(1 + 1e-8 / MSE) dB, below
0.005 dB for any PSNR under 50 dB. Higher means a closer copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from privbench import hookimpl
from privbench.api import Metric

IDENTICAL_DB = 80.0


@dataclass(frozen=True)
class PSNRConfig:
    batch_size: int = 4096

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


class PSNR(Metric):
    """Peak signal-to-noise ratio in dB (identical images: 80 dB); higher = closer copy."""

    name = "psnr"
    Config = PSNRConfig
    higher_is_better = True

    def score(self, reference, candidate):
        import piq

        from privbench_builtins.metrics._batching import batched

        def fn(x, y):
            return piq.psnr(y, x, data_range=1.0, reduction="none", convert_to_greyscale=False)

        return batched(reference, candidate, self.config.batch_size, self.device, fn)


@hookimpl
def register_metrics(register):
    register(PSNR)

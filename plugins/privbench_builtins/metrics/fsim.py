"""``fsim``: the feature similarity index (Zhang et al. 2011), the paper's equation 10, with piq.

Phase congruency PC (log-Gabor filters, 4 scales x 4 orientations) and the
Scharr gradient magnitude G of both images give a local similarity

    S_L = [(2 PC_x PC_y + T1) / (PC_x^2 + PC_y^2 + T1)] * [(2 G_x G_y + T2) / (G_x^2 + G_y^2 + T2)]

which is averaged with the weights PC_m = max(PC_x, PC_y):
FSIM = sum(S_L PC_m) / sum(PC_m), with T1 = 0.85 and T2 = 160 on the 0-255
scale. This is FSIM on grayscale, without the chromatic term of FSIMc: RGB
images are reduced to the luminance Y = 0.299 R + 0.587 G + 0.114 B (piq's YIQ
conversion) and scored on Y alone, so grayscale and RGB images of one dataset
compare on the same scale. Images of 384 pixels or more are average-pooled by
round(min(H, W) / 256) first, as in the authors' MATLAB code. 1 means
identical (also for constant images); higher means a closer copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from privbench import hookimpl
from privbench.api import Metric


@dataclass(frozen=True)
class FSIMConfig:
    """The log-Gabor filter bank of the original FSIM code."""

    scales: int = 4
    orientations: int = 4
    min_length: int = 6
    mult: int = 2
    sigma_f: float = 0.55
    delta_theta: float = 1.2
    k: float = 2.0
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.scales < 1 or self.orientations < 1:
            raise ValueError("scales and orientations must be at least 1")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


class FSIM(Metric):
    """Feature similarity (FSIM on luminance, no chromatic term); 1 = identical, higher = closer copy."""

    name = "fsim"
    Config = FSIMConfig
    higher_is_better = True

    def score(self, reference, candidate):
        import piq

        from privbench_builtins.metrics._batching import batched

        cfg = self.config

        def fn(x, y):
            return piq.fsim(y, x, reduction="none", data_range=1.0, chromatic=False, scales=cfg.scales,
                            orientations=cfg.orientations, min_length=cfg.min_length, mult=cfg.mult,
                            sigma_f=cfg.sigma_f, delta_theta=cfg.delta_theta, k=cfg.k)

        return batched(reference, candidate, cfg.batch_size, self.device, fn)


@hookimpl
def register_metrics(register):
    register(FSIM)

"""``dp-dm``: distribution matching with a differential-privacy guarantee for every training image.

The private images enter only through a Poisson-subsampled Gaussian mechanism
on clipped per-class embedding sums (``_dp_dm.py``); opacus's accountant turns
(sigma, q, iterations, delta) into the epsilon the release's manifest states,
and sigma is solved for the epsilon asked. The guarantee is for add/remove-one-
image neighbours: its unit is one image, not one patient (a patient with
several images is protected by the group guarantee, which is weaker).
``epsilon = inf`` is plain DM from noise, for the utility-versus-epsilon curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from privbench import hookimpl
from privbench.api import Dataset, Distiller, Release, RunContext, UserError


@dataclass(frozen=True)
class DPDMConfig:
    """The guarantee, the mechanism's parameters, and DM's own settings."""

    # The privacy budget for the whole run; inf: no noise, no guarantee (plain DM from noise).
    epsilon: float = 10.0
    # 0: 1 / (10 n), below 1 / n as a meaningful guarantee needs.
    delta: float = 0.0
    # rdp (opacus's RDP accountant) or prv (its PRV accountant, tighter for many steps).
    accountant: Literal["rdp", "prv"] = "rdp"
    # Every iteration is one use of the mechanism: more iterations need more noise for the same epsilon.
    iterations: int = 200
    # q: each training image joins an iteration's batch with this probability.
    sample_rate: float = 0.05
    # C: each image's embedding is clipped to this L2 norm (its sensitivity); inf turns clipping off (not private).
    clip_norm: float = 1.0
    # DM's 1.0 is tuned for 20,000 iterations; with the few a budget allows, 10 learns more (docs/distillers.md).
    lr_img: float = 10.0
    momentum: float = 0.5
    # noise only under a finite epsilon: real images would publish the initialising patients.
    init: Literal["noise", "real"] = "noise"
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"
    width: int = 128
    depth: int = 3
    # Per-image norms only: batch norm mixes the images of a batch.
    norm: Literal["instancenorm", "none"] = "instancenorm"

    def __post_init__(self) -> None:
        who = "distiller dp-dm"
        if not self.epsilon > 0:
            raise UserError(f"{who}: epsilon must be positive (inf for no privacy), got {self.epsilon}")
        if not 0 <= self.delta < 1:
            raise UserError(f"{who}: delta must lie in [0, 1) (0: 1 / (10 n)), got {self.delta}")
        if not 0 < self.sample_rate <= 1:
            raise UserError(f"{who}: sample_rate must lie in (0, 1], got {self.sample_rate}")
        if not self.clip_norm > 0:
            raise UserError(f"{who}: clip_norm must be positive, got {self.clip_norm}")
        if math.isfinite(self.epsilon) and math.isinf(self.clip_norm):
            raise UserError(f"{who}: a finite epsilon needs a finite clip_norm (the mechanism's sensitivity)")
        if math.isfinite(self.epsilon) and self.init == "real":
            raise UserError(f"{who}: init=real publishes the training images it starts from, so it has no "
                            f"guarantee; use init=noise, or epsilon=inf for a non-private run")
        if self.iterations < 0 or self.width < 1 or self.depth < 1 or self.lr_img <= 0 or self.momentum < 0:
            raise UserError(f"{who}: iterations must be at least 0, width, depth and lr_img positive, "
                            f"momentum at least 0")


class DPDistributionMatching(Distiller):
    """Distribution matching whose only access to the private images is a sampled Gaussian mechanism."""

    name = "dp-dm"
    Config = DPDMConfig

    def check(self, private: Dataset, ipc: int, config: DPDMConfig) -> None:
        from privbench.accounting import noise_for
        from privbench_builtins.distillers._dp_dm import auto_delta
        from privbench_builtins.distillers._matching import check_request

        check_request(private, ipc, config.init, self.name)
        noise_for(config.epsilon, config.delta or auto_delta(len(private.train)), config.sample_rate,
                  max(1, config.iterations), config.accountant)

    def distill(self, private: Dataset, ipc: int, config: DPDMConfig, ctx: RunContext) -> Release:
        from privbench_builtins.distillers._dp_dm import dp_distribution_matching

        return dp_distribution_matching(private, ipc, config, ctx, name=self.name)


@hookimpl
def register_distillers(register):
    register(DPDistributionMatching)

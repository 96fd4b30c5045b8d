"""``gm``: dataset condensation with gradient matching, "DC" (Zhao, Mopuri & Bilen, ICLR 2021).

Synthetic images are learnt so that a network's gradients on them match its
gradients on real images of the same class, along the network's own training
trajectory on the synthetic set. With a DSA strategy it is the DSA variant
(Zhao & Bilen, ICML 2021). The algorithm lives in ``_gm.py``, imported only
when a release is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from privbench import hookimpl
from privbench.api import Dataset, Distiller, Release, RunContext, UserError


@dataclass(frozen=True)
class GMConfig:
    """Defaults are the published ones (paper and the reference ``main.py``)."""

    # main.py --Iteration.
    iterations: int = 1000
    # main.py --lr_img, SGD on the images with momentum 0.5.
    lr_img: float = 0.1
    momentum: float = 0.5
    # main.py --lr_net: the inner loop's plain SGD on the synthetic set.
    lr_net: float = 0.01
    # main.py --batch_real (real images per class per outer step) and --batch_train (inner loop).
    batch_real: int = 256
    batch_train: int = 256
    # main.py --init noise (the paper reports real and noise alike).
    init: Literal["real", "noise"] = "noise"
    # main.py --method DC: no augmentation. DSA (ICML 2021): color_crop_cutout_flip_scale_rotate
    # (color_crop_cutout_scale_rotate for digits).
    dsa_strategy: str = "none"
    # None: by ipc, the reference's get_loops (interpolated between its points, see docs/distillers.md).
    outer_loop: int | None = None
    inner_loop: int | None = None
    # The reference's ConvNet: width 128, depth 3, instance norm.
    width: int = 128
    depth: int = 3
    norm: Literal["instancenorm", "batchnorm", "none"] = "instancenorm"
    # How per-class gradients are computed (same numbers either way): "vmap", every class in one
    # vectorised call; "loop", one class at a time as the reference does; "auto", vmap on a GPU and
    # the loop on a CPU, where vmap's grouped convolutions measured 1.3x to 2.6x slower.
    class_batching: Literal["auto", "vmap", "loop"] = "auto"
    # The inner loop's training and the real images' gradients in float32, or under bf16 autocast (CUDA, or
    # a CPU with AVX-512 BF16 / AMX); the synthetic images' gradients and the matching loss stay float32.
    precision: Literal["fp32", "bf16"] = "fp32"
    # The inner loop's forward pass and the real images' gradients through torch.compile
    # (privbench.compiling; the synthetic side needs double backward and stays eager). Off until measured.
    compile: bool = False

    def __post_init__(self) -> None:
        # dsa_strategy is checked when distilling: its parser imports torch, and listing plugins must not.
        if self.iterations < 0:
            raise UserError(f"distiller gm: iterations must not be negative, got {self.iterations}")
        if self.batch_real < 1 or self.batch_train < 1:
            raise UserError("distiller gm: batch_real and batch_train must be at least 1")
        if self.lr_img <= 0 or self.lr_net <= 0 or self.momentum < 0:
            raise UserError("distiller gm: lr_img and lr_net must be positive, momentum not negative")
        if self.outer_loop is not None and self.outer_loop < 1:
            raise UserError(f"distiller gm: outer_loop must be at least 1, got {self.outer_loop}")
        if self.inner_loop is not None and self.inner_loop < 0:
            raise UserError(f"distiller gm: inner_loop must not be negative, got {self.inner_loop}")
        if self.width < 1 or self.depth < 1:
            raise UserError("distiller gm: width and depth must be positive")


class GradientMatching(Distiller):
    """Gradient matching, "DC": per-class gradients of real and synthetic batches (Zhao et al., ICLR 2021)."""

    name = "gm"
    Config = GMConfig

    def check(self, private: Dataset, ipc: int, config: GMConfig) -> None:
        from privbench_builtins.distillers._matching import check_request

        check_request(private, ipc, config.init, self.name)

    def distill(self, private: Dataset, ipc: int, config: GMConfig, ctx: RunContext) -> Release:
        from privbench_builtins.distillers._gm import gradient_matching

        return gradient_matching(private, ipc, config, ctx, name=self.name)


@hookimpl
def register_distillers(register):
    register(GradientMatching)

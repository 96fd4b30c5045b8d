"""``dm``: dataset condensation with distribution matching (Zhao & Bilen, WACV 2023).

Synthetic images are learnt so that, under many randomly initialised ConvNets,
each class's mean embedding of the synthetic images matches that of the real
images. No network is ever trained, which makes DM the cheapest of the
learnt distillers. ``feature_extractor=resnet18`` matches instead under one
fixed ImageNet ResNet-18, as Razi et al. do (their Algorithm 1, with
``init=noise``). The algorithm lives in ``_dm.py``, imported only when a
release is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from privbench import hookimpl
from privbench.api import Dataset, Distiller, Release, RunContext, UserError


@dataclass(frozen=True)
class DMConfig:
    """Defaults are the published ones (paper and the reference ``main_DM.py``)."""

    # main_DM.py --Iteration; the paper's 20,000 (suites and benchmarks lower it).
    iterations: int = 20000
    # None: the reference's choice, 1.0 up to 50 images per class and 10 above (its readme).
    lr_img: float | None = None
    # main_DM.py: SGD on the images with momentum 0.5.
    momentum: float = 0.5
    # main_DM.py --batch_real: real images per class per iteration.
    batch_real: int = 256
    # main_DM.py --init real (the paper initialises from real images).
    init: Literal["real", "noise"] = "real"
    # main_DM.py --dsa_strategy. The reference drops "flip" for digit datasets:
    # use color_crop_cutout_scale_rotate there; "none" turns augmentation off.
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"
    # The reference's ConvNet: width 128, depth 3, instance norm.
    width: int = 128
    depth: int = 3
    norm: Literal["instancenorm", "batchnorm", "none"] = "instancenorm"
    # All classes in one forward pass per side; False runs the reference's per-class loop (same loss, slower).
    batched: bool = True
    # random_convnet: a fresh ConvNet per iteration (the reference); resnet18: one fixed ImageNet ResNet-18
    # (Razi et al.), whose 512 pooled features are matched; width, depth and norm then do not apply.
    feature_extractor: Literal["random_convnet", "resnet18"] = "random_convnet"
    # resnet18's ImageNet weights file; empty: $TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth. Never downloaded.
    feature_weights: str = ""
    # The real images' forward pass (no gradient) in float32, or under bf16 autocast (on CUDA, or a CPU
    # with AVX-512 BF16 / AMX); the synthetic side and the loss stay float32. Off until measured to help.
    real_precision: Literal["fp32", "bf16"] = "fp32"
    # The network's passes through torch.compile (privbench.compiling): compiled once, reused by every
    # iteration's fresh network. Off until measured to help (docs/benchmarks.md).
    compile: bool = False

    def __post_init__(self) -> None:
        # dsa_strategy is checked when distilling: its parser imports torch, and listing plugins must not.
        if self.iterations < 0:
            raise UserError(f"distiller dm: iterations must not be negative, got {self.iterations}")
        if self.batch_real < 1:
            raise UserError(f"distiller dm: batch_real must be at least 1, got {self.batch_real}")
        if self.lr_img is not None and self.lr_img <= 0:
            raise UserError(f"distiller dm: lr_img must be positive, got {self.lr_img}")
        if self.momentum < 0:
            raise UserError(f"distiller dm: momentum must not be negative, got {self.momentum}")
        if self.width < 1 or self.depth < 1:
            raise UserError("distiller dm: width and depth must be positive")
        if self.norm == "batchnorm" and not self.batched and self.feature_extractor == "random_convnet":
            raise UserError("distiller dm: batched=false computes statistics per class; use it without batchnorm")
        if self.feature_weights.strip() and self.feature_extractor != "resnet18":
            raise UserError("distiller dm: feature_weights applies to feature_extractor=resnet18 only")


class DistributionMatching(Distiller):
    """Distribution matching: per-class mean embeddings under random ConvNets (Zhao & Bilen, WACV 2023)
    or a fixed ImageNet ResNet-18 (Razi et al.)."""

    name = "dm"
    Config = DMConfig

    def check(self, private: Dataset, ipc: int, config: DMConfig) -> None:
        from privbench_builtins.distillers._matching import check_request

        check_request(private, ipc, config.init, self.name)
        if config.feature_extractor == "resnet18":
            from privbench_builtins.distillers._pretrained import check_weights

            check_weights(config.feature_weights, private.channels, self.name)

    def distill(self, private: Dataset, ipc: int, config: DMConfig, ctx: RunContext) -> Release:
        from privbench_builtins.distillers._dm import distribution_matching

        return distribution_matching(private, ipc, config, ctx, name=self.name)


@hookimpl
def register_distillers(register):
    register(DistributionMatching)

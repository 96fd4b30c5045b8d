"""``ddm``: diffusion + distribution matching + diversity-aware selection (Razi et al., Algorithm 3).

1. Train a class-conditional DDPM on the private training set (cached by the
   set's content, the diffusion settings and the seed: every ipc shares it).
2. Per class, sample N_cand candidates by DDIM.
3. Refine them by gradient steps on the DM loss against the real class means
   in a feature space f_phi (a ConvNet, or the paper's fixed ImageNet
   ResNet-18 with ``feature_extractor=resnet18``).
4. Give each candidate the label of its nearest class mean in f_phi.
5. Per class, pick ipc candidates greedily: closest to the class mean first,
   each at least tau from every earlier pick; relax tau when a class cannot
   fill ipc.

The heavy lifting lives in private helper modules imported only when a release
is made, so listing plugins never imports torch or diffusers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from privbench import hookimpl
from privbench.api import Dataset, Distiller, Release, RunContext, UserError

DEFAULT_REFINE_DSA = "color_crop_cutout_scale_rotate"

DIFFUSION_FIELDS = (
    "train_steps", "batch_size", "lr", "weight_decay", "warmup_steps", "ema_decay", "unet_channels",
    "layers_per_block", "norm_groups", "attention", "timesteps", "beta_schedule",
)
"""The options that shape the trained DDPM: exactly these key its cache entry."""


@dataclass(frozen=True)
class DDMConfig:
    """Options of ``ddm``; the paper gives no hyper-parameters, so these are privbench's.

    Diffusion model (``UNet2DModel`` with a class embedding, ``DDPMScheduler``):

    * ``train_steps`` 3000 mini-batches of ``batch_size`` 64 (about 40 epochs of
      PneumoniaMNIST): a minute or two on a GPU; on a CPU lower it (see
      docs/distillers.md for measured costs).
    * ``lr`` 5e-4 AdamW (``weight_decay`` 1e-4), linear warm-up over
      ``warmup_steps`` 100 (at most a tenth of training): a small UNet tolerates
      a larger rate than the 1e-4 of big DDPMs, and training is short.
    * ``ema_decay`` 0.999 (0: off): the sampled weights are an exponential
      moving average, which cleans samples after short training.
    * ``unet_channels`` (32, 64, 64): three levels, so 28 x 28 halves cleanly
      (28 -> 14 -> 7); about 1.1 M parameters. ``layers_per_block`` 1,
      ``norm_groups`` 8 (every channel count must be a multiple), ``attention``
      at the lowest level only. Sizes that do not halve are padded.
    * ``timesteps`` 1000 with ``beta_schedule`` linear: the DDPM paper's.

    Candidates: ``sampling_steps`` 50 DDIM steps (eta 0);
    N_cand = max(``min_candidates`` 32, ``candidates_per_image`` 4 x ipc) per
    class, generated ``sample_batch_size`` at a time. A class left with fewer
    than ipc candidates after assignment gets N_cand more, up to
    ``extra_rounds`` 2 times; then the nearest candidates of classes with a
    surplus are moved to it (warned).

    Feature space and refinement: ``features`` trained (a ConvNet of
    ``feature_width`` 128, ``feature_depth`` 3 trained ``feature_epochs`` 5 on
    the private set) or random (a fresh ConvNet per refinement step, DM's
    choice; a fixed random one for assignment and selection).
    ``refine_steps`` 100 Adam steps of ``refine_lr`` 0.01 on the pixels,
    clamped to [0, 1]; ``refine_batch`` 256 candidates per forward pass.
    ``real_batch`` 256 and ``refine_dsa`` (no flip: X-rays have a side) apply
    to random features only. ``refine_compile`` runs the refinement's
    network through ``torch.compile`` (off by default). ``feature_extractor`` resnet18 replaces the
    ConvNet (and ``features``, ``feature_epochs``, ``feature_width``,
    ``feature_depth``) by one fixed ImageNet ResNet-18 for refinement,
    assignment and selection, the real means computed once as for trained
    features; its weights come from ``feature_weights`` or, when empty,
    ``$TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth`` (never downloaded).

    Selection: ``tau`` 0.5 is a fraction of the median pairwise feature
    distance between a class's candidates; when a class cannot fill ipc, tau
    is halved (keeping the picks) up to ``max_halvings`` 8 times, then 0.
    """

    train_steps: int = 3000
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    ema_decay: float = 0.999
    unet_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    norm_groups: int = 8
    attention: bool = True
    timesteps: int = 1000
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear"
    sampling_steps: int = 50
    candidates_per_image: int = 4
    min_candidates: int = 32
    sample_batch_size: int = 256
    extra_rounds: int = 2
    features: Literal["trained", "random"] = "trained"
    feature_extractor: Literal["convnet", "resnet18"] = "convnet"
    feature_weights: str = ""
    feature_epochs: int = 5
    feature_width: int = 128
    feature_depth: int = 3
    refine_steps: int = 100
    refine_lr: float = 0.01
    refine_batch: int = 256
    real_batch: int = 256
    refine_dsa: str = DEFAULT_REFINE_DSA
    refine_compile: bool = False
    tau: float = 0.5
    max_halvings: int = 8

    def __post_init__(self) -> None:
        at_least = {
            "train_steps": 1, "batch_size": 1, "layers_per_block": 1, "norm_groups": 1, "timesteps": 2,
            "sampling_steps": 1, "candidates_per_image": 1, "min_candidates": 1, "sample_batch_size": 1,
            "feature_epochs": 1, "feature_width": 1, "feature_depth": 1, "refine_batch": 1, "real_batch": 1,
            "warmup_steps": 0, "extra_rounds": 0, "refine_steps": 0, "max_halvings": 0,
        }
        for key, low in at_least.items():
            if getattr(self, key) < low:
                raise ValueError(f"{key} must be at least {low}, got {getattr(self, key)}")
        if self.lr <= 0 or self.refine_lr <= 0 or self.weight_decay < 0:
            raise ValueError("lr and refine_lr must be positive and weight_decay not negative")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.tau < 0:
            raise ValueError(f"tau must not be negative, got {self.tau}")
        if self.sampling_steps > self.timesteps:
            raise ValueError(f"sampling_steps ({self.sampling_steps}) cannot exceed timesteps ({self.timesteps})")
        if not self.unet_channels or any(c < 1 or c % self.norm_groups for c in self.unet_channels):
            raise ValueError(
                f"unet_channels {list(self.unet_channels)} must be positive multiples of norm_groups ({self.norm_groups})"
            )
        if self.attention and self.unet_channels[-1] % 8:
            raise ValueError("with attention the last of unet_channels must be a multiple of 8 (heads of 8 channels)")
        if self.feature_weights.strip() and self.feature_extractor != "resnet18":
            raise ValueError("feature_weights applies to feature_extractor=resnet18 only")
        if self.refine_dsa != DEFAULT_REFINE_DSA:
            from privbench.augment import parse_strategy

            parse_strategy(self.refine_dsa)

    def diffusion_settings(self) -> dict:
        return {key: getattr(self, key) for key in DIFFUSION_FIELDS}

    def candidates_for(self, ipc: int) -> int:
        return max(self.min_candidates, self.candidates_per_image * ipc)


class DDM(Distiller):
    """Class-conditional DDPM samples refined by distribution matching, picked for diversity."""

    name = "ddm"
    Config = DDMConfig

    def check(self, private: Dataset, ipc: int, config: DDMConfig) -> None:
        if ipc is None or ipc < 1:
            raise UserError(f"ipc must be a positive number of images per class, got {ipc}")
        if config.feature_extractor == "resnet18":
            from privbench_builtins.distillers._pretrained import check_weights

            check_weights(config.feature_weights, private.channels, self.name)

    def distill(self, private: Dataset, ipc: int, config: DDMConfig, ctx: RunContext) -> Release:
        self.check(private, ipc, config)
        from privbench_builtins.distillers._ddm_pipeline import run

        return run(private, ipc, config, ctx)


@hookimpl
def register_distillers(register):
    register(DDM)

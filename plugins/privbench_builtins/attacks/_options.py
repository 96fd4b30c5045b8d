"""Checks of the attacks' Config values that import nothing heavy.

A Config is built while plugins are listed, so its checks must not import
torch; the model names are therefore spelled out here (they are
``privbench.nets.MODELS``, which a test keeps in step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TARGET_MODELS = ("convnet", "resnet18", "resnet50")


def check_target_fields(config: Any) -> None:
    """Refuse bad ``target_*`` values in a Config's ``__post_init__`` (one line, before any work)."""
    if str(config.target_model).lower() not in TARGET_MODELS:
        raise ValueError(f"target_model must be one of {', '.join(TARGET_MODELS)}, got {config.target_model!r}")
    if config.target_epochs < 1 or config.target_width < 1 or config.target_depth < 1:
        raise ValueError("target_epochs, target_width and target_depth must be at least 1")
    if config.target_steps < 0:
        raise ValueError(f"target_steps must be 0 (train for target_epochs) or positive, got {config.target_steps}")


def check_population_fields(config: Any) -> None:
    """Refuse bad ``nonmember_splits`` (where it has them) and ``duplicate_rms`` values, in one line."""
    splits = getattr(config, "nonmember_splits", ("val",))
    if not splits or any(s not in ("val", "test") for s in splits):
        raise ValueError(f"nonmember_splits must be val, test or both; got {', '.join(splits) or 'none'}")
    if not 0 <= config.duplicate_rms < 1:
        raise ValueError(f"duplicate_rms must lie in [0, 1), got {config.duplicate_rms}")


@dataclass(frozen=True)
class TargetOptions:
    """The recipient's training recipe, shared by every attack that trains the target model, and the CIs' resamples.

    ``target_steps`` > 0 fixes the optimiser steps instead of the epochs;
    ``target_augment=false`` trains without augmentation (the worst case);
    ``target_weights``: a ResNet's starting weights (a file, or ``imagenet``).
    """

    target_model: str = "convnet"
    target_epochs: int = 1000
    target_steps: int = 0
    target_width: int = 128
    target_depth: int = 3
    target_augment: bool = True
    target_weights: str = ""
    resamples: int = 1000

"""What the built-in attacks share: the target model, seeded samples, nearest neighbours.

The target model is the classifier a recipient of the release would train:
:func:`privbench.utility.train_on_release` with the utility protocol, so the
model an attack queries is the model whose utility is reported (with the
same recipe it is the utility's first-seed model). The recipe is the
attack's setting because the recipient chooses it: architecture, width,
depth, epochs or optimiser steps, and augmentation on or off (a model trained
without augmentation memorises more, the worst case an audit must be able to
take). It is kept in memory for the next attack of the same run, so ``mia``
and ``aia`` train it once.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import torch

from privbench.api import Dataset, Release, RunContext
from privbench.errors import UserError
from privbench.training import derive_seed


@dataclass(frozen=True)
class TargetSpec:
    """How the target model is trained: a model of the utility protocol with these settings.

    ``steps`` > 0 fixes the number of optimiser steps instead of ``epochs``
    (epochs = steps / batches per epoch, rounded up), so that models trained
    on releases of different sizes can be compared step for step.
    """

    model: str = "convnet"
    epochs: int = 1000
    width: int = 128
    depth: int = 3
    augment: bool = True
    steps: int = 0
    weights: str = ""  # a ResNet's starting weights: a file, or "imagenet" for torchvision's in the hub cache

    def epochs_for(self, images: int) -> int:
        if self.steps <= 0:
            return self.epochs
        return max(1, math.ceil(self.steps / self.batches_per_epoch(images)))

    @staticmethod
    def batches_per_epoch(images: int) -> int:
        from privbench.utility import UtilityConfig

        return max(1, math.ceil(images / UtilityConfig.batch_size))

    def steps_for(self, images: int) -> int:
        """The optimiser steps a model trained on ``images`` images takes."""
        return self.epochs_for(images) * self.batches_per_epoch(images)

    def utility_config(self, images: int):
        from privbench.utility import UtilityConfig

        return UtilityConfig(epochs=self.epochs_for(images), width=self.width, depth=self.depth, dsa=self.augment,
                             weights=self.weights or None)

    def recipe(self, images: int) -> dict[str, Any]:
        """Everything that decides the target model, for the runs table and the rows' detail."""
        from privbench.config import config_to_dict

        config = config_to_dict(self.utility_config(images))
        from privbench.utility import resolve_weights

        return {"model": self.model, "weights_loaded": resolve_weights(self.model, self.weights or None),
                "training_images": int(images), "optimiser_steps": self.steps_for(images),
                "epochs": config["epochs"], "width": self.width, "depth": self.depth,
                "augmentation": config["dsa_strategy"] if self.augment else "none", "optimiser": "sgd",
                "lr": config["lr"], "momentum": config["momentum"], "weight_decay": config["weight_decay"],
                "batch_size": config["batch_size"], "lr_decay_at": config["lr_decay_at"], "norm": config["norm"]}


def target_spec(config: Any) -> TargetSpec:
    """The ``target_*`` fields of an attack's Config as a :class:`TargetSpec`."""
    return TargetSpec(config.target_model, config.target_epochs, config.target_width, config.target_depth,
                      config.target_augment, config.target_steps, getattr(config, "target_weights", ""))


def require_images(release: Release) -> None:
    if len(release) == 0:
        raise UserError("the release holds no images, so there is nothing to attack")


def release_digest(release: Release) -> str:
    h = hashlib.sha256()
    h.update(repr(tuple(release.images.shape)).encode())
    h.update(release.images.detach().cpu().contiguous().numpy().tobytes())
    h.update(release.labels.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


_TARGET_CACHE: dict[tuple, torch.nn.Module] = {}


def target_model(release: Release, dataset: Dataset, spec: TargetSpec, ctx: RunContext, seed: int | None = None,
                 *, keep: bool = True):
    """The classifier trained on ``release`` with the utility protocol (seed ``ctx.seed`` unless given).

    ``keep`` remembers it for the next attack of the run (shadow models are not kept).
    """
    from privbench.utility import train_on_release

    seed = ctx.seed if seed is None else seed
    key = (release_digest(release), dataset.fingerprint, spec, int(seed), str(ctx.device))
    model = _TARGET_CACHE.get(key)
    if model is None:
        model = train_on_release(release, dataset, spec.model, seed, spec.utility_config(len(release)), ctx)
        if keep:
            _TARGET_CACHE.clear()  # one model at a time: the next attack of this run is the one that reuses it
            _TARGET_CACHE[key] = model
    return model


def shadow_models(releases: list[Release], datasets: list[Dataset], spec: TargetSpec, seeds: list[int],
                  ctx: RunContext, ensemble: str = "auto") -> list[torch.nn.Module]:
    """The target models of shadow pipelines (model k on release k, made from datasets[k], with seed k; not kept).

    Releases of one shape train as one ensemble when ``ensemble`` allows (the
    utility's ``ensemble`` policy): each model as :func:`target_model` would
    train it alone, up to float rounding.
    """
    from dataclasses import replace

    from privbench.utility import train_on_releases

    models: list = [None] * len(releases)
    by_shape: dict[tuple, list[int]] = {}
    for i, release in enumerate(releases):
        by_shape.setdefault(tuple(release.images.shape), []).append(i)
    for shape, index in by_shape.items():
        config = replace(spec.utility_config(shape[0]), ensemble=ensemble)
        trained = train_on_releases([releases[i] for i in index], [datasets[i] for i in index], spec.model,
                                    [seeds[i] for i in index], config, ctx,
                                    progress_label=f"shadow target models x {len(index)}")
        for i, model in zip(index, trained):
            models[i] = model
    return models


def sample_index(n: int, cap: int, seed: int) -> torch.Tensor:
    """All of ``range(n)`` when ``cap`` is 0 or at least n, else a seeded sample of ``cap`` (sorted)."""
    if cap <= 0 or cap >= n:
        return torch.arange(n)
    g = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n, generator=g)[:cap].sort().values


def matched_candidates(member_labels: torch.Tensor, nonmember_labels: torch.Tensor, cap_members: int,
                       cap_nonmembers: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded member and non-member indices with the same count in every class.

    Per class, min(members, non-members) of each, scaled down together to fit
    the caps (0 = no cap). Equal class composition on both sides keeps a class
    whose images are simply harder from passing for membership.
    """
    classes = int(max(member_labels.max(), nonmember_labels.max())) + 1
    m_counts = torch.bincount(member_labels, minlength=classes)
    u_counts = torch.bincount(nonmember_labels, minlength=classes)
    per_class = torch.minimum(m_counts, u_counts).double()
    total = float(per_class.sum())
    scale = 1.0
    for cap in (cap_members, cap_nonmembers):
        if cap > 0 and total > cap:
            scale = min(scale, cap / total)
    take = (per_class * scale).floor().long()
    g = torch.Generator().manual_seed(int(seed))
    picks: tuple[list, list] = ([], [])
    for c in range(classes):
        for out, labels in zip(picks, (member_labels, nonmember_labels)):
            idx = torch.nonzero(labels == c).flatten()
            out.append(idx[torch.randperm(idx.numel(), generator=g)[: int(take[c])]])
    return torch.cat(picks[0]).sort().values, torch.cat(picks[1]).sort().values


def flip(images: torch.Tensor) -> torch.Tensor:
    """The horizontal mirror image."""
    return torch.flip(images, dims=[3])


def nearest(queries: torch.Tensor, references: torch.Tensor, ctx: RunContext,
            chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query row, the Euclidean distance to its nearest reference row and that row's index (CPU)."""
    device = ctx.torch_device
    refs = references.reshape(references.shape[0], -1).to(device, torch.float32)
    dists, index = [], []
    for start in range(0, queries.shape[0], chunk):
        q = queries[start : start + chunk].reshape(-1, refs.shape[1]).to(device, torch.float32)
        d = torch.cdist(q, refs)
        best = d.min(dim=1)
        dists.append(best.values.cpu())
        index.append(best.indices.cpu())
    return torch.cat(dists), torch.cat(index)


def seed_for(ctx: RunContext, *purpose: object) -> int:
    """A 31-bit seed for one purpose of this run (numpy and torch generators both accept it)."""
    return derive_seed(ctx.seed, *purpose) % (2**31)


"""``random``: ipc real training images per class, drawn with the run's seed.

The baseline every distillation table needs: a distiller is worth its cost only
if it beats a random real subset of the same size.
"""

from __future__ import annotations

from dataclasses import dataclass

from privbench import hookimpl
from privbench.api import Dataset, Distiller, Release, RunContext, require_ipc_fits


@dataclass(frozen=True)
class RandomConfig:
    """No options: the seed decides which images are drawn."""


class RandomSubset(Distiller):
    """ipc real images per class, drawn uniformly without replacement (seeded)."""

    name = "random"
    Config = RandomConfig

    def check(self, private: Dataset, ipc: int, config: RandomConfig) -> None:
        require_ipc_fits(private, ipc, why="random draws real images")

    def distill(self, private: Dataset, ipc: int, config: RandomConfig, ctx: RunContext) -> Release:
        import torch

        self.check(private, ipc, config)
        labels = private.train.labels
        picks = []
        for c in range(private.num_classes):
            idx = torch.nonzero(labels == c).flatten()
            order = torch.randperm(idx.numel(), generator=ctx.generator)[:ipc]
            picks.append(idx[order])
        index = torch.cat(picks)
        return Release(
            private.train.images[index].clone(),
            labels[index].clone(),
            {"method": self.name, "ipc": ipc},
            {"source_indices": index.tolist()},  # private provenance: which patients are in the release
        )


@hookimpl
def register_distillers(register):
    register(RandomSubset)

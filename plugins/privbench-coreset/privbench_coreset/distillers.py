"""Herding and k-center: coresets of real images, chosen per class in a feature space."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from privbench import hookimpl
from privbench.api import Dataset, Distiller, Release, RunContext, require_ipc_fits


@dataclass(frozen=True)
class CoresetConfig:
    """``features``: select in raw pixel space, or in a random ConvNet's embedding."""

    features: Literal["pixels", "convnet"] = "pixels"


def _herding(feats, k: int):
    """Greedy herding: each pick keeps the running mean of the picks closest to the class mean."""
    import torch

    mu = feats.mean(0)
    chosen: list[int] = []
    running = torch.zeros_like(mu)
    available = torch.ones(feats.shape[0], dtype=torch.bool)
    for t in range(1, k + 1):
        candidate_means = (running.unsqueeze(0) + feats) / t
        dist = (candidate_means - mu).pow(2).sum(1)
        dist[~available] = float("inf")
        i = int(torch.argmin(dist))
        chosen.append(i)
        available[i] = False
        running += feats[i]
    return chosen


def _kcenter(feats, k: int):
    """Greedy k-center: start nearest the class mean, then always take the farthest point."""
    import torch

    first = int(torch.argmin((feats - feats.mean(0)).pow(2).sum(1)))
    chosen = [first]
    nearest = (feats - feats[first]).pow(2).sum(1)
    for _ in range(1, k):
        i = int(torch.argmax(nearest))
        chosen.append(i)
        nearest = torch.minimum(nearest, (feats - feats[i]).pow(2).sum(1))
    return chosen


class _Coreset(Distiller):
    Config = CoresetConfig
    select = staticmethod(_herding)

    def check(self, private: Dataset, ipc: int, config: CoresetConfig) -> None:
        require_ipc_fits(private, ipc, why=f"{self.name} selects real images")

    def distill(self, private: Dataset, ipc: int, config: CoresetConfig, ctx: RunContext) -> Release:
        import torch

        from privbench_coreset.features import embed

        self.check(private, ipc, config)
        x, y = private.train.images, private.train.labels
        feats = embed(x, config.features, ctx.seed, ctx.device)
        picks = []
        with ctx.progress.task(f"{self.name} coreset", total=private.num_classes) as bar:
            for c in range(private.num_classes):
                idx = torch.nonzero(y == c).flatten()
                local = self.select(feats[idx], ipc)
                picks.append(idx[torch.tensor(local, dtype=torch.long)])
                bar.advance(1)
        index = torch.cat(picks)
        return Release(x[index].clone(), y[index].clone(), {"method": self.name, "ipc": ipc})


class Herding(_Coreset):
    """Real images per class whose running mean tracks the class mean (herding, Welling 2009)."""

    name = "herding"
    select = staticmethod(_herding)


class KCenter(_Coreset):
    """Real images per class covering it by greedy farthest-point selection (k-center)."""

    name = "kcenter"
    select = staticmethod(_kcenter)


@hookimpl
def register_distillers(register):
    register(Herding)
    register(KCenter)

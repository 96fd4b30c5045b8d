"""``nn-distance``: membership inference from a release alone, no model needed.

A candidate whose nearest released image is unusually close was probably in the
private set. The score is minus the Euclidean pixel distance to the nearest
released image; members are the private training images, non-members the real
images the release pipeline never saw.
"""

from __future__ import annotations

from dataclasses import dataclass

from privbench import hookimpl
from privbench.api import Attack, AuditTarget, ResultRow, RunContext


@dataclass(frozen=True)
class NNDistanceConfig:
    """``max_candidates`` caps members and non-members each (seeded subsample)."""

    max_candidates: int = 2000
    resamples: int = 1000


def _nearest_distance(candidates, released, chunk: int = 1024):
    import torch

    r = released.reshape(released.shape[0], -1)
    out = []
    for i in range(0, candidates.shape[0], chunk):
        c = candidates[i : i + chunk].reshape(min(chunk, candidates.shape[0] - i), -1)
        out.append(torch.cdist(c, r).min(dim=1).values)
    return torch.cat(out)


def _auc(labels, scores) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


class NNDistance(Attack):
    """Membership guessed from the distance to the nearest released image (no model)."""

    name = "nn-distance"
    Config = NNDistanceConfig

    def run(self, target: AuditTarget, config: NNDistanceConfig, ctx: RunContext) -> list[ResultRow]:
        import torch

        def sample(split):
            n = len(split)
            keep = torch.randperm(n, generator=ctx.generator)[: config.max_candidates]
            return split.images[keep]

        members, nonmembers = sample(target.members), sample(target.nonmembers)
        released = target.release.images
        with ctx.progress.task("nn-distance", total=2) as bar:
            d_in = _nearest_distance(members, released)
            bar.advance(1)
            d_out = _nearest_distance(nonmembers, released)
            bar.advance(1)
        labels = torch.cat([torch.ones(len(d_in)), torch.zeros(len(d_out))]).numpy()
        scores = (-torch.cat([d_in, d_out])).numpy()
        detail = {"members": len(d_in), "nonmembers": len(d_out)}
        return [
            ResultRow.bootstrap(
                "auc", _auc, labels, scores, higher_is_better=True, strata=labels,
                resamples=config.resamples, seed=ctx.seed, detail=detail,
            ),
            ResultRow.mean_of("member_nn_distance", d_in.numpy(), higher_is_better=False, seed=ctx.seed),
            ResultRow.mean_of("nonmember_nn_distance", d_out.numpy(), higher_is_better=False, seed=ctx.seed),
        ]


@hookimpl
def register_attacks(register):
    register(NNDistance)

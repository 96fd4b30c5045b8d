"""Label assignment and diversity-aware selection of ``ddm`` candidates, in f_phi space.

All functions take CPU feature matrices (one row per candidate) and use
Euclidean distances; nothing here trains or samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def nearest_class(features: torch.Tensor, means: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each candidate's nearest class mean (int64) and the full distance matrix (N x C)."""
    dist = torch.cdist(features.double(), means.double())
    return dist.argmin(dim=1), dist


def median_pairwise(features: torch.Tensor) -> float:
    """The median Euclidean distance over distinct pairs (0 for fewer than two rows)."""
    n = features.shape[0]
    if n < 2:
        return 0.0
    d = torch.cdist(features.double(), features.double())
    i, j = torch.triu_indices(n, n, offset=1)
    return float(d[i, j].median())


@dataclass(frozen=True)
class Selection:
    """The chosen rows (best first), the tau they finally satisfy and how often tau was halved."""

    picks: list[int]
    tau: float
    halvings: int


def greedy_diverse(
    features: torch.Tensor, to_mean: torch.Tensor, k: int, tau: float, max_halvings: int
) -> Selection:
    """Greedy top-``k``: closest to the class mean first, each pick at least ``tau`` from every earlier pick.

    If a pass over the ranking cannot fill ``k`` the picks are kept, tau is
    halved and the remaining candidates are scanned again; after
    ``max_halvings`` halvings tau drops to 0, which accepts any candidate, so
    ``k`` picks are always found when there are ``k`` rows.
    """
    n = features.shape[0]
    if k > n:
        raise ValueError(f"cannot pick {k} of {n} candidates")
    order = torch.argsort(to_mean.double(), stable=True).tolist()
    d = torch.cdist(features.double(), features.double())
    nearest_pick = torch.full((n,), float("inf"), dtype=torch.float64)
    picked = torch.zeros(n, dtype=torch.bool)
    picks: list[int] = []
    halvings = 0
    while True:
        for i in order:
            if len(picks) == k:
                break
            if not picked[i] and nearest_pick[i] >= tau:
                picks.append(i)
                picked[i] = True
                nearest_pick = torch.minimum(nearest_pick, d[i])
        if len(picks) == k:
            return Selection(picks, tau, halvings)
        halvings += 1
        tau = tau / 2 if halvings <= max_halvings else 0.0


def reclaim(
    assigned: torch.Tensor, features: torch.Tensor, means: torch.Tensor, k: int
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Give every class at least ``k`` candidates by moving the nearest ones from classes that have more.

    The last resort after drawing more candidates: one candidate at a time, the
    one closest to the short class's mean among classes with more than ``k``,
    changes label. Returns the new labels and the (from, to) moves.
    """
    assigned = assigned.clone()
    num_classes = means.shape[0]
    if assigned.numel() < k * num_classes:
        raise ValueError(f"{assigned.numel()} candidates cannot fill {num_classes} classes of {k}")
    dist = torch.cdist(features.double(), means.double())
    moves: list[tuple[int, int]] = []
    for c in range(num_classes):
        while int((assigned == c).sum()) < k:
            counts = torch.bincount(assigned, minlength=num_classes)
            donor = counts[assigned] > k
            cost = torch.where(donor, dist[:, c], torch.full_like(dist[:, c], float("inf")))
            i = int(cost.argmin())
            moves.append((int(assigned[i]), c))
            assigned[i] = c
    return assigned, moves

"""Seeded stratified splits: the same seed gives the same split on every machine."""

from __future__ import annotations

import numpy as np

from privbench.errors import UserError


def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Split indices into parts of the given fractions, each class split in proportion.

    Every class contributes at least one image to every part when it has enough
    images; indices inside each part are sorted so the order is stable.
    """
    labels = np.asarray(labels)
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError("fractions must sum to 1")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n = idx.size
        if n < len(fractions):
            raise UserError(
                f"class {c} has only {n} image(s); a {len(fractions)}-way stratified split needs at least {len(fractions)}"
            )
        counts = [max(1, int(round(f * n))) for f in fractions[1:]]
        first = n - sum(counts)
        if first < 1:
            counts[-1] -= 1 - first
            first = 1
        bounds = np.cumsum([first] + counts)
        start = 0
        for k, stop in enumerate(bounds):
            parts[k].append(idx[start:stop])
            start = stop
    return [np.sort(np.concatenate(p)) for p in parts]

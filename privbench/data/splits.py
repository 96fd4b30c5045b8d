"""Seeded stratified splits: the same seed gives the same split on every machine.

Each use of the seed draws from its own stream (``(seed, stream)``), so that
balancing, the test part and the val part never share random numbers: the
test part is the same whatever ``val_fraction`` is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from privbench.errors import UserError

BALANCE_STREAM = 1
VAL_STREAM = 2


def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], seed: int | Sequence[int]) -> list[np.ndarray]:
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


def balanced_subset(labels: np.ndarray, seed: int) -> np.ndarray:
    """Sorted indices keeping a seeded sample of every class, each the size of the smallest class.

    Works on labels alone, so a file list is balanced before any image is decoded.
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if classes.size == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng((seed, BALANCE_STREAM))
    keep = [rng.choice(np.flatnonzero(labels == c), size=int(counts.min()), replace=False) for c in classes]
    return np.sort(np.concatenate(keep))


def train_val_test(labels: np.ndarray, test_fraction: float, val_fraction: float,
                   seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A stratified train/test partition, then val carved (stratified) out of train.

    The test part is drawn first from the whole and depends only on the seed and
    ``test_fraction``: nothing that selects (val) ever touches it.
    """
    labels = np.asarray(labels)
    rest, test = stratified_split(labels, (1 - test_fraction, test_fraction), seed)
    train, val = stratified_split(labels[rest], (1 - val_fraction, val_fraction), (seed, VAL_STREAM))
    return rest[train], rest[val], test


Group = tuple[list, list[int]]
"""Items (file paths, say) and their labels, in step."""


def take(group: Group, idx: np.ndarray) -> Group:
    items, labels = group
    return [items[i] for i in idx], [labels[i] for i in idx]


def arrange_splits(official: dict[str, Group], *, seed: int, val_fraction: float, test_fraction: float,
                   balance: bool = False, pool: bool = False) -> dict[str, Group]:
    """Train, val and test groups from the ones the data names (``train`` always, ``val`` and
    ``test`` where it has them), decided on labels alone, before anything is decoded.

    ``balance``: every class subsampled to the smallest (each named split on its own unless
    pooled). ``pool``: the named splits are pooled and partitioned by :func:`train_val_test`.
    Otherwise a missing val or test split is carved out of train, stratified; the fractions are
    of the whole.
    """

    def balanced(group: Group) -> Group:
        return take(group, balanced_subset(np.asarray(group[1]), seed)) if balance and group[0] else group

    groups: dict[str, Group] = {}
    if pool:
        items: list = []
        labels: list[int] = []
        for split in ("train", "val", "test"):
            if split in official:
                items += official[split][0]
                labels += official[split][1]
        everything = balanced((items, labels))
        parts = train_val_test(np.asarray(everything[1]), test_fraction, val_fraction, seed)
        return {split: take(everything, idx) for split, idx in zip(("train", "val", "test"), parts)}
    train = balanced(official["train"])
    for split in ("val", "test"):
        if split in official:
            groups[split] = balanced(official[split])
    carve = [s for s in ("val", "test") if s not in groups]
    if carve:
        fractions = {"val": val_fraction, "test": test_fraction}
        parts_f = [fractions[s] for s in carve]
        parts = stratified_split(np.asarray(train[1]), tuple([1 - sum(parts_f)] + parts_f), seed)
        groups["train"] = take(train, parts[0])
        for split, idx in zip(carve, parts[1:]):
            groups[split] = take(train, idx)
    else:
        groups["train"] = train
    return groups

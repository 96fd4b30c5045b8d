"""Private sets for shadow pipelines: exact sizes and class mix per set, balanced inclusion per candidate.

A shadow must be drawn like the target: as many images of every class as the
target's private set. And every candidate should be IN as close to the same
share of the shadows as the pool allows, so that each has IN and OUT
observations. Both margins are met exactly:

1. per class, the class's pool entries are put in a random order on a circle
   and the sets take consecutive arcs of their sizes, end to end, so that
   each entry is covered ``floor(T / P)`` or ``ceil(T / P)`` times, T being
   the sets' total size and P the class's;
2. pairs of sets then swap random halves of what one holds and the other
   lacks, which keeps every set's size and every entry's count and removes
   the arcs' structure (the swap chain of binary matrices with fixed margins).
"""

from __future__ import annotations

import numpy as np


def fixed_margin_sets(labels: np.ndarray, take, sets: int, seed: int, rounds: int = 0) -> np.ndarray:
    """``sets x len(labels)`` booleans: row s holds ``take[c]`` entries of class c, columns are balanced.

    ``take`` is one count per class (every set the same), or a ``sets x
    classes`` array (halves of an odd class alternate between floor and
    ceiling); counts are capped at the class's size. ``rounds``: swap rounds
    (default 8 x sets pairs).
    """
    labels = np.asarray(labels)
    if sets < 1:
        raise ValueError(f"need at least one set, got {sets}")
    take = np.asarray(take, dtype=np.int64)
    if take.ndim == 1:
        take = np.broadcast_to(take, (sets, take.size))
    classes = take.shape[1]
    rng = np.random.default_rng(seed)
    out = np.zeros((sets, labels.size), dtype=bool)
    for c in range(classes):
        members = np.flatnonzero(labels == c)
        size = members.size
        if size == 0:
            continue
        order = rng.permutation(members)
        start = int(rng.integers(size))
        for s in range(sets):  # arcs laid end to end around the circle: every entry covered floor or ceil times
            k = min(int(take[s, c]), size)
            out[s, order[(start + np.arange(k)) % size]] = True
            start = (start + k) % size
    rounds = rounds or 8 * sets
    for attempt in range(4):
        for _ in range(rounds if sets > 1 else 0):
            a, b = rng.choice(sets, size=2, replace=False)
            for c in range(classes):
                cls = labels == c
                only_a = np.flatnonzero(out[a] & ~out[b] & cls)
                only_b = np.flatnonzero(out[b] & ~out[a] & cls)
                m = min(only_a.size, only_b.size) // 2
                if m == 0:
                    continue
                give = rng.choice(only_a, m, replace=False)
                get = rng.choice(only_b, m, replace=False)
                out[a, give], out[b, give] = False, True
                out[b, get], out[a, get] = False, True
        if np.unique(out, axis=0).shape[0] == sets or sets == 1:
            break
    return out


def halves(labels: np.ndarray, classes: int, sets: int) -> np.ndarray:
    """Per set and class, half of the class: an odd class alternates floor and ceiling across sets."""
    sizes = np.bincount(np.asarray(labels), minlength=classes)
    take = np.repeat((sizes // 2)[None, :], sets, axis=0)
    take[1::2] += sizes % 2
    return take


def inclusion_facts(sets: np.ndarray, scored: np.ndarray | None = None) -> dict:
    """How often the candidates are IN: the rate's mean, min and max, and the set sizes."""
    counts = sets.sum(axis=0) if scored is None else sets[:, scored].sum(axis=0)
    total = sets.shape[0]
    sizes = sets.sum(axis=1)
    return {
        "sets": int(total),
        "set_size": int(sizes[0]) if sizes.min() == sizes.max() else [int(sizes.min()), int(sizes.max())],
        "inclusion_rate_mean": round(float(counts.mean() / total), 4),
        "inclusion_rate_min": round(float(counts.min() / total), 4),
        "inclusion_rate_max": round(float(counts.max() / total), 4),
    }

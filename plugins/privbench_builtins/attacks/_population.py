"""The audit population: members and non-members pooled, with duplicates of anyone's image removed.

Every membership figure compares members (the private training split) with
non-members (real images the pipeline never saw). A non-member that is a copy
of a training image is, to every attack, a member: the published
PneumoniaMNIST splits hold val images byte-identical to training images. And
two copies of one image inside the pool would let a shadow pipeline see a
candidate it is told it never saw. So the pool keeps one image of every group
of near-duplicates, the first in split order (train, then val, then test):

* exact duplicates: byte-identical pixels (a hash);
* near-duplicates: a root-mean-square pixel difference (pixels in [0, 1]) of
  at most ``threshold``. The search runs on block-averaged thumbnails first,
  whose RMS difference never exceeds the full images' (Jensen), so it misses
  nothing, then confirms at full resolution.

The counts removed go into every row's detail.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from privbench.api import Dataset, RunContext, Split
from privbench.imagestore import concat_images, image_chunks, take_images

THUMBNAIL_SIDE = 16
"""Near-duplicate candidates are found on thumbnails of at most this many pixels a side."""


@dataclass
class Population:
    """The de-duplicated pool over which every game draws its private sets and candidates.

    ``images``/``labels`` are the pool entries; ``source`` says which split each
    came from (``train``, ``val``, ``test``) and ``split_index`` its row there.
    ``train_pool[i]`` is the pool entry standing for training image ``i`` (its
    own or, for a duplicate, the copy kept), so anything said about a training
    image can be said about its pool entry.
    """

    images: torch.Tensor
    labels: torch.Tensor
    source: np.ndarray
    split_index: np.ndarray
    train_pool: np.ndarray
    num_classes: int
    facts: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def is_train(self) -> np.ndarray:
        return self.source == "train"

    def subset(self, index: np.ndarray) -> Split:
        """The pool entries at ``index`` as a private set a pipeline can train on."""
        index = torch.as_tensor(np.asarray(index, dtype=np.int64))
        return Split(take_images(self.images, index), self.labels[index])

    def class_counts(self, mask: np.ndarray) -> list[int]:
        return np.bincount(self.labels.numpy()[mask], minlength=self.num_classes).tolist()


def _digest(image: torch.Tensor) -> bytes:
    return hashlib.blake2b(image.contiguous().numpy().tobytes(), digest_size=16).digest()


def _thumbnails(images: torch.Tensor) -> torch.Tensor:
    h, w = images.shape[-2:]
    side = (min(THUMBNAIL_SIDE, h), min(THUMBNAIL_SIDE, w))
    small = images if (h, w) == side else F.adaptive_avg_pool2d(images, side)
    return small.flatten(1)


def earlier_duplicates(images: torch.Tensor, threshold: float, ctx: RunContext,
                       chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """For every image, the index of an earlier image it duplicates (-1 if none), and whether exactly.

    ``threshold`` is the RMS pixel difference at or below which two images are
    near-duplicates; 0 finds byte-identical copies only.
    """
    n = int(images.shape[0])
    first = np.full(n, -1, dtype=np.int64)
    exact = np.zeros(n, dtype=bool)
    seen: dict[bytes, int] = {}
    for i in range(n):
        key = _digest(images[i])
        if key in seen:
            first[i], exact[i] = seen[key], True
        else:
            seen[key] = i
    if threshold <= 0 or n < 2:
        return first, exact
    device = ctx.torch_device
    values = images[0].numel()
    thumbs = torch.cat([_thumbnails(x.float()) for x in image_chunks(images)]).to(device)
    scale_thumb = thumbs.shape[1]
    for start in range(1, n, chunk):
        stop = min(n, start + chunk)
        # RMS over thumbnail pixels of every query against every earlier image
        d = torch.cdist(thumbs[start:stop], thumbs[:stop]) / scale_thumb**0.5
        rows = torch.arange(start, stop, device=device).unsqueeze(1)
        d = d.masked_fill(torch.arange(stop, device=device).unsqueeze(0) >= rows, float("inf"))
        for q, r in zip(*torch.nonzero(d <= threshold, as_tuple=True)):
            i, j = int(q) + start, int(r)
            if first[i] >= 0 and first[i] <= j:
                continue
            rms = float(torch.linalg.vector_norm(images[i].flatten() - images[j].flatten())) / values**0.5
            if rms <= threshold:
                first[i] = j if first[i] < 0 else min(first[i], j)
    return first, exact


def build_population(dataset: Dataset, splits: list[str], threshold: float, ctx: RunContext) -> Population:
    """Train plus the chosen non-member splits, one image per group of near-duplicates."""
    parts = [("train", dataset.train)] + [(name, getattr(dataset, name)) for name in splits]
    images = concat_images([s.images for _, s in parts])
    labels = torch.cat([s.labels for _, s in parts])
    source = np.concatenate([np.full(len(s), name) for name, s in parts])
    split_index = np.concatenate([np.arange(len(s)) for _, s in parts])
    first, exact = earlier_duplicates(images, threshold, ctx)
    # follow chains so that every duplicate points at the image kept for its group
    root = np.arange(first.size)
    for i in range(first.size):
        if first[i] >= 0:
            root[i] = root[first[i]]
    keep = first < 0
    pool_of = np.full(first.size, -1, dtype=np.int64)
    pool_of[keep] = np.arange(int(keep.sum()))
    pool_of = pool_of[root]
    n_train = len(dataset.train)
    dup = ~keep
    of_train = dup & (source == "train")
    of_member = dup & (source != "train") & (root < n_train)
    facts = {
        "duplicate_threshold_rms": threshold,
        "duplicate_rule": ("byte-identical pixels" if threshold <= 0 else
                           f"byte-identical, or RMS pixel difference <= {threshold:g} (pixels in [0, 1])"),
        "nonmembers_removed_as_copies_of_training_images": int(of_member.sum()),
        "nonmembers_removed_exact": int((of_member & exact).sum()),
        "nonmembers_removed_near": int((of_member & ~exact).sum()),
        "nonmembers_removed_as_copies_of_nonmembers": int((dup & (source != "train") & (root >= n_train)).sum()),
        "training_images_duplicating_training_images": int(of_train.sum()),
        "pool": int(keep.sum()),
        "pool_members": int((keep & (source == "train")).sum()),
        "pool_nonmembers": int((keep & (source != "train")).sum()),
        "nonmember_splits": list(splits),
    }
    for name in splits:
        facts[f"pool_nonmembers_{name}"] = int((keep & (source == name)).sum())
    return Population(take_images(images, torch.from_numpy(keep)), labels[torch.from_numpy(keep)], source[keep],
                      split_index[keep], pool_of[:n_train], dataset.num_classes, facts)


def train_without(dataset: Dataset, population: Population, held_out: np.ndarray) -> Split:
    """The training split without the pool entries ``held_out`` and without every copy of them."""
    drop = np.isin(population.train_pool, held_out)
    return dataset.train.subset(torch.from_numpy(~drop))

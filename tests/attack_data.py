"""Small datasets and releases for the attack tests: cheap to train on, with known answers."""

from __future__ import annotations

import torch

from privbench.api import Dataset, Release, Split


def digits_small(train: int = 40, nonmembers: int = 60, name: str = "digits-small", seed: int | None = None) -> Dataset:
    """scikit-learn's digits with a private set of ``train`` images (easy to overfit) and real non-members.

    By default the first images of each split; they come from different writers (the embedded data is in writer
    order), which a null control rightly reads as a difference. ``seed`` draws random ones instead, so that members
    and non-members are exchangeable.
    """
    from privbench.data import load_dataset

    full = load_dataset("digits")

    def head(split: Split, n: int) -> Split:
        if seed is None:
            return split.subset(torch.arange(min(n, len(split))))
        g = torch.Generator().manual_seed(seed)
        return split.subset(torch.randperm(len(split), generator=g)[: min(n, len(split))].sort().values)

    return Dataset(name=name, train=head(full.train, train), val=head(full.val, nonmembers),
                   test=head(full.test, nonmembers), class_names=full.class_names, spec=name,
                   public=True).validate()


def original_release(data: Dataset) -> Release:
    return Release(data.train.images.clone(), data.train.labels.clone(),
                   {"method": "original", "ipc": None, "config": {}, "source_fingerprint": data.fingerprint})


def noise_release(data: Dataset, per_class: int = 4, seed: int = 0) -> Release:
    """Uniform noise with balanced labels: a release that carries nothing about anyone."""
    g = torch.Generator().manual_seed(seed)
    n = per_class * data.num_classes
    images = torch.rand((n, *data.image_shape), generator=g)
    labels = torch.arange(data.num_classes).repeat_interleave(per_class)
    return Release(images, labels, {"method": "noise", "ipc": per_class})


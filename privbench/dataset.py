"""The data a distiller and an attack see: a private set in three splits.

Part of the plugin API (re-exported by :mod:`privbench.api`); imports no heavy
library at import time.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from privbench.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass
class Split:
    """One split of a dataset: images, labels and optional per-image attributes."""

    images: "torch.Tensor"
    labels: "torch.Tensor"
    attributes: dict[str, "torch.Tensor"] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: "torch.Tensor") -> "Split":
        """The images at ``index`` (a long tensor or boolean mask), attributes included.

        The subset of a streamed split is streamed too: nothing is read.
        """
        from privbench.imagestore import take_images

        return Split(
            take_images(self.images, index),
            self.labels[index],
            {k: v[index] for k, v in self.attributes.items()},
        )

    def class_counts(self, num_classes: int) -> list[int]:
        """Images per class, for classes 0 to ``num_classes - 1``."""
        import torch

        return torch.bincount(self.labels, minlength=num_classes).tolist()

    @staticmethod
    def concat(splits: list["Split"]) -> "Split":
        """The splits one after another, attributes included."""
        import torch

        from privbench.imagestore import concat_images

        names = set(splits[0].attributes)
        for s in splits[1:]:
            names &= set(s.attributes)
        return Split(
            concat_images([s.images for s in splits]),
            torch.cat([s.labels for s in splits]),
            {k: torch.cat([s.attributes[k] for s in splits]) for k in sorted(names)},
        )


@dataclass
class Dataset:
    """A private dataset with train/val/test splits.

    ``train`` is the private set a release is made from. ``val`` is for model
    selection. ``test`` is touched only for final scores. Attacks take their
    non-members from ``val`` and ``test``, so a distiller must read ``train`` only.

    ``public_class_counts``, when set, are class sizes declared public: a
    private mechanism normalises by them instead of counting its input, so
    that adding or removing one image changes nothing but the noisy sums (a
    canary audit declares them before it draws which canaries go in).
    """

    name: str
    train: Split
    val: Split
    test: Split
    class_names: tuple[str, ...]
    spec: str = ""
    public: bool = False
    description: str = ""
    public_class_counts: tuple[int, ...] | None = None

    @property
    def num_classes(self) -> int:
        """How many classes (the length of ``class_names``)."""
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """C x H x W of every image."""
        c, h, w = self.train.images.shape[1:]
        return int(c), int(h), int(w)

    @property
    def channels(self) -> int:
        """1 (grayscale) or 3 (RGB)."""
        return self.image_shape[0]

    @property
    def attribute_names(self) -> tuple[str, ...]:
        """The names of the per-image attributes (attribute inference targets)."""
        return tuple(sorted(self.train.attributes))

    @property
    def nonmembers(self) -> Split:
        """Real images the release pipeline never saw: val and test together."""
        return Split.concat([self.val, self.test])

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the content (pixels, labels, attributes, class names) of all splits."""
        import numpy as np

        from privbench.imagestore import hash_images

        h = hashlib.sha256()
        h.update(repr(tuple(self.class_names)).encode())
        for split_name in ("train", "val", "test"):
            split = getattr(self, split_name)
            h.update(split_name.encode())
            h.update(repr(tuple(split.images.shape)).encode())
            hash_images(h, split.images)  # chunk by chunk: a streamed split is never read whole
            h.update(np.ascontiguousarray(split.labels.numpy(), dtype=np.int64).tobytes())
            for key in sorted(split.attributes):
                h.update(key.encode())
                h.update(np.ascontiguousarray(split.attributes[key].numpy()).tobytes())
        return h.hexdigest()

    def with_train(self, train: Split, name_suffix: str = "",
                   public_class_counts: tuple[int, ...] | None = None) -> "Dataset":
        """The same dataset with another private set (shadow runs of an attack).

        A declaration of public class counts does not carry over to another
        private set; pass the new one, if any.
        """
        return dataclasses.replace(
            self, train=train, name=self.name + name_suffix, public_class_counts=public_class_counts
        )

    def declared_class_counts(self) -> tuple[list[int], str]:
        """The class sizes a mechanism may treat as public, and where they come from."""
        if self.public_class_counts is not None:
            counts = [int(c) for c in self.public_class_counts]
            if len(counts) != self.num_classes or min(counts) < 1:
                raise UserError(f"dataset {self.name!r}: public_class_counts must give a positive count for each "
                                f"of the {self.num_classes} classes, got {list(self.public_class_counts)}")
            return counts, "declared with the dataset"
        return self.train.class_counts(self.num_classes), "counted in the training split, and declared public"

    def validate(self) -> "Dataset":
        """Check the data contract; raise :class:`UserError` with one clear line."""
        import torch

        from privbench.imagestore import is_streamed

        if self.num_classes < 2:
            raise UserError(f"dataset {self.name!r} has only one class; privbench needs at least two")
        shape = None
        for split_name in ("train", "val", "test"):
            split: Split = getattr(self, split_name)
            x, y = split.images, split.labels
            where = f"dataset {self.name!r}, split {split_name}"
            streamed = is_streamed(x)  # uint8 on disk, read as /255: in [0, 1] and never NaN
            if not (isinstance(x, torch.Tensor) or streamed) or x.dtype != torch.float32 or x.ndim != 4:
                raise UserError(f"{where}: images must be a float32 N x C x H x W tensor")
            if x.shape[1] not in (1, 3):
                raise UserError(f"{where}: images have {x.shape[1]} channels; expected 1 or 3")
            if shape is not None and tuple(x.shape[1:]) != shape:
                raise UserError(f"{where}: image shape {tuple(x.shape[1:])} differs from train's {shape}")
            shape = tuple(x.shape[1:])
            if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.ndim != 1:
                raise UserError(f"{where}: labels must be an int64 vector")
            if y.shape[0] != x.shape[0]:
                raise UserError(f"{where}: {x.shape[0]} images but {y.shape[0]} labels")
            if x.shape[0] == 0:
                raise UserError(f"{where}: the split is empty")
            if 0 in x.shape[2:]:
                raise UserError(f"{where}: images are {x.shape[2]} x {x.shape[3]} pixels; both sides must be at least 1")
            if not streamed and torch.isnan(x).any():
                raise UserError(f"{where}: images contain NaN pixels")
            if not streamed and (x.min() < 0 or x.max() > 1):
                raise UserError(f"{where}: pixel values outside [0, 1]")
            if y.min() < 0 or y.max() >= self.num_classes:
                raise UserError(
                    f"{where}: labels must lie in 0..{self.num_classes - 1} ({self.num_classes} classes)"
                )
            for key, value in split.attributes.items():
                if value.shape[0] != x.shape[0]:
                    raise UserError(f"{where}: attribute {key!r} has {value.shape[0]} values for {x.shape[0]} images")
        present = set(self.train.labels.unique().tolist())
        if len(present) < 2:
            raise UserError(f"dataset {self.name!r}: the training split holds only one class")
        return self


def require_ipc_fits(private: Dataset, ipc: int, why: str = "initialising from real images") -> None:
    """Refuse an ipc that is not positive, or larger than the smallest class when real images are needed."""
    if ipc < 1:
        raise UserError(f"ipc must be a positive number of images per class, got {ipc}")
    counts = private.train.class_counts(private.num_classes)
    smallest = min(counts)
    if ipc > smallest:
        c = counts.index(smallest)
        raise UserError(
            f"ipc {ipc} is larger than class {private.class_names[c]!r}, which has {smallest} "
            f"training images ({why}); use --ipc {smallest} or less"
        )

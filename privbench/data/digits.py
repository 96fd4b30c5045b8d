"""``digits``: scikit-learn's handwritten digits, the embedded default (no network, ever).

1,797 real 8 x 8 digits (values 0-16) ship inside scikit-learn. They are
upsampled to 16 x 16 by default, where a depth-3 ConvNet still ends on a 2 x 2
map and a two-level diffusion UNet is meaningful; ``digits?size=32`` gives the
literature's 32 x 32. The split is fixed: stratified 60 / 20 / 20, seed 0.
"""

from __future__ import annotations

import numpy as np
import torch

from privbench.api import Split
from privbench.data.arrays import resize
from privbench.data.splits import stratified_split

DEFAULT_SIZE = 16
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)


def read_digits_splits(size: int | None, seed: int = 0) -> dict[str, Split]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy((bunch.images / 16.0).astype(np.float32))[:, None]
    images = resize(images, size or DEFAULT_SIZE)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    parts = stratified_split(bunch.target, SPLIT_FRACTIONS, seed)
    return {
        name: Split(images[torch.from_numpy(idx)].contiguous(), labels[torch.from_numpy(idx)].contiguous())
        for name, idx in zip(("train", "val", "test"), parts)
    }

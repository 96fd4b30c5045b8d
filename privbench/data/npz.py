"""``npz:PATH`` and ``medmnist:NAME``: the MedMNIST ``.npz`` layout, never unpickled.

Keys: ``train_images``, ``train_labels``, ``val_images``, ``val_labels``,
``test_images``, ``test_labels``. Images are uint8 (N x H x W or N x H x W x 3)
or float in [0, 1]; labels N or N x 1 integers. Optional per-image attributes
are stored as ``{split}_attr_{name}`` integer vectors in all three splits.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

from privbench.api import Split
from privbench.data.arrays import images_to_tensor, labels_to_tensor
from privbench.data.cards import medmnist_root
from privbench.errors import UserError

SPLITS = ("train", "val", "test")
REQUIRED = tuple(f"{s}_{k}" for s in SPLITS for k in ("images", "labels"))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_npz_splits(path: Path) -> tuple[dict[str, Split], list[str] | None]:
    """The three splits of a MedMNIST-layout file, validated; class names if the file holds them."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"no such file: {path}")
    if not path.is_file():
        raise UserError(f"{path} is not a file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise UserError(f"{path} is not a readable .npz file (corrupt or truncated): {' '.join(str(exc).split())}") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UserError(f"{path} holds a single array, not an .npz archive with train/val/test keys")
    with archive:
        keys = set(archive.files)
        missing = [k for k in REQUIRED if k not in keys]
        if missing:
            raise UserError(
                f"{path} lacks key(s) {', '.join(missing)}; found {', '.join(sorted(keys)) or 'none'} "
                f"(expected the MedMNIST layout: {', '.join(REQUIRED)})"
            )

        def read(key: str) -> np.ndarray:
            try:
                return archive[key]
            except ValueError as exc:
                if "pickle" in str(exc):
                    raise UserError(
                        f"{path}: array {key!r} needs pickle to load; privbench never unpickles data files"
                    ) from exc
                raise UserError(f"{path}: array {key!r} is corrupt: {' '.join(str(exc).split())}") from exc
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise UserError(f"{path}: array {key!r} is corrupt or truncated: {' '.join(str(exc).split())}") from exc

        attr_names = sorted(
            k[len("train_attr_"):] for k in keys if k.startswith("train_attr_")
        )
        splits = {}
        for s in SPLITS:
            where = f"{path.name}:{s}"
            images = images_to_tensor(read(f"{s}_images"), where)
            labels = labels_to_tensor(read(f"{s}_labels"), images.shape[0], where)
            attributes = {}
            for a in attr_names:
                key = f"{s}_attr_{a}"
                if key not in keys:
                    raise UserError(f"{path}: attribute {a!r} is present for train but {key!r} is missing")
                attributes[a] = labels_to_tensor(read(key), images.shape[0], f"{where} attribute {a}")
            splits[s] = Split(images, labels, attributes)
        class_names = None
        if "class_names" in keys:
            names = read("class_names")
            if names.dtype.kind not in "US":
                raise UserError(f"{path}: class_names must be an array of strings")
            class_names = [str(x) for x in names.tolist()]
    return splits, class_names


def medmnist_path(name: str, size: int | None) -> Path:
    """``~/.medmnist/NAME.npz`` (28 px) or ``NAME_SIZE.npz`` (MedMNIST+ sizes)."""
    root = medmnist_root()
    candidates = [root / f"{name}_{size}.npz"] if size and size != 28 else []
    candidates.append(root / f"{name}.npz")
    for path in candidates:
        if path.is_file():
            return path
    raise UserError(
        f"MedMNIST file {candidates[0]} not found; privbench never downloads data: fetch {candidates[0].name} "
        f"from https://zenodo.org/records/10519652 (or with the medmnist package) and put it in {root}, "
        f"or set MEDMNIST_ROOT to the folder that holds it"
    )

"""``npz:PATH`` and ``medmnist:NAME``: the MedMNIST ``.npz`` layout, never unpickled.

Keys: ``train_images``, ``train_labels``, ``val_images``, ``val_labels``,
``test_images``, ``test_labels``. Images are uint8 (N x H x W or N x H x W x 3)
or float in [0, 1]; labels N or N x 1 integers. Optional per-image attributes
are stored as ``{split}_attr_{name}`` integer vectors in all three splits.

Before any array is read, its ``.npy`` header (shape and dtype) is read from
the zip member and checked against :mod:`privbench.limits`, so a small file
that declares a huge array is refused without allocating it.
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from pathlib import Path
from typing import Iterable

import numpy as np

from privbench.api import Split
from privbench.data.arrays import images_to_tensor, labels_to_tensor
from privbench.data.cards import medmnist_root
from privbench.errors import UserError
from privbench.limits import check_bytes, check_classes, fmt_bytes, shape_bytes

# What reading a damaged zip member can raise.
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, RuntimeError)

SPLITS = ("train", "val", "test")
REQUIRED = tuple(f"{s}_{k}" for s in SPLITS for k in ("images", "labels"))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _member_header(zf: zipfile.ZipFile, member: str, what: str) -> tuple[tuple[int, ...], np.dtype]:
    from numpy.lib import format as npy

    with zf.open(member) as fh:
        try:
            version = npy.read_magic(fh)
        except ValueError as exc:
            raise UserError(f"{what} is not a .npy array") from exc
        readers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
        if version not in readers:
            raise UserError(f"{what} uses .npy format version {version[0]}.{version[1]}, which privbench does not read")
        try:
            shape, _, dtype = readers[version](fh)
        except ValueError as exc:
            raise UserError(f"{what} has a damaged .npy header: {exc}") from exc
        offset = fh.tell()
    if dtype.hasobject:
        raise UserError(f"{what} needs pickle to load; privbench never unpickles data files")
    if any(d < 0 for d in shape):
        raise UserError(f"{what} declares the impossible shape {shape}")
    nbytes = shape_bytes(shape, dtype.itemsize)
    check_bytes(nbytes, f"{what} ({' x '.join(map(str, shape)) or 'scalar'} {dtype})")
    stored = zf.getinfo(member).file_size - offset
    if nbytes > stored:
        raise UserError(f"{what} declares {fmt_bytes(nbytes)} of data but holds {fmt_bytes(max(stored, 0))}: "
                        f"the file is corrupt or truncated")
    return tuple(int(d) for d in shape), dtype


def array_headers(path: Path, keys: Iterable[str], where: str | None = None) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of each named array of an ``.npz``, from its header: every array is
    checked (a real ``.npy`` member, no pickle, within the size limits) before it is read."""
    where = where or str(path)
    out = {}
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            for key in keys:
                member = key if key in names else f"{key}.npy"
                if member not in names:
                    continue
                out[key] = _member_header(zf, member, f"{where}: {key!r}")
    except UserError:
        raise
    except (ValueError, *ZIP_ERRORS) as exc:
        raise UserError(f"{where} is not a readable .npz file (corrupt or truncated): {exc}") from exc
    return out


def open_npz(path: Path, where: str, holding: str) -> "np.lib.npyio.NpzFile":
    """``np.load`` of an ``.npz`` archive, never of a bare ``.npy`` (which it would read whole, unchecked)."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise UserError(f"cannot read {where}: {exc.strerror or exc}") from exc
    if magic == b"\x93NUMPY":
        raise UserError(f"{where} holds a single array, not an .npz archive with {holding}")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, *ZIP_ERRORS) as exc:
        raise UserError(f"{where} is not a readable .npz file (corrupt or truncated): {exc}") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):  # pragma: no cover - a bare .npy is refused above
        raise UserError(f"{where} holds a single array, not an .npz archive with {holding}")
    return archive


def read_npz_splits(path: Path) -> tuple[dict[str, Split], list[str] | None]:
    """The three splits of a MedMNIST-layout file, validated; class names if the file holds them."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"no such file: {path}")
    if not path.is_file():
        raise UserError(f"{path} is not a file")
    with open_npz(path, f"{path}", "train/val/test keys") as archive:
        keys = set(archive.files)
        missing = [k for k in REQUIRED if k not in keys]
        if missing:
            raise UserError(
                f"{path} lacks key(s) {', '.join(missing)}; found {', '.join(sorted(keys)) or 'none'} "
                f"(expected the MedMNIST layout: {', '.join(REQUIRED)})"
            )

        attr_names = sorted(
            k[len("train_attr_"):] for k in keys if k.startswith("train_attr_")
        )
        wanted = [*REQUIRED, *(f"{s}_attr_{a}" for s in SPLITS for a in attr_names), "class_names"]
        headers = array_headers(path, [k for k in wanted if k in keys])
        for s in SPLITS:
            shape = headers[f"{s}_images"][0]
            if len(shape) not in (3, 4):
                raise UserError(f"{path.name}:{s}: images have shape {shape}; expected N x H x W or N x H x W x C (C = 1 or 3)")
        # All arrays as stored, and the images once more as float32: what loading holds at its peak.
        peak = sum(shape_bytes(shape, dtype.itemsize) for shape, dtype in headers.values())
        peak += sum(shape_bytes(headers[f"{s}_images"][0]) for s in SPLITS)
        count = sum(headers[f"{s}_images"][0][0] for s in SPLITS)
        check_bytes(peak, f"loading {path} ({count} images)")

        def read(key: str) -> np.ndarray:
            try:
                return archive[key]
            except ValueError as exc:
                if "pickle" in str(exc):
                    raise UserError(
                        f"{path}: array {key!r} needs pickle to load; privbench never unpickles data files"
                    ) from exc
                raise UserError(f"{path}: array {key!r} is corrupt: {' '.join(str(exc).split())}") from exc
            except ZIP_ERRORS as exc:
                raise UserError(f"{path}: array {key!r} is corrupt or truncated: {' '.join(str(exc).split())}") from exc

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
            if names.dtype.kind not in "US" or names.ndim != 1:
                raise UserError(f"{path}: class_names must be a vector of strings")
            check_classes(names.shape[0], f"{path}: class_names")
            class_names = [x.decode("utf-8", "backslashreplace") if isinstance(x, bytes) else str(x)
                           for x in names.tolist()]
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

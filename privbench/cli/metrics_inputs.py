"""Reading the two image sets ``privbench metrics`` compares.

An input is a release directory (``release.npz`` + ``release.json``), an
``.npz`` file holding an ``images`` array (never unpickled), or a folder of
equal-size image files. Folders are paired by relative file name (or by sorted
order on request) and decoded at their own size: nothing is resized, because
resizing would change every metric. Every problem is one :class:`UserError` line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from privbench.api import Release
from privbench.data.arrays import images_to_tensor
from privbench.data.npz import ZIP_ERRORS, array_headers, open_npz
from privbench.errors import UserError
from privbench.imaging import image_size, open_image, printable
from privbench.limits import check_bytes, shape_bytes
from privbench.releases import MANIFEST_FILE, load_release

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".ppm"}
GREY_MODES = {"1", "L", "LA", "I;16", "I;16L", "I;16B"}


@dataclass
class ImageSet:
    """Images (float32 N x C x H x W in [0, 1]) and, for a folder, the file names that pair them."""

    images: torch.Tensor
    kind: str
    names: list[str] | None = None
    release: Release | None = None


@dataclass
class _Folder:
    root: Path
    files: list[Path]

    @property
    def names(self) -> list[str]:
        return [p.relative_to(self.root).as_posix() for p in self.files]


def _image_files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def _read_npz(path: Path, role: str) -> ImageSet:
    where = f"{role} {path}"
    with open_npz(path, where, "an 'images' array") as archive:
        if "images" not in archive.files:
            found = ", ".join(archive.files) or "none"
            raise UserError(f"{role} {path} has no 'images' array (found: {found})")
        shape, dtype = array_headers(path, ["images"], where)["images"]
        check_bytes(shape_bytes(shape, dtype.itemsize) + shape_bytes(shape), f"{where} (images {shape} as float32)")
        try:
            arr = archive["images"]
        except ValueError as exc:
            raise UserError(f"{role} {path}: 'images' needs pickle to load; privbench never unpickles data files") from exc
        except ZIP_ERRORS as exc:
            raise UserError(f"{role} {path}: 'images' is corrupt or truncated") from exc
    return ImageSet(images_to_tensor(arr, f"{role} {path}"), "npz")


def _decode(path: Path, role: str) -> np.ndarray:
    """One image as uint8/uint16 H x W (grayscale) or H x W x 3, at its own size."""
    with open_image(path, f"{role} image") as img:
        img.load()
        mode = img.mode
        if mode in ("I;16", "I;16L", "I;16B"):
            return np.asarray(img, dtype=np.uint16)
        if mode in ("1", "L", "LA"):
            return np.asarray(img.convert("L"), dtype=np.uint8)
        if mode in ("P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    raise UserError(f"{role} image {printable(path)} has pixel mode {mode}; save it as 8- or 16-bit grayscale or RGB")


def _to_float(arr: np.ndarray) -> np.ndarray:
    scale = 65535.0 if arr.dtype == np.uint16 else 255.0
    return arr.astype(np.float32) / scale


def _is_grey(arr: np.ndarray) -> bool:
    return arr.ndim == 2 or (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2]))


def _decode_folders(folders: list[tuple[_Folder, str]], channels: int | None = None) -> list[torch.Tensor]:
    """Decode every folder; one channel if every image is grey (RGB files with R = G = B included), else three.

    ``channels=3`` (the other input is RGB) replicates grey images to three channels.
    """
    # Declared sizes first: a file too large, or a set too large as float32 RGB, is refused before decoding.
    pixels = sum(math.prod(image_size(p, f"{role} image")) for folder, role in folders for p in folder.files)
    count = sum(len(folder.files) for folder, _ in folders)
    check_bytes(pixels * 3 * (2 + 4), f"decoding {count} images")
    decoded = [[_decode(p, role) for p in folder.files] for folder, role in folders]
    grey = channels != 3 and all(_is_grey(a) for arrays in decoded for a in arrays)
    first = None
    out = []
    for (folder, role), arrays in zip(folders, decoded):
        images = []
        for path, arr in zip(folder.files, arrays):
            if first is None:
                first = (path, arr.shape[:2])
            elif arr.shape[:2] != first[1]:
                h, w = arr.shape[:2]
                raise UserError(
                    f"image sizes differ: {printable(path)} is {h} x {w} but {printable(first[0])} is "
                    f"{first[1][0]} x {first[1][1]}; "
                    f"metrics compare images of equal size"
                )
            x = _to_float(arr)
            if grey:
                x = x if x.ndim == 2 else x[..., 0]
                x = x[None]
            else:
                x = np.repeat(x[None], 3, axis=0) if x.ndim == 2 else np.transpose(x, (2, 0, 1))
            images.append(x)
        out.append(torch.from_numpy(np.ascontiguousarray(np.stack(images))))
    return out


def _classify(path: Path, role: str) -> ImageSet | _Folder:
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{role} {path} does not exist")
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return _read_npz(path, role)
        raise UserError(
            f"{role} {path} is not an .npz file; give a release directory, an .npz file or a folder of images"
        )
    if (path / MANIFEST_FILE).is_file():
        release = load_release(path)
        return ImageSet(release.images, "release", release=release)
    files = _image_files(path)
    if not files:
        raise UserError(f"{role} {path} is neither a release directory (no {MANIFEST_FILE}) nor a folder of images")
    return _Folder(path, files)


def _pair_by_name(ref: _Folder, cand: _Folder) -> None:
    ref_names, cand_names = ref.names, cand.names
    only_ref = sorted(set(ref_names) - set(cand_names))
    only_cand = sorted(set(cand_names) - set(ref_names))
    if only_ref or only_cand:
        side, names = ("REF", only_ref) if only_ref else ("CAND", only_cand)
        raise UserError(
            f"{len(names)} image(s) in {side} have no namesake in the other folder (e.g. {printable(names[0])}); "
            f"give both folders the same file names or pass --pair-by-order"
        )
    by_name = dict(zip(cand_names, cand.files))
    cand.files = [by_name[n] for n in ref_names]


def load_pair(reference: Path, candidate: Path, pair_by_order: bool = False) -> tuple[ImageSet, ImageSet]:
    """The two image sets, in matching order; checks of values and shapes are left to the scorer."""
    ref = _classify(reference, "REF")
    cand = _classify(candidate, "CAND")
    folders = [(x, role) for x, role in ((ref, "REF"), (cand, "CAND")) if isinstance(x, _Folder)]
    if len(folders) == 2 and not pair_by_order:
        _pair_by_name(ref, cand)  # type: ignore[arg-type]
    if folders:
        other = [x.images.shape[1] for x in (ref, cand) if isinstance(x, ImageSet)]
        decoded = iter(_decode_folders(folders, other[0] if other else None))
        ref = ImageSet(next(decoded), "folder", ref.names) if isinstance(ref, _Folder) else ref
        cand = ImageSet(next(decoded), "folder", cand.names) if isinstance(cand, _Folder) else cand
    return ref, cand  # type: ignore[return-value]

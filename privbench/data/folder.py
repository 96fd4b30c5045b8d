"""``folder:PATH``: an ImageFolder tree of image files, one sub-folder per class.

Two layouts are understood:

* ``PATH/train/<class>/...``, ``PATH/val/<class>/...``, ``PATH/test/<class>/...``
  (also ``training``/``testing``/``validation``, any case); a missing val or test
  split is carved out of train by a seeded stratified split;
* ``PATH/<class>/...`` with no split folders: split 70 / 15 / 15, stratified, seeded.

A class map (the ``classes`` option) selects source class folders and merges
several into one class; ``balance`` subsamples every class to the smallest;
``pool`` (the ``split`` option) pools any split folders and makes a seeded
stratified train/test partition with val carved out of train. All three work
on the file list, before any image is decoded, so dropping most of a large
class costs nothing.

Images are decoded with Pillow, converted to grayscale or RGB, resized to a
square ``size`` and cached as uint8 arrays under the cache directory, keyed by
the file list, sizes, modification times and options, so a second load is fast.
A set larger than memory is *streamed* (``stream``: ``auto``, the default, when
its float32 images would take more than :data:`STREAM_AUTO_BYTES` or a quarter
of the memory available; ``on``; ``off``): it is decoded into that cache a
chunk at a time and read from it batch by batch (:mod:`privbench.imagestore`).

Only the tree's own regular folders and files are read: no symbolic link inside
it is followed, so a link cannot add a copy of the data as another class, nor
bring in files from elsewhere (the root itself may be a link). File and folder
names that are not UTF-8 are read, and class names show their bytes as ``\\xNN``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from privbench.api import Split
from privbench.data.filecache import file_list_key, load_cached, store_cached, store_rows
from privbench.data.splits import Group, arrange_splits
from privbench.errors import UserError
from privbench.imaging import image_size, open_image, printable
from privbench.imagestore import ImageStore
from privbench.limits import available_memory, check_bytes, check_classes, check_size, shape_bytes

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".ppm"})
SPLIT_ALIASES = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}
DEFAULT_SIZE = 64
STREAM_AUTO_BYTES = 2 << 30
"""``stream=auto`` streams a folder whose float32 images (all splits) exceed this, or a quarter of free memory."""
DECODE_CHUNK = 256


def _subdirs(path: Path) -> list[Path]:
    """The visible sub-folders that are folders of the tree itself, not links."""
    try:
        entries = list(path.iterdir())
    except OSError as exc:
        raise UserError(f"cannot list the folder {printable(path)}: {exc.strerror or exc}") from exc
    return sorted(p for p in entries if not p.name.startswith(".") and not p.is_symlink() and p.is_dir())


def _links(path: Path) -> int:
    try:
        return sum(1 for p in path.iterdir() if p.is_symlink())
    except OSError:
        return 0


def _find_split_dirs(root: Path) -> dict[str, Path]:
    by_lower = {p.name.lower(): p for p in _subdirs(root)}
    found = {}
    for split, aliases in SPLIT_ALIASES.items():
        for alias in aliases:
            if alias in by_lower:
                found[split] = by_lower[alias]
                break
    return found


def _image_files(class_dir: Path, pattern: str, extensions: frozenset[str] | None = IMAGE_EXTENSIONS) -> list[Path]:
    """Files under ``class_dir`` matching ``pattern`` (and, unless ``extensions`` is None, with one of
    those suffixes in any case), none hidden, none reached through a link."""
    try:
        real = class_dir.resolve()
        candidates = list(class_dir.glob(pattern))
    except (ValueError, NotImplementedError) as exc:
        raise UserError(f"dataset option glob={pattern!r} is not a usable pattern: {exc}") from exc
    except OSError as exc:
        raise UserError(f"cannot list the folder {printable(class_dir)}: {exc.strerror or exc}") from exc
    files = []
    for p in candidates:
        rel = p.relative_to(class_dir)
        if (extensions is not None and p.suffix.lower() not in extensions) or any(part.startswith(".") for part in rel.parts):
            continue
        try:
            if p.is_symlink() or not p.is_file() or p.resolve() != real / rel:
                continue
        except (OSError, RuntimeError):  # a link loop, or no permission
            continue
        files.append(p)
    return sorted(files)


Extensions = frozenset[str] | None


def _collect(split_dir: Path, sources: list[tuple[str, ...]], pattern: str, extensions: Extensions) -> Group:
    """The image files of each class (label = position in ``sources``), from all its source folders."""
    files, labels = [], []
    for label, names in enumerate(sources):
        for name in names:
            class_dir = split_dir / name
            if class_dir.is_symlink() or not class_dir.is_dir():
                continue
            found = _image_files(class_dir, pattern, extensions)
            files += found
            labels += [label] * len(found)
    return files, labels


def _class_folders(base: Path, pattern: str, extensions: Extensions) -> list[str]:
    return [p.name for p in _subdirs(base) if _image_files(p, pattern, extensions)]


def _resolve_sources(base: Path, classes: tuple, pattern: str, extensions: Extensions,
                     what: str) -> list[tuple[str, ...]]:
    """Each class's source folder names as they are on disk (an exact name, else the one that
    differs only in case), or one line naming the missing folder and listing those found."""
    on_disk = [p.name for p in _subdirs(base)]
    sources = []
    for name, folders in classes:
        resolved = []
        for folder in folders:
            matches = [folder] if folder in on_disk else [d for d in on_disk if d.lower() == folder.lower()]
            if len(matches) != 1 or not _image_files(base / matches[0], pattern, extensions):
                found = ", ".join(printable(n) for n in _class_folders(base, pattern, extensions)) or "none"
                owner = f" (for class {printable(name)!r})" if folder != name else ""
                raise UserError(
                    f"{what}: option classes names source folder {printable(folder)!r}{owner}, but "
                    f"{printable(base)} has no folder of that name with image files; class folders found: {found}"
                )
            resolved.append(matches[0])
        sources.append(tuple(resolved))
    return sources


def _decode(path: Path, size: int, mode: str) -> np.ndarray:
    from PIL import Image

    with open_image(path) as img:
        img.load()
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit scans: rescale before 8-bit conversion
            arr = np.asarray(img, dtype=np.float64)
            span = arr.max() - arr.min()
            arr = (arr - arr.min()) / span * 255 if span > 0 else np.zeros_like(arr)
            img = Image.fromarray(arr.astype(np.uint8))
        img = img.convert(mode)
        img = img.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
        return np.asarray(img, dtype=np.uint8)


def _guess_channels(files: list[Path]) -> int:
    """3 if any of the first images has colour in it, else 1 (X-rays are often saved as RGB)."""
    for path in files[:16]:
        image_size(path)
        with open_image(path) as img:
            if img.mode in ("RGB", "RGBA", "P"):
                arr = np.asarray(img.convert("RGB"), dtype=np.int16)
                if np.abs(arr[..., 0] - arr[..., 1]).max() > 8 or np.abs(arr[..., 1] - arr[..., 2]).max() > 8:
                    return 3
    return 1


def _cache_file(files: list[Path], size: int, channels: int, cache_dir: Path | None) -> Path | None:
    """Where the decoded files live in the cache (one entry for the in-memory and the streamed loader)."""
    return cache_dir / "folders" / f"{file_list_key(files, (size, channels))}.npy" if cache_dir else None


def _decoded_chunks(files: list[Path], size: int, channels: int):
    """uint8 N x C x H x W chunks of :data:`DECODE_CHUNK` files, decoded by a thread pool, in order."""
    mode = "L" if channels == 1 else "RGB"
    workers = min(8, (os.cpu_count() or 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(files), DECODE_CHUNK):
            arr = np.stack(list(pool.map(lambda p: _decode(p, size, mode), files[start : start + DECODE_CHUNK])))
            yield arr[:, None] if arr.ndim == 3 else np.transpose(arr, (0, 3, 1, 2))


def _decode_all(files: list[Path], size: int, channels: int, cache_dir: Path | None) -> np.ndarray:
    cache_file = _cache_file(files, size, channels, cache_dir)
    cached = load_cached(cache_file, lambda a: a.shape[0] == len(files))
    if cached is not None:
        return cached
    for f in files:  # declared sizes first, in this thread, before any decoding
        image_size(f)
    arr = np.ascontiguousarray(np.concatenate(list(_decoded_chunks(files, size, channels))))
    store_cached(cache_file, arr)
    return arr


def _decode_to_store(files: list[Path], size: int, channels: int, cache_dir: Path | None) -> ImageStore:
    """The files decoded into the cache a chunk at a time (once), opened as a store."""
    if cache_dir is None:
        raise UserError("a streamed folder is decoded into the cache directory; set PRIVBENCH_CACHE_DIR to a "
                        "writable folder")
    cache_file = _cache_file(files, size, channels, cache_dir)
    shape = (len(files), channels, size, size)
    if cache_file.is_file():
        try:
            return ImageStore.open(cache_file, shape)
        except UserError:
            pass  # a damaged entry is decoded again
    for f in files:  # declared sizes first, before any decoding
        image_size(f)
    try:
        store_rows(cache_file, shape, _decoded_chunks(files, size, channels))
    except OSError as exc:
        raise UserError(f"cannot write the image cache {printable(cache_file)}: {exc.strerror or exc}") from exc
    return ImageStore.open(cache_file, shape)


def streams(stream: str, float_bytes: int) -> bool:
    """Whether a folder of ``float_bytes`` of float32 images is streamed under ``stream`` (auto, on, off)."""
    if stream not in ("auto", "on", "off"):
        raise UserError(f"dataset option stream must be auto, on or off, got {stream!r}")
    if stream != "auto":
        return stream == "on"
    free = available_memory()
    return float_bytes > min(STREAM_AUTO_BYTES, free // 4 if free else STREAM_AUTO_BYTES)


def plan_folder_splits(
    root: Path,
    *,
    seed: int = 0,
    pattern: str = "**/*",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    classes: tuple | None = None,
    balance: bool = False,
    pool: bool = False,
    what: str = "",
    extensions: Extensions = IMAGE_EXTENSIONS,
) -> tuple[dict[str, Group], list[str]]:
    """Each split's files and labels, and the class names, decided from file names alone.

    ``classes``: (class, source folders) pairs; ``balance``: every class subsampled to the
    smallest (each official split on its own unless pooled); ``pool``: split folders are
    pooled, ``test_fraction`` of the whole is the test part and ``val_fraction`` of the rest val.
    ``extensions``: the file suffixes read (None: whatever ``pattern`` matches).
    """
    root = Path(root).expanduser()
    what = what or f"folder {printable(root)}"
    if not root.exists():
        raise UserError(f"no such folder: {printable(root)}")
    if not root.is_dir():
        raise UserError(f"{printable(root)} is not a folder")
    split_dirs = _find_split_dirs(root)
    base = split_dirs.get("train", root)
    if classes is not None:
        check_classes(len(classes), f"{what}: option classes")
        sources = _resolve_sources(base, classes, pattern, extensions, what)
        shown = [printable(name) for name, _ in classes]
    else:
        class_names = _class_folders(base, pattern, extensions)
        if len(class_names) < 2:
            found = ", ".join(printable(n) for n in class_names) or "none"
            links = _links(base)
            skipped = f" ({links} symbolic link(s) there are not followed)" if links else ""
            raise UserError(
                f"{printable(base)} holds image files for {len(class_names)} class folder(s) ({found}){skipped}; "
                f"privbench needs at least two classes, one sub-folder each"
            )
        check_classes(len(class_names), f"{printable(base)}: one class per sub-folder")
        shown = [printable(n) for n in class_names]
        if len(set(shown)) < len(shown):
            raise UserError(f"{printable(base)}: two class folders have names that print the same ({', '.join(shown)})")
        for split, d in split_dirs.items():
            extra = sorted(set(_class_folders(d, pattern, extensions)) - set(class_names))
            if extra:
                raise UserError(f"{printable(d)} has class folder(s) {', '.join(map(printable, extra))} that {printable(base)} lacks")
        sources = [(n,) for n in class_names]

    official = {"train": _collect(base, sources, pattern, extensions)}
    for split in ("val", "test"):
        if split in split_dirs:
            official[split] = _collect(split_dirs[split], sources, pattern, extensions)
    groups = arrange_splits(official, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
                            balance=balance, pool=pool)
    for split in ("train", "val", "test"):
        if not groups[split][0]:
            raise UserError(f"{printable(root)}: the {split} split has no images")
    return groups, shown


def read_folder_splits(
    root: Path,
    *,
    size: int | None,
    channels: int | None,
    cache_dir: Path | None = None,
    stream: str = "auto",
    **plan,
) -> tuple[dict[str, Split], list[str]]:
    """Splits and class names: :func:`plan_folder_splits` (its options in ``plan``), then only
    the chosen files are decoded (into an :class:`~privbench.imagestore.ImageStore` when streamed)."""
    size = size or DEFAULT_SIZE
    check_size(size)
    groups, shown = plan_folder_splits(root, **plan)
    files = groups["train"][0]
    if channels is None:
        channels = _guess_channels(files)
    if channels not in (1, 3):
        raise UserError(f"channels must be 1 or 3, got {channels}")
    count = sum(len(g[0]) for g in groups.values())
    streamed = streams(stream, shape_bytes((count, channels, size, size), 4))
    if not streamed:
        check_bytes(shape_bytes((count, channels, size, size), 5), f"{count} images of {channels} x {size} x {size}")
    splits = {}
    for split in ("train", "val", "test"):
        split_files, split_labels = groups[split]
        if streamed:
            store = _decode_to_store(split_files, size, channels, cache_dir)
            splits[split] = Split(store, torch.tensor(split_labels, dtype=torch.int64))
            continue
        arr = _decode_all(split_files, size, channels, cache_dir)
        images = torch.from_numpy(arr).float().div_(255.0)
        splits[split] = Split(images, torch.tensor(split_labels, dtype=torch.int64))
    return splits, shown

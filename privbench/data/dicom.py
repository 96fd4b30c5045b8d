"""``dicom:DIR``: a folder of DICOM files, labelled by a CSV file or by class sub-folders.

With ``labels=FILE.csv`` every DICOM file under DIR is matched to a row of the CSV
(:func:`match_rows` says how) and its class is the row's label column; a split
column, when the CSV has one, names each file's split. Without a CSV the tree is
read as the folder loader reads an ImageFolder tree (``DIR/CLASS/*.dcm``, with
optional ``train/ val/ test/`` folders), by the folder loader's own planner.
Splits are made from the file list (seeded, stratified, by
:func:`privbench.data.splits.arrange_splits`), before any pixel is decoded, and
all frames of a file stay in one split.

Pixels are read by :mod:`privbench.data.dicom_pixels`, which reads no other part
of the header; decoded images are cached under ``CACHE/dicom/`` keyed by a hash
of the file list, so no file name is stored there either.
"""

from __future__ import annotations

import csv
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from privbench.api import Split
from privbench.data.arrays import resize, set_channels
from privbench.data.dicom_pixels import declared, declared_channels, dicom_images
from privbench.data.filecache import file_list_key, load_cached, store_cached
from privbench.data.folder import DEFAULT_SIZE, SPLIT_ALIASES, _image_files, plan_folder_splits
from privbench.data.splits import Group, arrange_splits
from privbench.errors import UserError
from privbench.imaging import printable
from privbench.limits import check_bytes, check_classes, check_size, shape_bytes

DICOM_EXTENSIONS = frozenset({".dcm", ".dicom"})
DEFAULT_ID, DEFAULT_LABEL, DEFAULT_SPLIT = "file", "label", "split"


def _strip_extension(name: str) -> str:
    path = PurePosixPath(name)
    return str(path.with_suffix("")) if path.suffix.lower() in DICOM_EXTENSIONS else name


def _row_key(text: str) -> str:
    """A CSV id as a file key: trimmed, ``/`` separators, no leading ``./``, no ``.dcm``/``.dicom``."""
    key = text.strip().replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    return _strip_extension(key)


def dicom_files(root: Path, pattern: str | None) -> list[Path]:
    """The DICOM files under ``root``: ``*.dcm`` and ``*.dicom`` (any case) at any depth, or
    whatever ``pattern`` matches when one is given."""
    files = _image_files(root, pattern or "**/*", None if pattern else DICOM_EXTENSIONS)
    if not files:
        which = f"matching glob={pattern!r}" if pattern else "(*.dcm or *.dicom)"
        raise UserError(f"no DICOM files {which} under {printable(root)}")
    return files


def _read_rows(path: Path, columns: dict[str, str], split_column: str) -> tuple[list[tuple[str, str, str | None]], bool]:
    """(id, label, split or None) per data row, and whether the CSV has the split column."""
    name = f"labels file {printable(path)}"
    if not path.is_file():
        raise UserError(f"no such {name}" if not path.exists() else f"{name} is not a file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            for option, column in columns.items():
                if column not in header:
                    raise UserError(f"{name} has no column {printable(column)!r} (option {option}=...); "
                                    f"its columns: {', '.join(map(printable, header)) or 'none'}")
            has_split = split_column in header
            rows = []
            for row in reader:
                key, label = ((row.get(columns[c]) or "").strip() for c in ("id", "label"))
                if not key and not label:
                    continue  # a blank line
                line = reader.line_num
                if not key:
                    raise UserError(f"{name}, line {line}: no {printable(columns['id'])}")
                if not label:
                    raise UserError(f"{name}, line {line}: no {printable(columns['label'])} for {printable(key)!r}")
                split = (row.get(split_column) or "").strip().lower() if has_split else None
                rows.append((key, label, split))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"cannot read {name}: {printable(str(exc)) or type(exc).__name__}") from exc
    return rows, has_split


def match_rows(root: Path, files: list[Path], rows: list[tuple[str, str, str | None]],
               name: str, id_column: str = DEFAULT_ID) -> dict[Path, tuple[str, str | None]]:
    """Each file's (label, split), from the rows whose id is the file's path relative to ``root``
    (``/`` separators), or its bare file name when the id has no ``/``; with or without the
    ``.dcm``/``.dicom`` extension. Rows naming no file are skipped; a file with no row, or with
    rows that disagree, is one line naming it."""
    by_path = {_strip_extension(f.relative_to(root).as_posix()): f for f in files}
    by_stem: dict[str, list[Path]] = {}
    for f in files:
        by_stem.setdefault(_strip_extension(f.name), []).append(f)
    found: dict[Path, tuple[str, str | None]] = {}
    for key_text, label, split in rows:
        key = _row_key(key_text)
        if key in by_path:
            target = by_path[key]
        elif "/" not in key and key in by_stem:
            matches = by_stem[key]
            if len(matches) > 1:
                raise UserError(f"{name}: id {printable(key_text)!r} names {len(matches)} files "
                                f"({printable(matches[0])}, {printable(matches[1])}); give paths relative to {printable(root)}")
            target = matches[0]
        else:
            continue
        if target in found and found[target] != (label, split):
            raise UserError(f"{name} gives {printable(target)} two labels or splits: "
                            f"{found[target][0]!r} and {label!r}")
        found[target] = (label, split)
    missing = [f for f in files if f not in found]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UserError(f"DICOM file {printable(missing[0])}{more} has no row in {name} (its column "
                        f"{printable(id_column)!r} is matched against each file's path under {printable(root)} "
                        f"or its file name, with or without the extension)")
    return found


def _value_order(values: set[str]) -> list[str]:
    """Label values in numeric order when all are whole numbers, else sorted as text."""
    try:
        return sorted(values, key=lambda v: (int(v), v))
    except ValueError:
        return sorted(values)


def _class_index(values: set[str], classes: tuple | None, name: str) -> tuple[dict[str, int], list[str]]:
    """Label value -> class index (values a ``classes`` map leaves out are dropped), and class names."""
    if classes is None:
        order = _value_order(values)
        if len(order) < 2:
            raise UserError(f"{name}: every file has label {printable(order[0])!r}; privbench needs at least two classes")
        check_classes(len(order), f"{name}: one class per label value")
        return {v: k for k, v in enumerate(order)}, [printable(v) for v in order]
    check_classes(len(classes), f"{name}: option classes")
    index = {}
    for k, (_, sources) in enumerate(classes):
        for source in sources:
            if source not in values:
                found = ", ".join(printable(v) for v in _value_order(values))
                raise UserError(f"{name}: option classes names label {printable(source)!r}, which no file has; labels found: {found}")
            index[source] = k
    return index, [printable(n) for n, _ in classes]


def _split_of(value: str | None, target: Path, name: str) -> str:
    for split, aliases in SPLIT_ALIASES.items():
        if value in aliases:
            return split
    raise UserError(f"{name} puts {printable(target)} in split {printable(value or '')!r}; "
                    f"use train, val or test (or leave the column out)")


def plan_csv_splits(root: Path, files: list[Path], labels: Path, *, id_column: str, label_column: str,
                    split_column: str, classes: tuple | None, seed: int, val_fraction: float,
                    test_fraction: float, balance: bool, pool: bool) -> tuple[dict[str, Group], list[str]]:
    """Each split's files and labels, and the class names, from the labels CSV."""
    name = f"labels file {printable(labels)}"
    rows, has_split = _read_rows(labels, {"id": id_column, "label": label_column}, split_column)
    found = match_rows(root, files, rows, name, id_column)
    index, shown = _class_index({label for label, _ in found.values()}, classes, name)
    official: dict[str, Group] = {}
    for f in files:
        label, split = found[f]
        if label not in index:
            continue
        group = official.setdefault(_split_of(split, f, name) if has_split else "train", ([], []))
        group[0].append(f)
        group[1].append(index[label])
    if "train" not in official:
        raise UserError(f"{name}: no file of the chosen classes is in the train split")
    groups = arrange_splits(official, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
                            balance=balance, pool=pool)
    for split in ("train", "val", "test"):
        if not groups[split][0]:
            raise UserError(f"{printable(root)}: the {split} split has no images")
    return groups, shown


def _convert(path: Path, size: int, channels: int, frames: str) -> np.ndarray:
    """One file's images as float32 K x C x size x size: channels set, resized as every loader does."""
    images = torch.from_numpy(dicom_images(path, frames)).float()
    images = images[:, None] if images.ndim == 3 else images.permute(0, 3, 1, 2)
    return resize(set_channels(images.contiguous(), channels), size).numpy()


def _decode_all(files: list[Path], size: int, channels: int, frames: str,
                cache_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """(images N x C x size x size, frames per file), decoded once and cached."""
    key = file_list_key(files, ("dicom", size, channels, frames), "DICOM file")
    base = cache_dir / "dicom" / key if cache_dir else None
    count_file, image_file = (base.with_suffix(".frames.npy"), base.with_suffix(".npy")) if base else (None, None)
    counts = load_cached(count_file, lambda a: a.shape == (len(files),) and a.dtype == np.int64)
    if counts is not None:
        images = load_cached(image_file, lambda a: a.shape == (int(counts.sum()), channels, size, size))
        if images is not None:
            return images, counts
    # declared sizes and frame counts first, in this thread, before any decoding
    declared_frames = [declared(f)[0] for f in files]
    total = sum(declared_frames) if frames == "all" else len(files)
    check_bytes(shape_bytes((total, channels, size, size)), f"{total} images of {channels} x {size} x {size}")
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as pool:
        decoded = list(pool.map(lambda p: _convert(p, size, channels, frames), files))
    counts = np.array([len(d) for d in decoded], dtype=np.int64)
    images = np.ascontiguousarray(np.concatenate(decoded), dtype=np.float32)
    store_cached(count_file, counts)
    store_cached(image_file, images)
    return images, counts


def read_dicom_splits(root: Path, *, size: int | None, channels: int | None, frames: str = "first",
                      pattern: str | None = None, labels: str | None = None, id_column: str = DEFAULT_ID,
                      label_column: str = DEFAULT_LABEL, split_column: str = DEFAULT_SPLIT,
                      cache_dir: Path | None = None, **plan) -> tuple[dict[str, Split], list[str]]:
    """Splits and class names; ``plan`` takes the folder planner's options (seed, fractions,
    classes, balance, pool). ``labels`` is a CSV path, relative to ``root`` unless absolute."""
    root = Path(root).expanduser()
    size = size or DEFAULT_SIZE
    check_size(size)
    if not root.exists():
        raise UserError(f"no such folder: {printable(root)}")
    if not root.is_dir():
        raise UserError(f"{printable(root)} is not a folder")
    files = dicom_files(root, pattern)
    if labels:
        csv_path = Path(labels).expanduser()
        csv_path = csv_path if csv_path.is_absolute() else root / csv_path
        plan.pop("what", None)
        groups, shown = plan_csv_splits(root, files, csv_path, id_column=id_column, label_column=label_column,
                                        split_column=split_column, **plan)
    else:
        groups, shown = plan_folder_splits(root, pattern=pattern or "**/*",
                                           extensions=None if pattern else DICOM_EXTENSIONS, **plan)
    if channels is None:
        channels = 3 if any(declared_channels(f) == 3 for f in groups["train"][0][:16]) else 1
    splits = {}
    for split in ("train", "val", "test"):
        split_files, split_labels = groups[split]
        images, counts = _decode_all(split_files, size, channels, frames, cache_dir)
        labels_t = torch.from_numpy(np.repeat(np.asarray(split_labels, dtype=np.int64), counts))
        splits[split] = Split(torch.from_numpy(images), labels_t)
    return splits, shown

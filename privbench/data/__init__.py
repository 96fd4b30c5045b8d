"""One way to load data: a spec string in, a validated :class:`~privbench.api.Dataset` out.

Specs:

``digits``                 scikit-learn's digits, embedded (default ``size=16``)
``npz:PATH``               a MedMNIST-layout ``.npz`` file
``medmnist:NAME``          ``~/.medmnist/NAME.npz`` (or ``$MEDMNIST_ROOT``)
``folder:PATH``            an ImageFolder tree
``dicom:PATH``             a folder of DICOM files, labelled by a CSV or by class sub-folders
``NAME``                   a dataset card from ``registry/datasets/NAME.toml``

Options follow a ``?``: ``folder:/data/xray?size=64&channels=1``. Known options:
``size`` (square side in pixels, 4 to 2048 or ``PRIVBENCH_MAX_SIZE``), ``channels``
(1 or 3), ``seed`` (split seed where a split is made, 0 to 2**63-1),
``val_fraction`` / ``test_fraction`` (each in [0, 1), together below 1), and for
folders only: ``glob``, ``classes`` (``COVID,Normal`` selects class folders,
``tumour:glioma+pituitary,normal:notumor`` merges them), ``balance`` (``true``:
every class subsampled to the smallest) and ``split`` (``80/20``: a train/test
partition, val carved out of train; official split folders are pooled first);
these four apply to ``dicom:`` too, where ``classes`` maps label values when a CSV
labels the files. For DICOM only: ``labels`` (a CSV file), ``id``, ``label`` and
``split_column`` (its columns) and ``frames`` (``first`` or ``all``). For
folders only: ``stream`` (``auto``, ``on``, ``off``: read a set larger than
memory from its decoded cache batch by batch; auto streams above 2 GiB of
float32 images or a quarter of free memory).
A card's ``[options]`` table takes ``glob``, ``classes``, ``balance``, ``split``,
``val_fraction``, ``test_fraction`` and the DICOM options; options in the spec win
over the card's.

What a file declares (array shapes, labels, image sizes) is checked against
:mod:`privbench.limits` before it is allocated.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from privbench.errors import UserError
from privbench.limits import check_classes, check_seed, check_size

SCHEMES = ("digits", "npz", "medmnist", "folder", "dicom")
TREES = ("folder", "dicom")
"""The schemes that read a tree of image files: they decode at a size, and take the folder options."""


def _flag(value: str) -> bool:
    """``balance=true``: the words a query string can carry for a TOML boolean."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise ValueError(value)


def _split(value: str) -> tuple[int, int]:
    """``split=80/20``, read as a card's ``split`` is."""
    from privbench.data.cards import parse_split

    split = parse_split(value)
    if split is None:
        raise ValueError(value)
    return split


def _frames(value: str) -> str:
    from privbench.data.dicom_pixels import FRAMES

    if value not in FRAMES:
        raise ValueError(value)
    return value


def _classes(value: str) -> tuple:
    """``classes=...``, checked as a card's ``classes`` is (bar the card's own class list)."""
    from privbench.data.cards import class_map_problem, parse_class_text

    pairs = parse_class_text(value)
    problem = class_map_problem(pairs)
    if problem:
        raise UserError(f"dataset option classes {problem}")
    return pairs


def _stream(value: str) -> str:
    if value not in ("auto", "on", "off"):
        raise ValueError(value)
    return value


# Each option: how its text is read, and what it must be in words.
OPTIONS = {
    "size": (int, "int"),
    "channels": (int, "int"),
    "seed": (int, "int"),
    "val_fraction": (float, "float"),
    "test_fraction": (float, "float"),
    "glob": (str, "str"),
    "classes": (_classes, "class folders separated by commas, each optionally CLASS:FOLDER+FOLDER"),
    "balance": (_flag, "true or false"),
    "split": (_split, "train/test percentages such as 80/20 (adding up to 100)"),
    "labels": (str, "a CSV file"),
    "id": (str, "a column of the labels CSV"),
    "label": (str, "a column of the labels CSV"),
    "split_column": (str, "a column of the labels CSV"),
    "frames": (_frames, "first or all"),
    "stream": (_stream, "auto, on or off"),
}
DEFAULT_FRACTION = 0.15
# Classes without any image that labels may leave before they look like a damaged file.
SPARSE_SLACK = 8


def parse_spec(spec: str) -> tuple[str, str, dict[str, Any]]:
    """``"folder:/x?size=64"`` -> ``("folder", "/x", {"size": 64})``.

    How the options combine is checked here unless the spec names a card: then it is
    checked once they are merged with the card's (``load_dataset``).
    """
    from privbench.data.cards import folder_protocol

    spec = spec.strip()
    if not spec:
        raise UserError("empty dataset spec")
    body, _, query = spec.partition("?")
    scheme, colon, target = body.partition(":")
    if not colon:
        scheme, target = body, ""
    options: dict[str, Any] = {}
    if query:
        for item in query.split("&"):
            key, eq, value = item.partition("=")
            if not eq or key not in OPTIONS:
                raise UserError(
                    f"dataset option {item!r} not understood; valid options: {', '.join(f'{k}=...' for k in OPTIONS)}"
                )
            convert, expected = OPTIONS[key]
            try:
                options[key] = convert(value)
            except ValueError as exc:
                raise UserError(f"dataset option {key} must be {expected}, got {value!r}") from exc
    if "channels" in options and options["channels"] not in (1, 3):
        raise UserError(f"dataset option channels must be 1 or 3, got {options['channels']}")
    if "size" in options:
        check_size(options["size"])
    if "seed" in options:
        check_seed(options["seed"], "dataset option seed")
    for key in ("val_fraction", "test_fraction"):
        value = options.get(key, DEFAULT_FRACTION)
        if not (math.isfinite(value) and 0 <= value < 1):
            raise UserError(f"dataset option {key} must lie in [0, 1), got {value}")
    if scheme in SCHEMES:
        folder_protocol(options, "dataset options")
    return scheme, target, options


def _count_classes(splits: dict, what: str, named: bool) -> int:
    """1 + the largest label, refused beyond the class limit, or (when no class names are given)
    when most of the classes it implies would hold no image."""
    import torch

    for key, split in splits.items():
        if len(split) == 0:
            raise UserError(f"{what}: the {key} split has no images")
    top = max(int(s.labels.max()) for s in splits.values())
    check_classes(top + 1, f"{what}: labels go up to {top}")
    if not named:
        present = int(torch.unique(torch.cat([s.labels for s in splits.values()])).numel())
        empty = top + 1 - present
        if empty > max(present, SPARSE_SLACK):
            raise UserError(
                f"{what}: labels go up to {top} but only {present} distinct values occur, so {empty} of "
                f"{top + 1} classes would hold no image; number the classes 0..{present - 1}"
            )
    return top + 1


def _check_converted_size(splits: dict, size: int | None, channels: int | None) -> None:
    """All splits at the asked size and channels, in float32, checked before any is converted."""
    from privbench.limits import check_bytes, shape_bytes

    if size is None and channels is None:
        return
    n = sum(len(s) for s in splits.values())
    c, h, w = splits["train"].images.shape[1:]
    shape = (channels or c, size or h, size or w)
    check_bytes(shape_bytes((n, *shape)), f"{n} images of {' x '.join(map(str, shape))}")


def load_dataset(spec: str, *, cache_dir: Path | None = None) -> "Dataset":  # noqa: F821
    """Load and validate a dataset; bad input raises :class:`UserError` with one line."""
    from privbench.api import Dataset, default_cache_dir
    from privbench.data import cards as cards_mod
    from privbench.data.arrays import resize, set_channels
    from privbench.imaging import printable

    scheme, target, options = parse_spec(spec)
    card = None
    if scheme not in SCHEMES:
        if target:
            raise UserError(f"unknown dataset scheme {scheme!r}; use one of {', '.join(s + ':' for s in SCHEMES[1:])} or a card name")
        card = cards_mod.find_card(scheme)
        if card is None:
            names = ", ".join(sorted(cards_mod.load_cards())) or "none"
            raise UserError(f"unknown dataset {scheme!r}; known cards: {names}; or use npz:PATH, medmnist:NAME, folder:PATH, dicom:PATH")
        available, where = card.availability()
        if not available:
            raise UserError(
                f"dataset {card.name!r} is not on this machine: put it at {where} "
                f"('privbench datasets --layout' shows the layout); privbench never downloads data"
            )
        c_scheme, c_target, c_options = parse_spec(card.spec)
        if c_scheme not in SCHEMES:
            raise UserError(f"dataset card {card.name!r} has an unknown loader {card.loader!r}")
        scheme, target = c_scheme, c_target
        options = {**card.options, **c_options, **options}
    elif scheme == "digits":
        card = cards_mod.find_card("digits")
    split, val_fraction, test_fraction = cards_mod.folder_protocol(options, f"dataset {card.name!r}" if card else "dataset options")
    folder_only = [k for k in cards_mod.FOLDER_ONLY if k in options]
    if folder_only and scheme not in TREES:
        raise UserError(f"dataset option(s) {', '.join(folder_only)} apply to folder and dicom datasets only, not {scheme}")
    dicom_only = [k for k in cards_mod.DICOM_ONLY if k in options]
    if dicom_only and scheme != "dicom":
        raise UserError(f"dataset option(s) {', '.join(dicom_only)} apply to dicom datasets only, not {scheme}")
    if "stream" in options and scheme != "folder":
        raise UserError(f"dataset option stream applies to folder datasets only, not {scheme}")
    if "labels" not in options and any(k in options for k in ("id", "label", "split_column")):
        raise UserError("dataset options id, label and split_column name columns of a labels CSV: give labels=FILE.csv too")

    # Files keep their native size unless asked; a card's size is the default for folders
    # and DICOM trees, whose images come in any size.
    size = options.get("size")
    channels = options.get("channels")
    if scheme in TREES and card is not None:
        size = size or card.image_size
        channels = channels or card.channels
    seed = options.get("seed", 0)
    class_names: list[str] | None = None
    name = card.name if card else ""

    if scheme == "digits":
        from privbench.data.digits import read_digits_splits

        splits = read_digits_splits(options.get("size"), seed)
        class_names = [str(i) for i in range(10)]
        name = name or "digits"
    elif scheme in ("npz", "medmnist"):
        from privbench.data.npz import file_sha256, medmnist_path, read_npz_splits

        if not target:
            raise UserError(f"{scheme}: needs a {'path' if scheme == 'npz' else 'dataset name'}, e.g. {scheme}:{'data/x.npz' if scheme == 'npz' else 'pneumoniamnist'}")
        path = medmnist_path(target, options.get("size")) if scheme == "medmnist" else Path(target).expanduser()
        splits, class_names = read_npz_splits(path)
        if card is None:
            card = cards_mod.card_for_file(file_sha256(path))
            if card is None and scheme == "medmnist":
                card = cards_mod.find_card(target)
        name = name or (card.name if card else path.stem)
    elif scheme == "dicom":
        from privbench.data.dicom import read_dicom_splits

        if not target:
            raise UserError("dicom: needs a path, e.g. dicom:/data/rsna/stage_2_train_images")
        splits, class_names = read_dicom_splits(
            Path(target),
            size=size,
            channels=channels,
            frames=options.get("frames", "first"),
            pattern=options.get("glob"),
            labels=options.get("labels"),
            **{k: options[o] for k, o in (("id_column", "id"), ("label_column", "label"),
                                           ("split_column", "split_column")) if o in options},
            seed=seed,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            classes=options.get("classes"),
            balance=options.get("balance", False),
            pool=split is not None,
            what=f"dataset {printable(name or Path(target).name)!r}",
            cache_dir=cache_dir or default_cache_dir(),
        )
        name = name or Path(target).expanduser().resolve().name
    else:  # folder
        from privbench.data.folder import read_folder_splits

        if not target:
            raise UserError("folder: needs a path, e.g. folder:/data/chest_xray")
        splits, class_names = read_folder_splits(
            Path(target),
            size=size,
            channels=channels,
            seed=seed,
            pattern=options.get("glob") or "**/*",
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            classes=options.get("classes"),
            balance=options.get("balance", False),
            pool=split is not None,
            what=f"dataset {printable(name or Path(target).name)!r}",
            cache_dir=cache_dir or default_cache_dir(),
            stream=options.get("stream", "auto"),
        )
        name = name or Path(target).expanduser().resolve().name

    name = printable(name)
    num_classes = _count_classes(splits, f"dataset {name!r}", named=bool(class_names or (card and card.classes)))
    if scheme not in TREES:
        _check_converted_size(splits, None if scheme == "digits" else size, channels)
        for key, split in splits.items():
            images = set_channels(split.images, channels)
            images = resize(images, size if scheme != "digits" else None)
            splits[key] = type(split)(images.contiguous(), split.labels, split.attributes)

    if card is not None and card.classes and scheme not in TREES:
        if num_classes > len(card.classes):
            raise UserError(f"dataset card {card.name!r} lists {len(card.classes)} classes but labels go up to {num_classes - 1}")
        class_names = list(card.classes)
    if class_names is None:
        class_names = [str(i) for i in range(num_classes)]
    if len(class_names) < num_classes:
        raise UserError(f"{len(class_names)} class names for labels up to {num_classes - 1}")
    dataset = Dataset(
        name=name,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        class_names=tuple(class_names),
        spec=spec,
        public=bool(card.public) if card else False,
        description=card.title if card else "",
    )
    return dataset.validate()

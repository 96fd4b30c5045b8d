"""Dataset cards: ``registry/datasets/*.toml``, one per known dataset.

A card names the loader spec, class names, licence, source, the folder layout
it expects and whether its images are public (only then may reports show them
without an explicit flag).

A card's ``[options]`` say how a folder tree becomes the card's dataset:
``classes`` selects and merges source class folders, ``balance`` subsamples
every class to the smallest, ``split = "80/20"`` makes a train/test partition
(val carved out of train). The same options exist as spec options
(``?classes=...&balance=true&split=80/20``); both are read into one form here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privbench.errors import UserError
from privbench.registry_path import registry_dir
from privbench.schema import (
    PLAIN_NAME_EXPECTED,
    Field,
    as_list,
    check_fields,
    either,
    int_between,
    is_bool,
    is_nonempty_str,
    is_number,
    is_plain_name,
    is_str,
    is_table,
    list_of,
    one_of,
    one_or_list,
    read_toml,
    table_of,
)

ENV_DATA_ROOT = "PRIVBENCH_DATA_ROOT"
ENV_MEDMNIST_ROOT = "MEDMNIST_ROOT"


def data_root() -> Path:
    """Where ``folder:`` cards expect their data: ``$PRIVBENCH_DATA_ROOT`` or ``~/privbench-data``."""
    return Path(os.environ.get(ENV_DATA_ROOT) or Path.home() / "privbench-data").expanduser()


def medmnist_root() -> Path:
    """Where the MedMNIST package keeps its files: ``$MEDMNIST_ROOT`` or ``~/.medmnist``."""
    return Path(os.environ.get(ENV_MEDMNIST_ROOT) or Path.home() / ".medmnist").expanduser()


@dataclass(frozen=True)
class DatasetCard:
    name: str
    title: str
    loader: str
    classes: tuple[str, ...]
    image_size: int | None = None
    channels: int | None = None
    licence: str = ""
    source: str = ""
    public: bool = False
    description: str = ""
    layout: str = ""
    sha256: tuple[str, ...] = ()
    attributes: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> str:
        """The loader spec with ``{data_root}`` filled in."""
        return self.loader.replace("{data_root}", str(data_root()))

    def availability(self) -> tuple[bool, str]:
        """Whether this card's data is on this machine, and where it is (or should be)."""
        scheme, _, rest = self.spec.partition(":")
        rest = rest.split("?", 1)[0]
        if scheme == "digits":
            return True, "embedded (scikit-learn)"
        if scheme == "medmnist":
            path = medmnist_root() / f"{rest}.npz"
            return path.is_file(), str(path)
        if scheme == "npz":
            path = Path(rest).expanduser()
            return path.is_file(), str(path)
        if scheme in ("folder", "dicom"):
            path = Path(rest).expanduser()
            return path.is_dir(), str(path)
        return False, self.spec


CARD_FIELDS = (
    Field("name", is_plain_name, PLAIN_NAME_EXPECTED, required=True),
    Field("title", is_str, "a string"),
    Field("loader", is_nonempty_str, "a loader spec such as folder:{data_root}/NAME (a string)", required=True),
    Field("classes", list_of(is_str), "a list of class names (strings)", required=True),
    Field("image_size", int_between(1), "a positive integer (pixels)"),
    Field("channels", one_of(1, 3), "1 or 3"),
    Field("licence", is_str, "a string"),
    Field("source", is_str, "a string"),
    Field("public", is_bool, "true or false"),
    Field("description", is_str, "a string"),
    Field("layout", is_str, "a string"),
    Field("sha256", one_or_list(is_str), "a SHA-256 checksum or a list of them (strings)"),
    Field("attributes", list_of(is_str), "a list of attribute names (strings)"),
    Field("options", is_table, "a table of loader options"),
)

# --------------------------------------------------------------------------- folder options

ClassMap = tuple[tuple[str, tuple[str, ...]], ...]
"""(class name, source folders) pairs, in label order."""

SPLIT_EXPECTED = 'train/test percentages such as "80/20" (two whole numbers from 1 to 99 that add up to 100)'
CLASSES_EXPECTED = ("a list of class folders, or a table from each class of the card to its source folder(s) "
                    '(e.g. { tumour = ["glioma", "pituitary"], normal = ["notumor"] })')
CLASSES_TEXT_EXPECTED = ("class folders separated by commas, each optionally CLASS:FOLDER+FOLDER to merge folders "
                         "(e.g. tumour:glioma+pituitary,normal:notumor)")
SPLIT_VAL_FRACTION = 0.1
FOLDER_ONLY = ("classes", "balance", "split")
"""Options of the tree loaders (folder and dicom)."""
DICOM_ONLY = ("labels", "id", "label", "split_column", "frames")


def parse_split(value: object) -> tuple[int, int] | None:
    """``"80/20"`` -> ``(80, 20)``; None for anything but two whole percentages adding up to 100."""
    if not isinstance(value, str):
        return None
    match = re.fullmatch(r"\s*(\d{1,2})\s*/\s*(\d{1,2})\s*", value)
    if not match:
        return None
    train, test = int(match[1]), int(match[2])
    return (train, test) if train >= 1 and test >= 1 and train + test == 100 else None


def class_map(value: list[str] | dict[str, str | list[str]], order: tuple[str, ...] | None = None) -> ClassMap:
    """A checked ``classes`` option as pairs: a list keeps each folder as its own class, a table
    merges folders into classes; in ``order`` (a card's ``classes``) where given."""
    if isinstance(value, list):
        pairs = [(name, (name,)) for name in value]
    else:
        pairs = [(name, tuple(as_list(sources))) for name, sources in value.items()]
    if order:
        rank = {name: k for k, name in enumerate(order)}
        pairs.sort(key=lambda pair: rank.get(pair[0], len(rank)))
    return tuple(pairs)


def parse_class_text(text: str) -> ClassMap:
    """``"tumour:glioma+pituitary,normal:notumor"`` (or ``"COVID,Normal"``) -> a class map."""
    pairs = []
    for item in text.split(","):
        name, colon, sources = item.partition(":")
        folders = tuple(s.strip() for s in sources.split("+")) if colon else (name.strip(),)
        if not name.strip() or not all(folders):
            raise ValueError(text)
        pairs.append((name.strip(), folders))
    return tuple(pairs)


def class_map_problem(pairs: ClassMap, order: tuple[str, ...] | None = None) -> str | None:
    """What is wrong with a class map, in words (to follow "field 'classes' "), or None."""
    names = [name for name, _ in pairs]
    if len(names) < 2:
        return f"names {len(names)} class(es); privbench needs at least two"
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        return f"names class {', '.join(map(repr, twice))} twice"
    if order is not None:
        missing = [c for c in order if c not in names]
        if missing:
            return f"has no key for the card's class(es) {', '.join(map(repr, missing))}: each class needs its source folders"
        extra = [n for n in names if n not in order]
        if extra:
            return f"names {', '.join(map(repr, extra))}, not among the card's classes ({', '.join(order)})"
    owner: dict[str, str] = {}
    for name, sources in pairs:
        if not sources:
            return f"gives class {name!r} no source folder"
        for source in sources:
            if source in owner and owner[source] != name:
                return f"puts source folder {source!r} in both {owner[source]!r} and {name!r}"
            owner[source] = name
    return None


def folder_protocol(options: dict[str, Any], where: str) -> tuple[tuple[int, int] | None, float, float]:
    """(split, val_fraction, test_fraction) from checked options, or one line on what conflicts.

    Without ``split``: val and test are fractions of the whole (70/15/15 by default).
    With it: the test part is the split's, and val is ``val_fraction`` of the train part.
    """
    split = options.get("split")
    if split is None:
        val, test = options.get("val_fraction", 0.15), options.get("test_fraction", 0.15)
        if val + test >= 1:
            raise UserError(f"{where}: val_fraction + test_fraction must be below 1, got {val + test:g}")
        return None, val, test
    if "test_fraction" in options:
        raise UserError(f"{where}: test_fraction and split = \"{split[0]}/{split[1]}\" both set the test part; give one")
    return split, options.get("val_fraction", SPLIT_VAL_FRACTION), split[1] / 100


def _is_fraction(value: Any) -> bool:
    return is_number(value) and 0 <= value < 1


OPTION_FIELDS = (
    Field("glob", is_str, "a glob pattern for the image files (a string)"),
    Field("classes", either(list_of(is_nonempty_str), table_of(one_or_list(is_nonempty_str))), CLASSES_EXPECTED),
    Field("balance", is_bool, "true or false (subsample every class to the size of the smallest)"),
    Field("split", lambda v: parse_split(v) is not None, SPLIT_EXPECTED),
    Field("val_fraction", _is_fraction, "a number in [0, 1)"),
    Field("test_fraction", _is_fraction, "a number in [0, 1)"),
    Field("labels", is_nonempty_str, "a CSV file of labels (a path, relative to the DICOM folder unless absolute)"),
    Field("id", is_nonempty_str, "the labels CSV's column of file names (a string)"),
    Field("label", is_nonempty_str, "the labels CSV's column of classes (a string)"),
    Field("split_column", is_nonempty_str, "the labels CSV's column of splits (a string)"),
    Field("frames", one_of("first", "all"), '"first" or "all" (the frames read from a multi-frame DICOM file)'),
)


def _card_options(raw: dict[str, Any], classes: tuple[str, ...], where: str) -> dict[str, Any]:
    """A card's checked ``[options]`` in the form ``load_dataset`` uses (as spec options would give)."""
    options = check_fields(raw, OPTION_FIELDS, where, allow_unknown=False)
    options = dict(options)
    if "classes" in options:
        pairs = class_map(options["classes"], classes)
        problem = class_map_problem(pairs, classes)
        if problem:
            raise UserError(f"{where}: field 'classes' {problem}")
        options["classes"] = pairs
    if "split" in options:
        options["split"] = parse_split(options["split"])
    for key in ("val_fraction", "test_fraction"):
        if key in options:
            options[key] = float(options[key])
    folder_protocol(options, where)
    return options


def _card_from_toml(path: Path) -> DatasetCard:
    where = f"dataset card {path}"
    data = check_fields(read_toml(path, "dataset card"), CARD_FIELDS, where)
    options = _card_options(data.get("options", {}), tuple(data["classes"]), f"{where}, [options]")
    return DatasetCard(
        name=data["name"],
        title=data.get("title", data["name"]),
        loader=data["loader"],
        classes=tuple(data["classes"]),
        image_size=data.get("image_size"),
        channels=data.get("channels"),
        licence=data.get("licence", ""),
        source=data.get("source", ""),
        public=data.get("public", False),
        description=data.get("description", ""),
        layout=data.get("layout", ""),
        sha256=tuple(as_list(data.get("sha256"))),
        attributes=tuple(data.get("attributes", ())),
        options=options,
    )


def load_cards(directory: Path | None = None) -> dict[str, DatasetCard]:
    directory = directory or registry_dir() / "datasets"
    cards = {}
    for path in sorted(directory.glob("*.toml")):
        card = _card_from_toml(path)
        cards[card.name] = card
    return cards


def find_card(name: str) -> DatasetCard | None:
    return load_cards().get(name)


def card_for_file(sha256: str) -> DatasetCard | None:
    """The card whose published file has this checksum (so ``npz:PATH`` inherits class names)."""
    for card in load_cards().values():
        if sha256 in card.sha256:
            return card
    return None

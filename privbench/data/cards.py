"""Dataset cards: ``registry/datasets/*.toml``, one per known dataset.

A card names the loader spec, class names, licence, source, the folder layout
it expects and whether its images are public (only then may reports show them
without an explicit flag).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privbench.registry_path import registry_dir
from privbench.schema import (
    PLAIN_NAME_EXPECTED,
    Field,
    as_list,
    check_fields,
    int_between,
    is_bool,
    is_nonempty_str,
    is_plain_name,
    is_str,
    is_table,
    list_of,
    one_of,
    one_or_list,
    read_toml,
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
        if scheme == "folder":
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
OPTION_FIELDS = (Field("glob", is_str, "a glob pattern for the image files (a string)"),)


def _card_from_toml(path: Path) -> DatasetCard:
    where = f"dataset card {path}"
    data = check_fields(read_toml(path, "dataset card"), CARD_FIELDS, where)
    check_fields(data.get("options", {}), OPTION_FIELDS, f"{where}, [options]")
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
        options=dict(data.get("options", {})),
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

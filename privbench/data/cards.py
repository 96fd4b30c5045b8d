"""Dataset cards: ``registry/datasets/*.toml``, one per known dataset.

A card names the loader spec, class names, licence, source, the folder layout
it expects and whether its images are public (only then may reports show them
without an explicit flag).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privbench.errors import UserError
from privbench.registry_path import registry_dir

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


def _card_from_toml(path: Path) -> DatasetCard:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"dataset card {path} is not valid TOML: {exc}") from exc
    try:
        sha = data.get("sha256", ())
        return DatasetCard(
            name=data["name"],
            title=data.get("title", data["name"]),
            loader=data["loader"],
            classes=tuple(data["classes"]),
            image_size=data.get("image_size"),
            channels=data.get("channels"),
            licence=data.get("licence", ""),
            source=data.get("source", ""),
            public=bool(data.get("public", False)),
            description=data.get("description", ""),
            layout=data.get("layout", ""),
            sha256=(sha,) if isinstance(sha, str) else tuple(sha),
            attributes=tuple(data.get("attributes", ())),
            options=dict(data.get("options", {})),
        )
    except KeyError as exc:
        raise UserError(f"dataset card {path} lacks the key {exc.args[0]!r}") from exc


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

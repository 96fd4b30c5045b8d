"""The files and folders a command reads, so that no output can land on one of them."""

from __future__ import annotations

from pathlib import Path


def dataset_inputs(spec: str) -> list[Path]:
    """The path a dataset spec reads (none for the embedded digits); unknown specs read nothing yet."""
    from privbench.data import SCHEMES, parse_spec
    from privbench.data.cards import find_card, medmnist_root

    scheme, target, options = parse_spec(spec)
    if scheme not in SCHEMES:
        card = find_card(scheme)
        if card is None:
            return []
        scheme, target, card_options = parse_spec(card.spec)
        options = {**card.options, **card_options, **options}
    if scheme == "dicom" and target:
        root = Path(target).expanduser()
        labels = Path(options["labels"]).expanduser() if options.get("labels") else None
        return [root] + ([labels if labels.is_absolute() else root / labels] if labels else [])
    if scheme in ("npz", "folder") and target:
        return [Path(target).expanduser()]
    if scheme == "medmnist" and target:
        return [medmnist_root() / f"{target}.npz"]
    return []


def release_inputs(release_arg: str) -> list[Path]:
    """A release directory given to ``audit``; ``original`` is the training set itself."""
    return [] if release_arg == "original" else [Path(release_arg).expanduser()]

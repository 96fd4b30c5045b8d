"""What a release may carry when it is shared, and what stays with the data holder.

A release directory holds two kinds of file. ``release.npz`` and
``release.json`` are what a hospital shares: images, labels, and how they were
made (method, ipc, config, seed, versions). ``provenance.private.json`` is the
audit's: which training images seeded or were copied into the release, where
the private data came from, and statistics a distiller computed from private
records. It identifies patients and is never to be shared.

:func:`split_manifest` is the one place that decides which is which, for the
built-in distillers and a third party's alike: keys known to identify records
or to describe the private data, and keys whose name says they hold indices,
paths or file names, go to the provenance.
"""

from __future__ import annotations

from typing import Any

from privbench.schema import Field, check_fields, int_between, is_str, list_of, nullable

PROVENANCE_FILE = "provenance.private.json"
NOTICE = ("PRIVATE: this file identifies patients (indices of training images in the release) and describes the "
          "private data set. Keep it with the data holder; never share it with the release.")

PRIVATE_KEYS = frozenset({
    "init_indices",  # training images a distiller started from
    "source_indices",  # training images copied into the release
    "loss_history",  # a statistic of the private images at every iteration
    "loss_history_every",
    "loss_definition",
    "source_dataset",  # a dataset's name may be a folder or file name
    "source_spec",  # a path on the data holder's machine
    "source_fingerprint",  # a digest of every private image
    "warnings",  # may quote file names
    "ddpm",  # the diffusion model's training facts, losses on private images included
    "refinement",  # DDM's final DM loss against the real class means
})
PRIVATE_NAME_PARTS = ("index", "indices", "path", "file", "patient")


INDICES = "a list of non-negative training-image indices"
PROVENANCE_FIELDS = (
    Field("notice", is_str, "a string"),
    Field("init_indices", nullable(list_of(int_between(0))), INDICES),
    Field("source_indices", nullable(list_of(int_between(0))), INDICES),
    Field("source_dataset", nullable(is_str), "a string (the source dataset's name)"),
    Field("source_spec", nullable(is_str), "a string (the source dataset's spec)"),
    Field("source_fingerprint", nullable(is_str), "a string (the source dataset's fingerprint)"),
    Field("training_images", nullable(int_between(0)), "a non-negative integer"),
    Field("warnings", nullable(list_of(is_str)), "a list of strings"),
)
"""The provenance fields privbench reads back; a distiller's own keys are kept unchecked."""


def check_provenance(data: Any, where: str) -> dict[str, Any]:
    """``data`` if its fields have the types privbench relies on; else one :class:`UserError` line."""
    return check_fields(data, PROVENANCE_FIELDS, where, expected="a JSON object")


def is_private_key(key: str) -> bool:
    """True for a manifest key that identifies records or describes the private data."""
    lowered = key.lower()
    return key in PRIVATE_KEYS or any(part in lowered for part in PRIVATE_NAME_PARTS)


def split_manifest(manifest: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(shareable, private)``: the manifest without its private keys, and those keys."""
    shareable = {k: v for k, v in manifest.items() if not is_private_key(k)}
    private = {k: v for k, v in manifest.items() if is_private_key(k)}
    return shareable, private


def member_indices(provenance: dict[str, Any] | None) -> list[int]:
    """Training-split indices of the members that seeded or were copied into the release (sorted, unique)."""
    if not provenance:
        return []
    found: set[int] = set()
    for key in ("init_indices", "source_indices"):
        values = provenance.get(key) or []
        found.update(int(v) for v in values)
    return sorted(found)

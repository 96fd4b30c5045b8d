"""Reading and writing a release directory.

``release.npz`` (images and labels, no pickle) and ``release.json`` (how it was
made) are what is shared; ``provenance.private.json`` (which patients seeded it,
where the data came from) stays with the data holder: see
:mod:`privbench.provenance`.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from privbench.api import Release
from privbench.config import json_safe
from privbench.data.npz import array_headers
from privbench.errors import UserError
from privbench.provenance import NOTICE, PROVENANCE_FILE, check_provenance, split_manifest
from privbench.schema import (
    INT64_MAX,
    Field,
    check_fields,
    int_between,
    is_nonempty_str,
    is_number,
    is_str,
    is_table,
    list_of,
    nullable,
    read_json,
    require_table,
)

IMAGES_FILE = "release.npz"
MANIFEST_FILE = "release.json"

MANIFEST_FIELDS = (
    Field("method", is_nonempty_str, "the name of the distiller that made the release (a string)"),
    Field("ipc", nullable(int_between(1)), "a positive number of images per class, or null"),
    Field("images", nullable(int_between(0)), "a non-negative integer"),
    Field("image_shape", nullable(list_of(int_between(1))), "a list of positive integers (C, H, W)"),
    Field("class_names", nullable(list_of(is_str)), "a list of strings"),
    Field("config", nullable(is_table), "an object of distiller options"),
    Field("seed", nullable(int_between(-INT64_MAX - 1, INT64_MAX)), "an integer (a 64-bit seed), or null"),
    Field("plugin_package", nullable(is_str), "a string"),
    Field("plugin_version", nullable(is_str), "a string"),
    Field("versions", nullable(is_table), "an object of package versions"),
    Field("wall_time_s", nullable(is_number), "a number of seconds"),
    Field("device", nullable(is_str), "a string"),
    Field("created_at", nullable(is_str), "a string (a date and time)"),
)
"""What ``run_distiller`` writes to ``release.json`` and privbench reads back; other keys are kept unchecked."""


def check_manifest(manifest: Any, where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A release manifest checked field by field, split into ``(shareable, private)``.

    A release written before provenance had its own file keeps private keys in
    its manifest; they are checked as provenance fields.
    """
    manifest = require_table(manifest, where, "a JSON object")
    if "method" not in manifest:
        raise UserError(f"{where} is not a privbench release manifest (no 'method')")
    check_fields(manifest, MANIFEST_FIELDS, where)
    shareable, private = split_manifest(manifest)
    check_provenance(private, where)
    return shareable, private


def save_release(release: Release, directory: Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    images = release.images.detach().to("cpu", torch.float32).contiguous().numpy()
    labels = release.labels.detach().to("cpu", torch.int64).contiguous().numpy()
    shareable, private = split_manifest(release.manifest)
    with open(directory / IMAGES_FILE, "wb") as fh:
        np.savez_compressed(fh, images=images, labels=labels)
    (directory / MANIFEST_FILE).write_text(
        json.dumps(json_safe(shareable), indent=2, sort_keys=True, default=str) + "\n")
    if release.provenance is not None or private:
        provenance = {"notice": NOTICE, **private, **(release.provenance or {})}
        (directory / PROVENANCE_FILE).write_text(
            json.dumps(json_safe(provenance), indent=2, sort_keys=True, default=str) + "\n")


def load_release(directory: Path) -> Release:
    """Load and validate a release directory; every problem is one :class:`UserError` line."""
    directory = Path(directory).expanduser()
    if not directory.exists():
        raise UserError(f"no such release directory: {directory}")
    if not directory.is_dir():
        raise UserError(f"{directory} is not a release directory (expected a folder with {IMAGES_FILE} and {MANIFEST_FILE})")
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise UserError(f"release directory {directory} has no {MANIFEST_FILE} manifest")
    shareable, private = check_manifest(read_json(manifest_path, "release manifest"), str(manifest_path))
    images_path = directory / IMAGES_FILE
    if not images_path.is_file():
        raise UserError(f"release directory {directory} has no {IMAGES_FILE}")
    try:
        array_headers(images_path, ("images", "labels"))  # refuses a huge or non-array member before reading it
        with np.load(images_path, allow_pickle=False) as archive:
            if not {"images", "labels"} <= set(archive.files):
                raise UserError(f"{images_path} must hold 'images' and 'labels'; found {', '.join(archive.files)}")
            images = archive["images"]
            labels = archive["labels"]
    except UserError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise UserError(f"{images_path} is not a readable release (corrupt, truncated or needs pickle): {exc}") from exc
    if images.ndim >= 1 and images.shape[0] == 0:
        raise UserError(f"{images_path} holds no images, so there is nothing to audit")
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise UserError(f"{images_path}: images have shape {images.shape}; expected N x C x H x W with C = 1 or 3")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise UserError(f"{images_path}: {images.shape[0]} images but labels of shape {labels.shape}")
    if not np.issubdtype(images.dtype, np.floating) or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{images_path}: images must be float and labels integer")
    images = images.astype(np.float32)
    if np.isnan(images).any():
        raise UserError(f"{images_path}: images contain NaN pixels")
    if images.size and (images.min() < 0 or images.max() > 1):
        raise UserError(f"{images_path}: pixel values outside [0, 1]")
    provenance = _load_provenance(directory)
    if private:
        provenance = {**private, **(provenance or {})}
    return Release(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)), shareable, provenance)


def _load_provenance(directory: Path) -> dict | None:
    """The private provenance beside a release, checked where it is read; ``None`` when there is none."""
    path = directory / PROVENANCE_FILE
    if not path.exists():
        return None
    data = dict(check_provenance(read_json(path, "release provenance"), str(path)))
    data.pop("notice", None)
    return data

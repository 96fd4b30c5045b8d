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

import numpy as np
import torch

from privbench.api import Release
from privbench.errors import UserError
from privbench.provenance import NOTICE, PROVENANCE_FILE, split_manifest

IMAGES_FILE = "release.npz"
MANIFEST_FILE = "release.json"


def save_release(release: Release, directory: Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    images = release.images.detach().to("cpu", torch.float32).contiguous().numpy()
    labels = release.labels.detach().to("cpu", torch.int64).contiguous().numpy()
    shareable, private = split_manifest(release.manifest)
    with open(directory / IMAGES_FILE, "wb") as fh:
        np.savez_compressed(fh, images=images, labels=labels)
    (directory / MANIFEST_FILE).write_text(json.dumps(shareable, indent=2, sort_keys=True, default=str) + "\n")
    if release.provenance is not None or private:
        provenance = {"notice": NOTICE, **private, **(release.provenance or {})}
        (directory / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, sort_keys=True, default=str) + "\n")


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
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{manifest_path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or "method" not in manifest:
        raise UserError(f"{manifest_path} is not a privbench release manifest (no 'method')")
    images_path = directory / IMAGES_FILE
    if not images_path.is_file():
        raise UserError(f"release directory {directory} has no {IMAGES_FILE}")
    try:
        with np.load(images_path, allow_pickle=False) as archive:
            if not {"images", "labels"} <= set(archive.files):
                raise UserError(f"{images_path} must hold 'images' and 'labels'; found {', '.join(archive.files)}")
            images = archive["images"]
            labels = archive["labels"]
    except UserError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise UserError(f"{images_path} is not a readable release (corrupt, truncated or needs pickle): {exc}") from exc
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
    shareable, private = split_manifest(manifest)  # a release written before provenance had its own file
    provenance = _load_provenance(directory)
    if private:
        provenance = {**private, **(provenance or {})}
    return Release(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)), shareable, provenance)


def _load_provenance(directory: Path) -> dict | None:
    """The private provenance beside a release, checked where it is read; ``None`` when there is none."""
    path = directory / PROVENANCE_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a JSON object")
    for key in ("init_indices", "source_indices"):
        values = data.get(key)
        if values is None:
            continue
        if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                   for v in values):
            raise UserError(f"{path}: {key} must be a list of non-negative training-image indices")
    data.pop("notice", None)
    return data

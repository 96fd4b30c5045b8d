"""On-disk cache of trained ``ddm`` diffusion models.

Training the DDPM is the expensive part of ``ddm`` and does not depend on ipc,
so releases at ipc 1, 10 and 50 of one private set share one model. The key is
the content of the training set (pixels and labels, nothing else), the
diffusion settings, the class count and the seed. The file is a plain state
dict read with ``torch.load(..., weights_only=True)`` (never pickle), plus a
sha256 over every tensor's bytes: a file that is truncated, unreadable, of
another shape or whose digest disagrees is reported as damaged and the model
is retrained and the file rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = 1
"""Bumped whenever the file layout or the training procedure changes meaning."""


def train_fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    """sha256 of the private training images (float32) and labels (int64), shapes included."""
    h = hashlib.sha256()
    h.update(repr(tuple(images.shape)).encode())
    h.update(np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(labels.detach().cpu().numpy(), dtype=np.int64).tobytes())
    return h.hexdigest()


def cache_key(fingerprint: str, settings: dict[str, Any], num_classes: int, seed: int) -> str:
    """A short hex key for one (training set, diffusion settings, classes, seed) combination."""
    text = json.dumps(
        {"format": FORMAT, "data": fingerprint, "settings": settings, "classes": num_classes, "seed": int(seed)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the names, shapes, dtypes and bytes of every tensor of a state dict."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save(path: Path, state: dict[str, torch.Tensor], final_loss: float, key: str) -> None:
    """Write atomically (temporary file, then rename) so a crash never leaves half a model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cpu_state = {k: v.detach().cpu().clone() for k, v in state.items()}
    payload = {
        "format": FORMAT,
        "key": key,
        "final_loss": float(final_loss),
        "digest": state_digest(cpu_state),
        "state_dict": cpu_state,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load(path: Path, expected: dict[str, torch.Tensor], key: str) -> tuple[dict[str, torch.Tensor], float] | str:
    """The cached state dict and final loss, or a one-line reason why the file cannot be trusted.

    ``expected`` is the freshly built model's state dict: names and shapes
    must match it exactly.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is simply retrained
        return f"unreadable ({type(exc).__name__})"
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or payload.get("key") != key:
        return "not a diffusion-model cache file of this version"
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return "holds no state dict"
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
        return "its tensors do not fit the model"
    if payload.get("digest") != state_digest(state):
        return "its checksum does not match its contents"
    if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
        return "holds non-finite weights"
    loss = payload.get("final_loss")
    return state, float(loss) if isinstance(loss, (int, float)) else float("nan")

"""Limits on what input may make privbench allocate, checked before the allocation.

A data file declares its own sizes: an ``.npy`` header its shape, a PNG header
its width and height, a label its number of classes, an option its image size
and ipc. Each declaration is checked here first, so that a small hostile or
damaged file is refused in one line instead of exhausting memory. Defaults are
generous for real data; each can be raised (or lowered) in the environment:

``PRIVBENCH_MAX_BYTES``       the most bytes one input or result may take
                              (default 32G; ``K``/``M``/``G``/``T`` suffixes are
                              powers of 1024). Never more than the memory
                              available on the machine, whatever it is set to.
``PRIVBENCH_MAX_CLASSES``     the most classes a dataset may have (default 10000)
``PRIVBENCH_MAX_IMAGE_SIDE``  the longest side, in pixels, of an image file to
                              decode (default 8192)
``PRIVBENCH_MAX_SIZE``        the largest ``?size=`` a dataset may be resized
                              to (default 2048; the smallest is always 4)
"""

from __future__ import annotations

import math
import os
from typing import Iterable

from privbench.errors import UserError

ENV_MAX_BYTES = "PRIVBENCH_MAX_BYTES"
ENV_MAX_CLASSES = "PRIVBENCH_MAX_CLASSES"
ENV_MAX_IMAGE_SIDE = "PRIVBENCH_MAX_IMAGE_SIDE"
ENV_MAX_SIZE = "PRIVBENCH_MAX_SIZE"

DEFAULT_MAX_BYTES = 32 << 30
DEFAULT_MAX_CLASSES = 10_000
DEFAULT_MAX_IMAGE_SIDE = 8192
DEFAULT_MAX_SIZE = 2048
MIN_SIZE = 4
MAX_SEED = 2**63 - 1

_SUFFIXES = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _env_int(name: str, default: int, suffixes: bool = False) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    text = raw.lower().removesuffix("ib").removesuffix("b") if suffixes else raw
    unit = 1
    if suffixes and text and text[-1] in _SUFFIXES:
        unit, text = _SUFFIXES[text[-1]], text[:-1]
    try:
        value = int(text.strip()) * unit
    except ValueError:
        value = 0
    if value < 1:
        hint = " (bytes, or with a K, M, G or T suffix)" if suffixes else ""
        raise UserError(f"{name} must be a positive whole number{hint}, got {raw!r}")
    return value


def max_bytes() -> int:
    return _env_int(ENV_MAX_BYTES, DEFAULT_MAX_BYTES, suffixes=True)


def max_classes() -> int:
    return _env_int(ENV_MAX_CLASSES, DEFAULT_MAX_CLASSES)


def max_image_side() -> int:
    return _env_int(ENV_MAX_IMAGE_SIDE, DEFAULT_MAX_IMAGE_SIDE)


def max_size() -> int:
    return _env_int(ENV_MAX_SIZE, DEFAULT_MAX_SIZE)


def available_memory() -> int | None:
    """Bytes the machine can still hand out (``MemAvailable``), or ``None`` where it cannot say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def fmt_bytes(n: int) -> str:
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def shape_bytes(shape: Iterable[int], itemsize: int = 4) -> int:
    """Bytes of an array of this shape, in exact integer arithmetic (no overflow)."""
    return math.prod(int(d) for d in shape) * int(itemsize)


def check_bytes(nbytes: int, what: str) -> None:
    """Refuse ``what`` (it would take ``nbytes``) above the limit or above the memory available."""
    limit = max_bytes()
    if nbytes > limit:
        raise UserError(
            f"{what} would take {fmt_bytes(nbytes)}, more than the limit of {fmt_bytes(limit)}; "
            f"set {ENV_MAX_BYTES} higher to allow it"
        )
    available = available_memory()
    if available is not None and nbytes > available:
        raise UserError(
            f"{what} would take {fmt_bytes(nbytes)}, but only {fmt_bytes(available)} of memory is available here"
        )


def check_classes(num_classes: int, what: str) -> None:
    limit = max_classes()
    if num_classes > limit:
        raise UserError(
            f"{what}: {num_classes} classes, more than the limit of {limit}; set {ENV_MAX_CLASSES} higher to allow it"
        )


def check_image_side(width: int, height: int, what: str) -> None:
    limit = max_image_side()
    if width > limit or height > limit:
        raise UserError(
            f"{what} is {width} x {height} pixels, larger than the limit of {limit} pixels a side; "
            f"set {ENV_MAX_IMAGE_SIDE} higher to allow it"
        )


def check_size(size: int, what: str = "dataset option size") -> None:
    """A square side to resize to: at least 4 pixels, at most the limit."""
    limit = max_size()
    if size < MIN_SIZE or size > limit:
        hint = f"; set {ENV_MAX_SIZE} higher to allow more" if size > limit else ""
        raise UserError(f"{what} must lie in {MIN_SIZE}..{limit} pixels, got {size}{hint}")


def check_seed(seed: int, what: str = "seed") -> None:
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"{what} must be a whole number in 0..{MAX_SEED}, got {seed}")


def check_release_fits(ipc: int | None, num_classes: int, image_shape: Iterable[int], what: str = "") -> None:
    """A release of ``ipc`` images per class in float32, refused before any distiller allocates it."""
    if ipc is None or ipc < 1:
        return
    nbytes = shape_bytes((ipc, num_classes, *image_shape))
    check_bytes(nbytes, what or f"a release of ipc {ipc} ({ipc * num_classes} images of {' x '.join(map(str, image_shape))})")

"""Decoded images of a file list, cached as ``.npy`` under the cache directory.

An entry is keyed by what decoding depends on (options) and by every file's
resolved path, size and modification time, so an edited or replaced file is
decoded again. The key is a hash: the cache names no file, and holds arrays
only (read back with ``allow_pickle=False``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from privbench.errors import UserError
from privbench.imaging import printable


def file_list_key(files: list[Path], options: tuple, what: str = "image") -> str:
    """A hash of ``options`` and each file's path, size and modification time."""
    key = hashlib.sha256(repr(options).encode())
    for f in files:
        try:
            st = f.stat()
        except OSError as exc:
            raise UserError(f"cannot read {what} {printable(f)}: {exc.strerror or exc}") from exc
        key.update(os.fsencode(f.resolve()) + f"|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return key.hexdigest()[:24]


def load_cached(cache_file: Path | None, fits: Callable[[np.ndarray], bool]) -> np.ndarray | None:
    """The cached array if there is one and ``fits`` it; a damaged entry counts as none."""
    if cache_file is None or not cache_file.is_file():
        return None
    try:
        arr = np.load(cache_file, allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return None
    return arr if fits(arr) else None


def store_cached(cache_file: Path | None, arr: np.ndarray) -> None:
    """Write atomically (a reader sees the whole entry or none); a read-only cache is fine."""
    if cache_file is None:
        return
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, arr, allow_pickle=False)
        os.replace(tmp, cache_file)
    except OSError:
        pass  # caching is an optimisation


def store_rows(cache_file: Path, shape: tuple[int, ...], chunks: Iterable[np.ndarray]) -> None:
    """Write a uint8 array of ``shape`` chunk by chunk (never whole in memory), atomically.

    Unlike :func:`store_cached` this is no optimisation: the file is where a
    streamed dataset lives, so a failure to write it is the caller's error.
    """
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(f".tmp{os.getpid()}.npy")
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
              "shape": tuple(int(s) for s in shape)}
    written = 0
    try:
        with open(tmp, "wb") as fh:
            np.lib.format.write_array_header_2_0(fh, header)
            for chunk in chunks:
                chunk = np.ascontiguousarray(chunk, dtype=np.uint8)
                fh.write(chunk.tobytes())
                written += chunk.shape[0]
        if written != shape[0]:
            raise OSError(f"{written} of {shape[0]} images written")
        os.replace(tmp, cache_file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

"""Images that stay on disk: a uint8 ``.npy`` file read row by row, for datasets larger than memory.

An :class:`ImageStore` stands where a split's float32 ``N x C x H x W``
tensor stands. Indexing it (``store[i]``, ``store[a:b]``, ``store[index]``)
reads only those rows, with ``os.pread`` rather than a memory map, so the
pages read are the kernel's cache and never the process's resident memory,
and converts them exactly as the in-memory loader does (``uint8 / 255`` in
float32): a batch drawn from a store equals the batch drawn from the tensor.
:meth:`take` and :func:`concat_images` make views without reading anything.

The hot paths (DM's and GM's real batches, image statistics, the utility's
predictions, the audit population) read stores batch by batch. Anything else
(a torch function given a store, a tensor method it lacks) gets the whole
tensor, read for that call: correct, but as large as the data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from privbench.errors import UserError
from privbench.imaging import printable

READ_BYTES = 64 << 20
"""Bytes of float32 images one chunk of a pass over a store holds."""


def open_npy_rows(path: Path, shape: tuple[int, ...] | None = None) -> tuple[tuple[int, ...], int]:
    """The shape and data offset of a C-ordered uint8 ``.npy`` file, checked against its size (and ``shape``)."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            found, fortran, dtype = read(fh)
            offset = fh.tell()
        size = os.path.getsize(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"image store {printable(path)} cannot be read: {exc}") from exc
    if dtype != np.uint8 or fortran or len(found) != 4:
        raise UserError(f"image store {printable(path)} is not a C-ordered uint8 N x C x H x W array")
    if shape is not None and tuple(found) != tuple(shape):
        raise UserError(f"image store {printable(path)} holds {found}, expected {tuple(shape)}")
    if size != offset + int(np.prod(found)):
        raise UserError(f"image store {printable(path)} is {size} bytes, its header says {offset + int(np.prod(found))}")
    return tuple(int(s) for s in found), offset


class ImageStore:
    """A float32 view in [0, 1] of rows of one or more uint8 ``.npy`` files (see the module's docstring)."""

    dtype = torch.float32
    device = torch.device("cpu")
    ndim = 4

    def __init__(self, files: Sequence[tuple[str, int]], image_shape: tuple[int, int, int], rows: np.ndarray):
        self._files = tuple((str(p), int(o)) for p, o in files)
        self._image_shape = tuple(int(s) for s in image_shape)
        self._rows = np.asarray(rows, dtype=np.int64).reshape(-1, 2)  # (file, row in that file) per image

    @classmethod
    def open(cls, path: Path, shape: tuple[int, ...] | None = None) -> "ImageStore":
        found, offset = open_npy_rows(Path(path), shape)
        rows = np.stack([np.zeros(found[0], np.int64), np.arange(found[0], dtype=np.int64)], axis=1)
        return cls([(str(path), offset)], found[1:], rows)

    # ------------------------------------------------------------------ what a tensor says of itself
    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self._image_shape))

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def __len__(self) -> int:
        return int(self._rows.shape[0])

    def element_size(self) -> int:
        return 4

    def nelement(self) -> int:
        return int(np.prod(self.shape))

    numel = nelement

    def dim(self) -> int:
        return 4

    def __repr__(self) -> str:
        return f"ImageStore({len(self)} x {self._image_shape} from {len(self._files)} file(s))"

    # ------------------------------------------------------------------ reading
    def _read(self, rows: np.ndarray) -> torch.Tensor:
        row_bytes = int(np.prod(self._image_shape))
        out = np.empty((rows.shape[0], *self._image_shape), dtype=np.uint8)
        flat = out.reshape(rows.shape[0], row_bytes)
        for f, (path, offset) in enumerate(self._files):
            mine = np.flatnonzero(rows[:, 0] == f)
            if not mine.size:
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                wanted = rows[mine, 1]
                order = np.argsort(wanted, kind="stable")
                start = 0
                while start < order.size:  # one read per run of consecutive rows
                    stop = start + 1
                    while stop < order.size and wanted[order[stop]] == wanted[order[stop - 1]] + 1 \
                            and mine[order[stop]] == mine[order[stop - 1]] + 1:
                        stop += 1
                    first = int(wanted[order[start]])
                    target = flat[mine[order[start]] : mine[order[start]] + (stop - start)]
                    if os.preadv(fd, [memoryview(target)], offset + first * row_bytes) != target.nbytes:
                        raise UserError(f"image store {printable(path)} ended early (changed while in use?)")
                    start = stop
            finally:
                os.close(fd)
        return torch.from_numpy(out).float().div_(255.0)

    def _select(self, index: Any) -> np.ndarray:
        if isinstance(index, torch.Tensor):
            index = index.detach().cpu().numpy()
        if isinstance(index, slice):
            return self._rows[index]
        index = np.asarray(index)
        if index.dtype == bool:
            if index.shape != (len(self),):
                raise IndexError(f"a mask of {index.shape} for {len(self)} images")
            return self._rows[index]
        return self._rows[index.astype(np.int64).reshape(-1)]

    def __getitem__(self, index: Any) -> torch.Tensor:
        rest: tuple = ()
        if isinstance(index, tuple):
            index, rest = index[0], index[1:]
        if isinstance(index, (int, np.integer)) or (isinstance(index, torch.Tensor) and index.ndim == 0):
            i = int(index)
            if not -len(self) <= i < len(self):
                raise IndexError(f"image {i} of {len(self)}")
            x = self._read(self._rows[i : i + 1] if i >= 0 else self._rows[[i]])[0]
        else:
            x = self._read(self._select(index))
        return x[rest] if rest else x

    def take(self, index: Any) -> "ImageStore":
        """The images at ``index`` (long indices or a mask) as a store: nothing is read."""
        return ImageStore(self._files, self._image_shape, self._select(index))

    def chunks(self, nbytes: int = READ_BYTES) -> Iterator[torch.Tensor]:
        """Consecutive float32 chunks of about ``nbytes`` each, in order."""
        step = max(1, nbytes // max(1, 4 * int(np.prod(self._image_shape))))
        for start in range(0, len(self), step):
            yield self[start : start + step]

    def materialise(self) -> torch.Tensor:
        """Every image as one float32 tensor (as large as the data)."""
        out = torch.empty(self.shape, dtype=torch.float32)
        start = 0
        for chunk in self.chunks():
            out[start : start + chunk.shape[0]] = chunk
            start += chunk.shape[0]
        return out

    # ------------------------------------------------------------------ anything else: the whole tensor
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return func(*_whole(args), **_whole(kwargs or {}))

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.materialise(), name)

    def __array__(self, dtype=None, copy=None):
        arr = self.materialise().numpy()
        return arr if dtype is None else arr.astype(dtype)


def _whole(value: Any) -> Any:
    if isinstance(value, ImageStore):
        return value.materialise()
    if isinstance(value, (list, tuple)):
        return type(value)(_whole(v) for v in value)
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    return value


def is_streamed(images: Any) -> bool:
    """True for images an :class:`ImageStore` reads from disk."""
    return isinstance(images, ImageStore)


def take_images(images: Any, index: Any):
    """``images[index]``, as a store (nothing read) when ``images`` is one."""
    return images.take(index) if isinstance(images, ImageStore) else images[index]


def concat_images(parts: Sequence[Any]):
    """The image sets one after another: a store when every part is one, else one tensor."""
    if parts and all(isinstance(p, ImageStore) for p in parts):
        shapes = {p._image_shape for p in parts}
        if len(shapes) == 1:
            files: list[tuple[str, int]] = []
            rows = []
            for p in parts:
                remap = []
                for f in p._files:
                    if f not in files:
                        files.append(f)
                    remap.append(files.index(f))
                r = p._rows.copy()
                r[:, 0] = np.asarray(remap, dtype=np.int64)[r[:, 0]] if len(r) else r[:, 0]
                rows.append(r)
            return ImageStore(files, parts[0]._image_shape, np.concatenate(rows))
    return torch.cat([p.materialise() if isinstance(p, ImageStore) else p for p in parts])


def image_chunks(images: Any, nbytes: int = READ_BYTES) -> Iterator[torch.Tensor]:
    """A store's chunks, or a tensor's rows in chunks of about ``nbytes``."""
    if isinstance(images, ImageStore):
        yield from images.chunks(nbytes)
        return
    per = max(1, images[0].numel() * images.element_size()) if len(images) else 1
    step = max(1, nbytes // per)
    for start in range(0, images.shape[0], step):
        yield images[start : start + step]


def hash_images(h, images: Any) -> None:
    """Feed the float32 bytes of ``images`` to hash ``h``, chunk by chunk (the same digest for a store and its tensor)."""
    for chunk in image_chunks(images):
        h.update(np.ascontiguousarray(chunk.detach().cpu().numpy(), dtype=np.float32).tobytes())

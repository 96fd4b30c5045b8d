"""One DICOM file's pixels as display images in ``[0, 1]``, and nothing else from it.

Each file is read with pydicom asking for the image-pixel, modality-LUT and VOI-LUT
tags only (:data:`PIXEL_TAGS`): the patient's name, IDs, birth date, accession
number, UIDs, dates, private tags and every other element of the header are
skipped unread, so no header value can reach a dataset, a release or a report.

For each frame, in this order:

1. the modality LUT (``ModalityLUTSequence``, else rescale slope and intercept),
2. the VOI LUT (``VOILUTSequence``, else the first window centre and width), both
   by pydicom's own ``apply_modality_lut`` and ``apply_voi_lut``,
3. scaling to ``[0, 1]``: from the VOI output range (the window's or the LUT's,
   not the image's) when there is a VOI transform, else from the frame's own
   minimum and maximum,
4. ``MONOCHROME1`` inverted (``1 - x``), so that high is bright in every image.

Colour files (RGB, YBR converted to RGB by pydicom) have no LUTs: each sample is
divided by ``2**BitsStored - 1``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from privbench.errors import UserError
from privbench.imaging import printable
from privbench.limits import check_bytes, check_image_side, shape_bytes

SHAPE_TAGS = ["Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "PhotometricInterpretation"]
PIXEL_TAGS = SHAPE_TAGS + [
    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "PlanarConfiguration",
    "RescaleSlope", "RescaleIntercept", "RescaleType", "ModalityLUTSequence",
    "VOILUTSequence", "WindowCenter", "WindowWidth", "VOILUTFunction",
    # Enhanced multi-frame objects keep rescale and window per frame here; read only to refuse them.
    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
    "ExtendedOffsetTable", "ExtendedOffsetTableLengths", "PixelData",
]
"""Every tag privbench asks pydicom for (pydicom adds SpecificCharacterSet to read text)."""
GREY = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")
FRAMES = ("first", "all")
FRAME_TRANSFORMS = ("PixelValueTransformationSequence", "FrameVOILUTSequence")


def _name(path: Path) -> str:
    return f"DICOM file {printable(path)}"


def read_header(path: Path, tags: list[str], *, pixels: bool):
    """The file's ``tags`` (without the pixel data unless ``pixels``); one line if it is no DICOM file."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, specific_tags=tags, stop_before_pixels=not pixels)
    except InvalidDicomError as exc:
        raise UserError(f"{_name(path)} is not a DICOM file (no 'DICM' marker after a 128-byte preamble, "
                        f"or no file meta information)") from exc
    except OSError as exc:
        raise UserError(f"cannot read {_name(path)}: {exc.strerror or exc}") from exc
    except Exception as exc:  # pydicom's parser raises many kinds on a damaged file
        raise UserError(f"cannot read {_name(path)}: {printable(str(exc)) or type(exc).__name__}") from exc


def _int(ds, keyword: str, default: int, path: Path) -> int:
    value = ds.get(keyword, default)
    try:
        return int(value if value not in (None, "") else default)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{_name(path)} declares {keyword} {printable(str(value))!r}, not a whole number") from exc


def declared(path: Path, ds=None) -> tuple[int, int, int, int]:
    """(frames, rows, columns, samples) the header declares, checked against the limits unread."""
    ds = ds if ds is not None else read_header(path, SHAPE_TAGS, pixels=False)
    rows, cols = _int(ds, "Rows", 0, path), _int(ds, "Columns", 0, path)
    frames, samples = max(1, _int(ds, "NumberOfFrames", 1, path)), _int(ds, "SamplesPerPixel", 1, path)
    if rows < 1 or cols < 1:
        raise UserError(f"{_name(path)} declares an image of {rows} x {cols} pixels (Rows x Columns); it holds no image")
    if samples not in (1, 3):
        raise UserError(f"{_name(path)} has {samples} samples per pixel; privbench reads 1 (grey) or 3 (colour)")
    check_image_side(cols, rows, _name(path))
    return frames, rows, cols, samples


def declared_channels(path: Path) -> int:
    """1 or 3, from the header alone."""
    return declared(path)[3]


def _refuse_frame_transforms(ds, path: Path) -> None:
    """Rescale or window per frame is not what pydicom's LUT functions apply: refuse rather than guess."""
    for keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for item in ds.get(keyword) or []:
            found = [k for k in FRAME_TRANSFORMS if k in item]
            if found:
                raise UserError(f"{_name(path)} is an enhanced multi-frame object whose {found[0]} sets rescale or "
                                f"window per frame; privbench does not read those: export it as single-frame images")


def _probe_range(ds, index: int = 0) -> tuple[float, float] | None:
    """The output range of the VOI transform pydicom applies (``apply_voi_lut``), or None without one.

    Found by passing the transform's whole input domain through pydicom itself: a LUT's every
    entry, or for a window two values far outside it (which land on its two ends).
    """
    from pydicom.pixels import apply_voi_lut

    if ds.get("VOILUTSequence"):
        descriptor = [int(v) for v in ds.VOILUTSequence[index].LUTDescriptor]
        entries = descriptor[0] or 65536
        probe = np.arange(descriptor[1], descriptor[1] + entries, dtype=np.int64)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        center = ds["WindowCenter"].value
        width = ds["WindowWidth"].value
        center = float(center[index] if ds["WindowCenter"].VM > 1 else center)
        width = float(width[index] if ds["WindowWidth"].VM > 1 else width)
        reach = abs(center) + 1e3 * max(abs(width), 1.0) + 1.0
        probe = np.array([center - reach, center + reach], dtype=np.float64)
    else:
        return None
    with np.errstate(over="ignore"):  # a sigmoid window's exp() at its far ends
        out = np.asarray(apply_voi_lut(probe, ds, index=index), dtype=np.float64)
    return float(out.min()), float(out.max())


def _unit(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if not hi > lo:
        return np.zeros(values.shape, dtype=np.float64)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)


def display_frame(frame: np.ndarray, ds) -> np.ndarray:
    """A grey frame through the modality LUT, the VOI LUT, scaling and MONOCHROME1 inversion."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    modality = apply_modality_lut(frame, ds)  # integers stay integers: a VOI LUT indexes by them
    with np.errstate(over="ignore"):
        voi = np.asarray(apply_voi_lut(modality, ds, index=0), dtype=np.float64)
    bounds = _probe_range(ds)
    if bounds is None:
        bounds = (float(voi.min()), float(voi.max())) if voi.size else (0.0, 0.0)
    out = _unit(voi, *bounds)
    if str(ds.PhotometricInterpretation).strip().upper() == "MONOCHROME1":
        out = 1.0 - out
    return out


def dicom_images(path: Path, frames: str = "first") -> np.ndarray:
    """The file's images in ``[0, 1]`` at their native size: float64, K x H x W (grey) or K x H x W x 3.

    ``frames``: ``first`` (one image per file) or ``all`` (each frame an image).
    """
    if frames not in FRAMES:
        raise UserError(f"dataset option frames must be first or all, got {frames!r}")
    ds = read_header(path, PIXEL_TAGS, pixels=True)
    if "PixelData" not in ds:
        raise UserError(f"{_name(path)} has no pixel data (a DICOM object without an image, such as a report)")
    count, rows, cols, samples = declared(path, ds)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in GREY + COLOUR:
        raise UserError(f"{_name(path)} has photometric interpretation {printable(photometric) or 'none'}; privbench "
                        f"reads {', '.join(GREY + COLOUR)}")
    if (photometric in GREY) != (samples == 1):
        raise UserError(f"{_name(path)} is {photometric} with {samples} samples per pixel")
    _refuse_frame_transforms(ds, path)
    kept = count if frames == "all" else 1
    check_bytes(shape_bytes((kept, rows, cols, samples), 8), f"{_name(path)}: {kept} frame(s) of {rows} x {cols}")
    from pydicom.pixels import pixel_array

    try:
        arr = pixel_array(ds, index=None if frames == "all" and count > 1 else 0)
    except Exception as exc:  # a missing decoder, truncated or inconsistent pixel data
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        about = f" (transfer syntax {syntax.name})" if syntax is not None else ""
        raise UserError(f"cannot decode the pixels of {_name(path)}{about}: {printable(str(exc)) or type(exc).__name__}") from exc
    arr = np.asarray(arr)
    grey = samples == 1
    if arr.ndim == (2 if grey else 3):
        arr = arr[None]
    if arr.shape[1:3] != (rows, cols):
        raise UserError(f"{_name(path)}: decoded pixels are {arr.shape[1]} x {arr.shape[2]}, the header says {rows} x {cols}")
    if not grey:
        bits = _int(ds, "BitsStored", 8, path)
        return np.clip(arr.astype(np.float64) / float(2 ** bits - 1), 0.0, 1.0)
    try:
        return np.stack([display_frame(frame, ds) for frame in arr])
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:  # e.g. a window of width 0
        raise UserError(f"cannot apply the LUTs of {_name(path)}: {printable(str(exc)) or type(exc).__name__}") from exc

"""Scoring image pairs with metric plugins, and summarising per-image values as means with CIs.

One place checks the inputs, runs every metric, turns a metric that cannot run
here into an ``unavailable`` marker, and reduces per-image values to result
rows. The ``privbench metrics`` command and every attack that reports image
similarity use it (attacks through the lazy wrappers in :mod:`privbench.api`),
so a third party's metric joins all their tables without further work.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Mapping

from privbench.api import ImageScores, Metric, MetricUnavailable, ProgressReporter, ResultRow
from privbench.errors import UserError, plugin_failure

if TYPE_CHECKING:  # pragma: no cover
    import torch


def _describe_shape(x: "torch.Tensor") -> str:
    return " x ".join(str(int(d)) for d in x.shape[1:])


def check_images(images: Any, name: str) -> "torch.Tensor":
    """``images`` as a float32 N x C x H x W tensor in [0, 1]; a :class:`UserError` line otherwise."""
    import torch

    if not isinstance(images, torch.Tensor):
        raise UserError(f"{name} images must be a tensor, got {type(images).__name__}")
    if images.ndim != 4:
        raise UserError(f"{name} images have shape {tuple(images.shape)}; expected N x C x H x W")
    if not images.is_floating_point():
        raise UserError(f"{name} images have dtype {images.dtype}; expected float32 values in [0, 1]")
    if images.shape[0] == 0:
        raise UserError(f"{name} holds no images")
    if images.shape[1] not in (1, 3):
        raise UserError(f"{name} images have {images.shape[1]} channels; expected 1 (grayscale) or 3 (RGB)")
    if torch.isnan(images).any():
        raise UserError(f"{name} images contain NaN pixels")
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        raise UserError(f"{name} pixel values lie outside [0, 1] (found {low:.4g}..{high:.4g})")
    return images.to(torch.float32)


def check_pair(
    reference: Any, candidate: Any, names: tuple[str, str] = ("reference", "candidate")
) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Both image sets checked, with equal counts and equal C x H x W; one :class:`UserError` line otherwise."""
    ref_name, cand_name = names
    if getattr(reference, "ndim", None) == 4 and getattr(candidate, "ndim", None) == 4:
        if reference.shape[0] != candidate.shape[0]:
            raise UserError(
                f"{ref_name} has {reference.shape[0]} images but {cand_name} has {candidate.shape[0]}; "
                f"metrics compare images pair by pair"
            )
        if tuple(reference.shape[1:]) != tuple(candidate.shape[1:]):
            raise UserError(
                f"{ref_name} images are {_describe_shape(reference)} (C x H x W) but {cand_name} images are "
                f"{_describe_shape(candidate)}"
            )
    return check_images(reference, ref_name), check_images(candidate, cand_name)


def _check_output(values: Any, name: str, n: int) -> "torch.Tensor":
    import torch

    if not isinstance(values, torch.Tensor) or values.reshape(-1).shape[0] != n or values.ndim > 1:
        shape = tuple(getattr(values, "shape", ()))
        raise UserError(f"metric {name!r} returned {type(values).__name__} of shape {shape}; expected {n} values")
    return values.detach().to("cpu", torch.float64).reshape(-1)


def score_images(
    metrics: Mapping[str, Metric],
    reference: Any,
    candidate: Any,
    *,
    progress: ProgressReporter | None = None,
    names: tuple[str, str] = ("reference", "candidate"),
) -> dict[str, ImageScores]:
    """Every metric on every pair; see :func:`privbench.api.score_images`."""
    from privbench.plugins import origin

    reference, candidate = check_pair(reference, candidate, names)
    n = int(reference.shape[0])
    out: dict[str, ImageScores] = {}
    progress = progress or ProgressReporter()
    with progress.task("similarity metrics", total=len(metrics)) as bar:
        for name, metric in metrics.items():
            higher = bool(metric.higher_is_better)
            started = time.perf_counter()
            try:
                with plugin_failure("metric", name, *origin(type(metric)), keep=(MetricUnavailable,)):
                    metric.check_available()
                    values = _check_output(metric.score(reference, candidate), name, n)
            except MetricUnavailable as exc:
                reason = " ".join(str(exc).split()) or f"metric {name!r} is unavailable"
                out[name] = ImageScores(name, higher, None, reason, time.perf_counter() - started)
            else:
                out[name] = ImageScores(name, higher, values, None, time.perf_counter() - started)
            bar.advance(1, metric=name)
    return out


def summarise_scores(
    scores: Mapping[str, ImageScores],
    prefix: str = "",
    *,
    resamples: int = 1000,
    seed: int = 0,
    subset: str = "all",
) -> list[ResultRow]:
    """Mean, seeded bootstrap 95% CI and n per metric; see :func:`privbench.api.summarise_scores`.

    Non-finite per-image values (a third-party metric's NaN) are left out of the
    mean and counted in ``detail["non_finite"]``, so ``n`` is always the number
    of values behind the estimate.
    """
    import numpy as np

    if resamples < 0:
        raise UserError(f"the number of bootstrap resamples must be 0 or more, got {resamples}")
    rows = []
    for name, s in scores.items():
        measure = f"{prefix}.{name}" if prefix else name
        if s.values is None:
            rows.append(ResultRow.unavailable(measure, s.reason or "unavailable", higher_is_better=s.higher_is_better,
                                              subset=subset))
            continue
        values = np.asarray(s.values, dtype=np.float64).reshape(-1)
        finite = np.isfinite(values)
        dropped = int(values.size - finite.sum())
        if not finite.any():
            rows.append(ResultRow.unavailable(measure, f"metric {name!r} gave no finite value for any of "
                                              f"{values.size} images", higher_is_better=s.higher_is_better,
                                              subset=subset))
            continue
        rows.append(
            ResultRow.mean_of(
                measure,
                values[finite],
                higher_is_better=s.higher_is_better,
                resamples=resamples,
                seed=seed,
                subset=subset,
                detail={"non_finite": dropped} if dropped else None,
            )
        )
    return rows

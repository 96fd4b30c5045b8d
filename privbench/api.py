"""The plugin contract: what a distiller, an attack or a metric receives and returns.

Everything a plugin needs from privbench is in this module (plus ``privbench.nets``,
``privbench.augment`` and ``privbench.training`` for plugins that train models).

Conventions that hold across every boundary:

* images are ``float32`` tensors in ``[0, 1]`` of shape ``N x C x H x W``;
* labels are ``int64`` tensors of shape ``N``;
* a plugin converts internally (a diffusion model to ``[-1, 1]``, a ConvNet to
  mean/std) and converts back before returning.

This module imports no heavy library at import time, so listing plugins stays fast.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Iterator, Protocol

from privbench.dataset import Dataset, Split, require_ipc_fits
from privbench.errors import UserError
from privbench.rows import ResultRow

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "Split",
    "Dataset",
    "Release",
    "AuditTarget",
    "RunContext",
    "ProgressTask",
    "ResultRow",
    "Plugin",
    "Distiller",
    "Attack",
    "Metric",
    "MetricUnavailable",
    "ImageScores",
    "score_images",
    "summarise_scores",
    "NoConfig",
    "UserError",
    "require_ipc_fits",
]


# --------------------------------------------------------------------------- data


@dataclass
class Release:
    """What would be shared (images, labels, a manifest), and the private provenance that stays home.

    ``manifest`` is shared with the release (``release.json``): method, ipc,
    config, seed, versions, time and device, and nothing that identifies a
    patient. ``provenance`` never leaves the data holder
    (``provenance.private.json``): which training images seeded or were
    copied into the release (``init_indices``, ``source_indices``, indices into
    the private training split), the source dataset's spec and fingerprint,
    and anything else a distiller derived from private records that the
    method does not release by design (loss histories, say). Attacks read it
    to score the patients most at risk. ``None`` means a release loaded
    without its provenance file.
    """

    images: "torch.Tensor"
    labels: "torch.Tensor"
    manifest: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] | None = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def method(self) -> str:
        """The distiller that made it, from the manifest."""
        return str(self.manifest.get("method", "unknown"))

    @property
    def ipc(self) -> int | None:
        """Images per class from the manifest (None: a release of fixed size)."""
        ipc = self.manifest.get("ipc")
        return None if ipc is None else int(ipc)

    def check_against(self, dataset: Dataset) -> None:
        """Refuse a release that cannot have come from ``dataset``."""
        import torch

        if tuple(self.images.shape[1:]) != dataset.image_shape:
            raise UserError(
                f"release images are {tuple(self.images.shape[1:])} (C x H x W) but dataset "
                f"{dataset.name!r} has {dataset.image_shape}"
            )
        source = (self.provenance or {}).get("source_fingerprint") or self.manifest.get("source_fingerprint")
        if source and source != dataset.fingerprint:
            raise UserError(
                f"release was built from another dataset (fingerprint {source[:12]}...), "
                f"not {dataset.name!r} ({dataset.fingerprint[:12]}...)"
            )
        if self.images.dtype != torch.float32 or self.labels.dtype != torch.int64:
            raise UserError("release images must be float32 and labels int64")
        for key in ("init_indices", "source_indices"):
            rows = (self.provenance or {}).get(key) or []
            beyond = [r for r in rows if not 0 <= int(r) < len(dataset.train)]
            if beyond:
                raise UserError(f"the release's provenance names training image {beyond[0]} in {key}, but "
                                f"{dataset.name!r} has {len(dataset.train)} training images")
        if len(self) and (self.labels.min() < 0 or self.labels.max() >= dataset.num_classes):
            raise UserError(f"release labels fall outside the dataset's {dataset.num_classes} classes")


# --------------------------------------------------------------------------- context


def default_cache_dir() -> Path:
    """``$PRIVBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/privbench``, else ``~/.cache/privbench``."""
    import os

    explicit = os.environ.get("PRIVBENCH_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "privbench"


class ProgressTask(Protocol):
    """One bar of progress, from ``ctx.progress.task(description, total)``."""

    def advance(self, steps: int = 1, **fields: Any) -> None:
        """Count ``steps`` done; ``fields`` (``loss=0.3``) are shown beside the bar."""


class _NullTask:
    def advance(self, steps: int = 1, **fields: Any) -> None:
        pass

    def fail(self, message: str = "") -> None:
        pass


class ProgressReporter:
    """Reports progress of long work. The CLI substitutes a rich progress bar."""

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[ProgressTask]:
        yield _NullTask()

    def warn(self, message: str) -> None:
        pass


def _serial_executor() -> Any:
    from privbench.executors import SerialExecutor

    return SerialExecutor()


@dataclass
class RunContext:
    """What a plugin gets besides its input: device, seed, progress, cache directory.

    ``generator`` is a ``torch.Generator`` on the CPU seeded with ``seed``; draw
    every random number from it (or from :meth:`make_generator`) so that the same
    seed and configuration give the same result.
    """

    device: str = "cpu"
    seed: int = 0
    cache_dir: Path = field(default_factory=default_cache_dir)
    progress: ProgressReporter = field(default_factory=ProgressReporter)
    allow_private_images: bool = False
    out_dir: Path | None = None
    warnings: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    executor: Any = field(default_factory=_serial_executor)

    @cached_property
    def generator(self) -> "torch.Generator":
        """A CPU generator seeded with the run's seed."""
        return self.make_generator()

    def make_generator(self, offset: int = 0, device: str = "cpu") -> "torch.Generator":
        """A fresh generator seeded with ``seed + offset`` (independent streams per purpose)."""
        import torch

        g = torch.Generator(device=device)
        g.manual_seed(int(self.seed) + int(offset))
        return g

    @property
    def torch_device(self) -> "torch.device":
        """``device`` as a ``torch.device``."""
        import torch

        return torch.device(self.device)

    def warn(self, message: str) -> None:
        """A warning the user should see and the run's manifest should keep."""
        self.warnings.append(message)
        self.progress.warn(message)

    def record(self, key: str, value: Any) -> None:
        """A setting the plugin chose or derived (sizes, optimiser steps), kept in ``runs.parquet``.

        What the ``Config`` alone does not say, so that anyone can rerun the
        measurement from the runs table: JSON-serialisable values only.
        """
        self.settings[key] = value

    def map(self, fn: Callable[[dict[str, Any], Any, "RunContext"], Any], items: Iterable[Any], *,
            shared: dict[str, Any] | None = None, label: str = "tasks") -> list[Any]:
        """``[fn(shared, item, ctx) for item in items]``, in order, on the run's executor.

        For independent pieces of work (shadow pipelines, canary runs): in this
        process one after another by default, as parallel Ray tasks under
        ``--executor ray``. Each piece must draw its randomness from a seed in its
        ``item``, never from the order in which pieces run; ``shared`` (large
        inputs every piece reads: a dataset, a release) travels to each worker
        once. ``fn`` gets a context like this one (device, seed, cache), and the
        warnings it gives reach this one.
        """
        return self.executor.map(fn, list(items), shared=dict(shared or {}), ctx=self, label=label)

    def derive(self, **changes: Any) -> "RunContext":
        """A copy with some fields changed (a shadow run's seed, say)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields.update(changes)
        return RunContext(**fields)


# --------------------------------------------------------------------------- results


# --------------------------------------------------------------------------- plugins


@dataclass(frozen=True)
class NoConfig:
    """The configuration of a plugin that takes no options."""


class Plugin:
    """Common ground of every plugin class.

    ``name`` is what users type; ``Config`` is a frozen dataclass whose defaults
    are the published hyper-parameters; ``description`` is one line for listings
    (defaults to the first line of the class docstring).
    """

    kind: ClassVar[str] = "plugin"
    name: ClassVar[str] = ""
    Config: ClassVar[type] = NoConfig

    @classmethod
    def summary(cls) -> str:
        """One line for listings: ``description``, else the class docstring's first line."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


class Distiller(Plugin):
    """Turns a private training set into a small release.

    ``distill`` reads ``private.train`` only and returns a :class:`Release`
    whose manifest needs no more than ``{"method": ..., "ipc": ...}``; the host
    adds provenance (config, seed, fingerprint, versions, time, device).
    ``uses_ipc`` is False for releases whose size is fixed (the original set).
    """

    kind: ClassVar[str] = "distiller"
    uses_ipc: ClassVar[bool] = True

    def check(self, private: Dataset, ipc: int | None, config: Any) -> None:
        """Refuse, before any work, a request ``distill`` would refuse (an ipc larger than a class).

        Suites call it for every release before they create any output; the
        default accepts everything.
        """

    def distill(self, private: Dataset, ipc: int, config: Any, ctx: RunContext) -> Release:
        """Make a release of ``ipc`` images per class from ``private.train`` (images in [0, 1])."""
        raise NotImplementedError


@dataclass
class AuditTarget:
    """What an attack is pointed at: a release and the private set it came from.

    ``members`` are all private training images that fed the release pipeline;
    ``nonmembers`` are real images it never saw. ``metrics`` are every
    installed metric plugin, ready to score on the run's device. ``rebuild``
    re-runs the release's whole pipeline (same distiller, same config) on
    another private set; shadow-model attacks use it so that distillation's
    effect is measured, not assumed. ``release.provenance`` (``None`` when the
    release came without its private provenance file) names the members that
    seeded the release.
    """

    dataset: Dataset
    release: Release
    metrics: dict[str, "Metric"]
    rebuild: Callable[[Dataset, RunContext], Release]

    @property
    def members(self) -> Split:
        """The private training images that fed the release pipeline."""
        return self.dataset.train

    @property
    def nonmembers(self) -> Split:
        """Real images the release pipeline never saw."""
        return self.dataset.nonmembers


class Attack(Plugin):
    """Measures what a release gives away about the members of the private set."""

    kind: ClassVar[str] = "attack"

    def run(self, target: AuditTarget, config: Any, ctx: RunContext) -> list[ResultRow]:
        """Attack ``target`` and return its measured numbers, each with its uncertainty."""
        raise NotImplementedError


class MetricUnavailable(Exception):
    """A metric cannot be computed on this machine (missing weights, say).

    The message is one line saying what to put where. The host writes rows
    with status ``unavailable`` and carries on with the other metrics.
    """


class Metric(Plugin):
    """Scores candidate images against reference images, one value per pair.

    ``higher_is_better`` is True when a higher value means a closer copy
    (SSIM, PSNR, NCC, FSIM) and False when a lower one does (LPIPS, EMD).
    Every metric sets it itself: there is no default, because a wrong one
    would show and rank a distance the wrong way round without any error.
    The host constructs a metric as ``cls(config, device)``: ``self.config``
    is its checked ``Config`` and ``self.device`` where to compute.
    """

    kind: ClassVar[str] = "metric"
    higher_is_better: ClassVar[bool]

    def __init__(self, config: Any = None, device: str = "cpu"):
        self.config = config if config is not None else self.Config()
        self.device = device

    def check_available(self) -> None:
        """Raise :class:`MetricUnavailable` if this metric cannot run here."""

    def score(self, reference: "torch.Tensor", candidate: "torch.Tensor") -> "torch.Tensor":
        """One value per image pair: ``candidate[i]`` scored against ``reference[i]``."""
        raise NotImplementedError


@dataclass(frozen=True)
class ImageScores:
    """One metric's per-image values for a batch of image pairs, or why there are none.

    ``values`` is a float64 CPU tensor with one value per pair, or ``None`` when
    the metric is unavailable on this machine (then ``reason`` says why, in one
    line). ``higher_is_better`` is copied from the metric so a summary row knows
    which way is a closer copy.
    """

    metric: str
    higher_is_better: bool
    values: "torch.Tensor | None"
    reason: str | None = None
    elapsed_s: float = 0.0

    @property
    def available(self) -> bool:
        """Whether the metric gave values here."""
        return self.values is not None


def score_images(
    metrics: "dict[str, Metric]",
    reference: "torch.Tensor",
    candidate: "torch.Tensor",
    *,
    progress: ProgressReporter | None = None,
) -> dict[str, ImageScores]:
    """Score each candidate image against the reference image at the same index, with every metric.

    ``reference`` and ``candidate`` are float32 N x C x H x W tensors in [0, 1]
    with equal shapes; anything else raises :class:`UserError` with one line. A
    metric that raises :class:`MetricUnavailable` (in ``check_available`` or
    ``score``) gives an entry with ``values=None`` and the reason instead of
    stopping the others. Returns ``{metric name: ImageScores}`` in the order of
    ``metrics``.
    """
    from privbench.scoring import score_images as _score_images

    return _score_images(metrics, reference, candidate, progress=progress)


def summarise_scores(
    scores: dict[str, ImageScores],
    prefix: str = "",
    *,
    resamples: int = 1000,
    seed: int = 0,
    subset: str = "all",
) -> list[ResultRow]:
    """One :class:`ResultRow` per metric: the mean over images with a seeded bootstrap 95% CI and n.

    The measure is ``f"{prefix}.{metric}"`` (just the metric name when
    ``prefix`` is empty) and ``higher_is_better`` comes from the metric. An
    unavailable metric gives an ``unavailable`` row that keeps its reason.
    """
    from privbench.scoring import summarise_scores as _summarise_scores

    return _summarise_scores(scores, prefix, resamples=resamples, seed=seed, subset=subset)


KINDS: dict[str, type[Plugin]] = {"distiller": Distiller, "attack": Attack, "metric": Metric}

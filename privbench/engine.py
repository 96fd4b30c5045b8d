"""Running plugins: the host side of the contract.

Commands and suite jobs call these functions rather than plugins directly, so
that every run gets the same treatment: configuration checked against the
plugin's ``Config``, the seed applied, the output checked against the data
contract, provenance recorded, and timing measured.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any, Callable

from privbench.api import AuditTarget, Dataset, Metric, Release, ResultRow, RunContext
from privbench.config import build_config, config_to_dict
from privbench.errors import UserError, plugin_failure
from privbench.limits import check_release_fits
from privbench.plugins import Registry
from privbench.provenance import split_manifest
from privbench.results import RunInfo, environment_versions, utcnow


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` without one is an error."""
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
        return name
    if name == "cpu":
        return "cpu"
    raise UserError(f"unknown device {name!r}; use auto, cpu or cuda")


def seed_everything(seed: int) -> None:
    """Seed the global generators that plugins cannot avoid (module initialisation)."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _check_release_output(release: Any, dataset: Dataset, method: str) -> None:
    """A distiller's output must honour the data contract; a plugin bug is reported clearly."""
    import torch

    if not isinstance(release, Release):
        raise UserError(f"distiller {method!r} returned {type(release).__name__}, not a Release")
    x, y = release.images, release.labels
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != dataset.image_shape:
        raise UserError(f"distiller {method!r} returned images of shape {tuple(getattr(x, 'shape', ()))}; expected N x {dataset.image_shape}")
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise UserError(f"distiller {method!r} returned {x.shape[0]} images but labels of shape {tuple(getattr(y, 'shape', ()))}")
    if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise UserError(f"distiller {method!r} returned images outside [0, 1] or with NaN values")


def run_distiller(
    registry: Registry,
    method: str,
    dataset: Dataset,
    ipc: int | None,
    overrides: dict[str, Any] | None,
    ctx: RunContext,
) -> Release:
    """Run a distiller with its checked config and return the release with full provenance."""
    import torch

    record = registry.record("distiller", method)
    cls = record.cls
    config = build_config(cls.Config, overrides, owner=f"distiller {method}")
    if cls.uses_ipc:
        if ipc is None:
            raise UserError(f"distiller {method!r} needs --ipc")
        if ipc < 1:
            raise UserError(f"ipc must be a positive number of images per class, got {ipc}")
        check_release_fits(ipc, dataset.num_classes, dataset.image_shape)
    seed_everything(ctx.seed)
    warnings_before = len(ctx.warnings)
    started = time.perf_counter()
    with plugin_failure("distiller", method, record.distribution, record.version,
                        distill_job(dataset, ipc if cls.uses_ipc else None)):
        release = cls().distill(dataset, ipc if cls.uses_ipc else None, config, ctx)
    elapsed = time.perf_counter() - started
    _check_release_output(release, dataset, method)
    release.images = release.images.detach().to("cpu", torch.float32).contiguous()
    release.labels = release.labels.detach().to("cpu", torch.int64).contiguous()
    shareable, private = split_manifest(dict(release.manifest))
    shareable.update(
        {
            "method": method,
            "ipc": ipc if cls.uses_ipc else None,
            "images": len(release),
            "image_shape": list(dataset.image_shape),
            "class_names": list(dataset.class_names),
            "config": config_to_dict(config),
            "seed": ctx.seed,
            "plugin_package": record.distribution,
            "plugin_version": record.version,
            "versions": environment_versions(),
            "wall_time_s": round(elapsed, 3),
            "device": ctx.device,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    release.manifest = shareable
    release.provenance = {
        **private,
        **(release.provenance or {}),
        "source_dataset": dataset.name,
        "source_spec": dataset.spec,
        "source_fingerprint": dataset.fingerprint,
        "training_images": len(dataset.train),
        "warnings": ctx.warnings[warnings_before:],
    }
    return release


def check_distiller_request(registry: Registry, method: str, dataset: Dataset, ipc: int | None,
                            overrides: dict[str, Any] | None) -> None:
    """What :func:`run_distiller` would refuse for this data, refused before any output exists."""
    record = registry.record("distiller", method)
    config = build_config(record.cls.Config, overrides, owner=f"distiller {method}")
    if record.cls.uses_ipc and (ipc is None or ipc < 1):
        raise UserError(f"distiller {method!r} needs a positive ipc, got {ipc}")
    if record.cls.uses_ipc:
        check_release_fits(ipc, dataset.num_classes, dataset.image_shape)
    with plugin_failure("distiller", method, record.distribution, record.version,
                        distill_job(dataset, ipc if record.cls.uses_ipc else None)):
        record.cls().check(dataset, ipc if record.cls.uses_ipc else None, config)


def distill_job(dataset: Dataset, ipc: int | None) -> str:
    """How a failure names a distill job: ``digits ipc=10``."""
    return dataset.name if ipc is None else f"{dataset.name} ipc={ipc}"


def audit_job(target: AuditTarget) -> str:
    """How a failure names an audit job: ``digits, release dm ipc=10``."""
    m = target.release.manifest or {}
    ipc = f" ipc={m['ipc']}" if m.get("ipc") is not None else ""
    return f"{target.dataset.name}, release {m.get('method') or '?'}{ipc}"


def original_release(registry: Registry, dataset: Dataset, ctx: RunContext) -> Release:
    """The whole private training set as a release (the ``original`` baseline)."""
    return run_distiller(registry, "original", dataset, None, None, ctx)


class Rebuild:
    """Re-run the pipeline that made a release (same distiller, ipc and config) on another private set.

    Picklable (it carries the pipeline's recipe, not the registry), so shadow
    pipelines can run on other workers, each of which finds the distiller in its
    own registry.
    """

    def __init__(self, registry: Registry | None, manifest: dict[str, Any]):
        self.registry = registry
        self.method = manifest.get("method")
        self.ipc = manifest.get("ipc")
        self.overrides = dict(manifest.get("config") or {})

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "registry": None}

    def __call__(self, private: Dataset, ctx: RunContext) -> Release:
        if not self.method:
            raise UserError("the release manifest names no method, so its pipeline cannot be re-run")
        if self.registry is None:
            from privbench.plugins import get_registry

            self.registry = get_registry()
        return run_distiller(self.registry, self.method, private, self.ipc, self.overrides, ctx)


def make_rebuild(registry: Registry, manifest: dict[str, Any]) -> Callable[[Dataset, RunContext], Release]:
    """The :class:`Rebuild` of a release's pipeline from its manifest."""
    return Rebuild(registry, manifest)


def metric_instances(
    registry: Registry, device: str, names: list[str] | None = None, overrides: dict[str, dict[str, Any]] | None = None
) -> dict[str, Metric]:
    """Every installed metric (or the named ones), configured and ready to score."""
    overrides = overrides or {}
    chosen = names if names else registry.names("metric")
    out = {}
    for name in chosen:
        record = registry.record("metric", name)
        config = build_config(record.cls.Config, overrides.get(name), owner=f"metric {name}")
        with plugin_failure("metric", name, record.distribution, record.version):
            out[name] = record.cls(config, device)
    return out


def load_target_release(registry: Registry, dataset: Dataset, release_arg: str, ctx: RunContext) -> Release:
    """``original`` or a release directory, checked against the dataset."""
    from privbench.releases import load_release

    if release_arg == "original":
        return original_release(registry, dataset, ctx)
    release = load_release(Path(release_arg))
    release.check_against(dataset)
    if release.method not in registry.names("distiller"):
        ctx.warn(f"{release_arg} was made by method {release.method!r}, which no installed distiller plugin "
                 "provides: attacks that re-run the release's pipeline cannot, so the audit is limited to what "
                 "the release itself shows")
    if release.provenance is None:
        ctx.warn(f"{release_arg} has no provenance.private.json: privbench cannot check that the release was made "
                 f"from {dataset.name!r}, nor score the members that seeded it on their own")
    elif not release.provenance.get("source_fingerprint") and not release.manifest.get("source_fingerprint"):
        ctx.warn("the release's provenance records no source dataset fingerprint, so privbench cannot check that "
                 f"it was made from {dataset.name!r}")
    return release


def run_attack(
    registry: Registry,
    name: str,
    target: AuditTarget,
    config: Any,
    ctx: RunContext,
) -> tuple[RunInfo, list[ResultRow]]:
    """Run one attack and describe the run for the results tables."""
    record = registry.record("attack", name)
    seed_everything(ctx.seed)
    warnings_before = len(ctx.warnings)
    ctx.settings = {}
    started_at = utcnow()
    t0 = time.perf_counter()
    with plugin_failure("attack", name, record.distribution, record.version, audit_job(target)):
        rows = record.cls().run(target, config, ctx)
    elapsed = time.perf_counter() - t0
    if not isinstance(rows, list) or not all(isinstance(r, ResultRow) for r in rows):
        raise UserError(f"attack {name!r} must return a list of ResultRow")
    info = RunInfo(
        job=f"audit/{name}",
        task="audit",
        evaluator=name,
        plugin_package=record.distribution,
        plugin_version=record.version,
        config={"attack": name, "options": config_to_dict(config), "settings": dict(ctx.settings),
                "release_provenance": "absent" if target.release.provenance is None else "present",
                **release_identity(target.release)},
        seed=ctx.seed,
        device=ctx.device,
        warnings=ctx.warnings[warnings_before:],
        started_at=started_at,
        elapsed_s=elapsed,
        **dataset_columns(target.dataset),
        **release_columns(target.release),
    )
    return info, rows


def dataset_columns(dataset: Dataset) -> dict[str, Any]:
    return {"dataset": dataset.name, "dataset_fingerprint": dataset.fingerprint}


def release_identity(release: Release) -> dict[str, Any]:
    """Method, ipc and seed: what names a release in a run's configuration."""
    m = release.manifest
    return {
        "release_method": str(m.get("method", "")),
        "release_ipc": m.get("ipc"),
        "release_seed": m.get("seed"),
    }


def release_epsilon(release: Release) -> float | None:
    """The epsilon a release's manifest guarantees (inf for a private method run without noise); None: none stated."""
    from privbench.accounting import stated_guarantee

    return stated_guarantee(release.manifest)[0]


def release_columns(release: Release) -> dict[str, Any]:
    """The result tables' release columns: its identity and its guarantee."""
    return {**release_identity(release), "release_epsilon": release_epsilon(release)}


def make_run_context(device: str, seed: int, quiet: bool, cache_dir: Path | None = None, **extra: Any) -> RunContext:
    """A :class:`RunContext` on the resolved device with a rich progress reporter on stderr.

    In the core, so that the suite runner and tests make contexts the way the commands do.
    """
    from privbench.progress import RichProgress

    kwargs: dict[str, Any] = {"device": resolve_device(device), "seed": seed, "progress": RichProgress(quiet=quiet)}
    if cache_dir is not None:
        kwargs["cache_dir"] = Path(cache_dir)
    kwargs.update(extra)
    return RunContext(**kwargs)

"""One release pipeline run for an audit, and what the attacks observe of it.

A pipeline is a private set, the release the release's own pipeline makes
from it (``target.rebuild``: the same distiller, ipc and config), and the
target model a recipient would train on that release. The attacks observe,
for every entry of the audit population: the model's logits under each query
(the image, its mirror) and the pixel distance to the nearest released
image. Everything membership inference computes is a function of these
observations and of which entries each pipeline held.

Releases made for an audit are kept in memory for the rest of the process
(bounded in size), so two attacks that need the same pipeline (the null
pipeline of ``mia`` and ``autoencoder``) build it once.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch

from privbench.api import AuditTarget, Dataset, Release, RunContext, Split
from privbench.errors import UserError
from privbench.imagestore import hash_images, image_chunks

from privbench_builtins.attacks._common import TargetSpec, flip, nearest, shadow_models, target_model

CACHE_BYTES = 256 << 20
"""Releases of audit pipelines kept in memory, in bytes of images."""


@dataclass
class Pipeline:
    """One pipeline of a game and the observations of every population entry under it."""

    name: str
    held: np.ndarray  # population entries in its private set (booleans over the population)
    release: Release
    seed: int
    logits: np.ndarray | None  # queries x population x classes (None when no attack needs a model)
    release_distance: np.ndarray  # population: pixel distance to the nearest released image
    recipe: dict = field(default_factory=dict)
    private_to_pool: np.ndarray | None = None  # private-set row -> population entry

    @property
    def seeded_members(self) -> np.ndarray:
        """Population entries that seeded or were copied into the release (from its provenance)."""
        from privbench.provenance import member_indices

        rows = member_indices(self.release.provenance)
        if not rows or self.private_to_pool is None:
            return np.empty(0, dtype=np.int64)
        rows = np.asarray([r for r in rows if 0 <= r < self.private_to_pool.size], dtype=np.int64)
        return np.unique(self.private_to_pool[rows])


def queries(query_flip: bool) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    return [lambda x: x] + ([flip] if query_flip else [])


def observe(model, images: torch.Tensor, query_list, ctx: RunContext) -> np.ndarray:
    """Logits of ``model`` on every image under every query: queries x images x classes (float64)."""
    from privbench.training import predict_logits

    return np.stack([np.concatenate([predict_logits(model, q(x), ctx).double().numpy() for x in image_chunks(images)])
                     for q in query_list])


_RELEASES: "OrderedDict[str, Release]" = OrderedDict()


def _cache_key(dataset: Dataset, private: Split, manifest: dict, seed: int, device: str,
               public_class_counts: tuple[int, ...] | None = None) -> str:
    h = hashlib.sha256()
    h.update(repr(public_class_counts).encode())
    h.update(dataset.fingerprint.encode())
    hash_images(h, private.images)
    h.update(np.ascontiguousarray(private.labels.numpy()).tobytes())
    identity = {k: manifest.get(k) for k in ("method", "ipc", "config")}
    h.update(json.dumps(identity, sort_keys=True, default=str).encode())
    h.update(f"{seed}/{device}".encode())
    return h.hexdigest()


def rebuild_release(target: AuditTarget, private: Split, seed: int, ctx: RunContext, label: str,
                    public_class_counts: tuple[int, ...] | None = None) -> Release:
    """The release's pipeline re-run on ``private`` with ``seed`` (cached); a failure names the pipeline.

    ``public_class_counts`` declares the class sizes public (see :class:`privbench.api.Dataset`).
    """
    data = target.dataset.with_train(private, name_suffix=f"[{label}]", public_class_counts=public_class_counts)
    key = _cache_key(target.dataset, private, target.release.manifest, seed, ctx.device, public_class_counts)
    if key in _RELEASES:
        _RELEASES.move_to_end(key)
        return _RELEASES[key]
    try:
        release = target.rebuild(data, ctx.derive(seed=seed, out_dir=None))
    except UserError as exc:
        raise UserError(f"{label}: re-running the release pipeline failed: {exc}") from exc
    if not isinstance(release, Release) or len(release) == 0:
        raise UserError(f"{label}: re-running the release pipeline gave {type(release).__name__}, not a release "
                        "with images")
    size = release.images.element_size() * release.images.nelement()
    if size <= CACHE_BYTES:
        _RELEASES[key] = release
        while sum(r.images.element_size() * r.images.nelement() for r in _RELEASES.values()) > CACHE_BYTES:
            _RELEASES.popitem(last=False)
    return release


def run_pipeline(target: AuditTarget, name: str, private: Split, held: np.ndarray, private_to_pool: np.ndarray,
                 population_images: torch.Tensor, spec: TargetSpec, query_list, seed: int, ctx: RunContext,
                 release: Release | None = None) -> Pipeline:
    """Make (or take) the release, train its target model, observe every population entry.

    An empty ``query_list`` skips the model (the attacks at hand read only the release).
    """
    if release is None:
        release = rebuild_release(target, private, seed, ctx, name)
    model = None
    if query_list:
        data = target.dataset if name == "target" else target.dataset.with_train(private, name_suffix=f"[{name}]")
        model = target_model(release, data, spec, ctx if name == "target" else ctx.derive(seed=seed),
                             seed=None if name == "target" else seed, keep=name == "target")
    return _observed(name, held, release, seed, model, private_to_pool, population_images, spec, query_list, ctx)


def _observed(name: str, held: np.ndarray, release: Release, seed: int, model, private_to_pool: np.ndarray,
              population_images: torch.Tensor, spec: TargetSpec, query_list, ctx: RunContext) -> Pipeline:
    logits = observe(model, population_images, query_list, ctx) if model is not None else None
    distance, _ = nearest(population_images, release.images, ctx)
    recipe = spec.recipe(len(release)) if query_list else {}
    return Pipeline(name, held, release, seed, logits, distance.double().numpy(), recipe, private_to_pool)


def pipeline_inputs(target: AuditTarget, population, spec: TargetSpec, query_list, ensemble: str = "auto") -> dict:
    """What every pipeline of a game reads (sent to each worker once): the target's data, its release, the pool,
    and whether target models of one shape train as one ensemble."""
    return {"dataset": target.dataset, "target": replace(target, dataset=None, metrics={}),
            "population": population, "spec": spec, "queries": query_list, "ensemble": ensemble}


def pipeline_groups(items: list[tuple], size: int) -> list[list[tuple]]:
    """``items`` in consecutive groups of ``size`` (the last may be shorter): one task each.

    The grouping is fixed by the attack's settings alone, never by the
    executor or its workers, so the results are the same whoever runs them.
    """
    size = max(1, int(size))
    return [items[i : i + size] for i in range(0, len(items), size)]


def pipeline_group_task(shared: dict, group: list[tuple], ctx: RunContext) -> list[Pipeline]:
    """The pipelines of one group, for :meth:`RunContext.map`: each item is (name, pool indices, held mask, seed).

    The releases are made one after another; their target models train
    together (:func:`shadow_models`), then every pipeline observes the population.
    """
    population = shared["population"]
    target = replace(shared["target"], dataset=shared["dataset"])
    spec, query_list = shared["spec"], shared["queries"]
    privates = [population.subset(index) for _, index, _, _ in group]
    releases = [rebuild_release(target, private, seed, ctx, name)
                for (name, _, _, seed), private in zip(group, privates)]
    models: list = [None] * len(group)
    if query_list:
        datasets = [target.dataset.with_train(private, name_suffix=f"[{name}]")
                    for (name, *_), private in zip(group, privates)]
        models = shadow_models(releases, datasets, spec, [seed for *_, seed in group], ctx,
                               shared.get("ensemble", "auto"))
    return [_observed(name, held, release, seed, model, index, population.images, spec, query_list, ctx)
            for (name, index, held, seed), release, model in zip(group, releases, models)]


def run_pipelines(items: list[tuple], target: AuditTarget, population, spec: TargetSpec, query_list, config,
                  ctx: RunContext, label: str) -> list[Pipeline]:
    """The pipelines ``items`` name, in order, in groups of ``config.shadow_group`` on the run's executor."""
    shared = pipeline_inputs(target, population, spec, query_list, config.shadow_ensemble)
    groups = pipeline_groups(items, config.shadow_group)
    done = ctx.map(pipeline_group_task, groups, shared=shared,
                   label=f"{label} ({len(items)} in {len(groups)} group{'s' * (len(groups) != 1)})")
    return [pipeline for group in done for pipeline in group]

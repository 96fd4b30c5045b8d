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

from privbench_builtins.attacks._common import TargetSpec, flip, nearest, target_model

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

    return np.stack([predict_logits(model, q(images), ctx).double().numpy() for q in query_list])


_RELEASES: "OrderedDict[str, Release]" = OrderedDict()


def _cache_key(dataset: Dataset, private: Split, manifest: dict, seed: int, device: str,
               public_class_counts: tuple[int, ...] | None = None) -> str:
    h = hashlib.sha256()
    h.update(repr(public_class_counts).encode())
    h.update(dataset.fingerprint.encode())
    h.update(np.ascontiguousarray(private.images.numpy()).tobytes())
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
    logits = None
    if query_list:
        data = target.dataset if name == "target" else target.dataset.with_train(private, name_suffix=f"[{name}]")
        model = target_model(release, data, spec, ctx if name == "target" else ctx.derive(seed=seed),
                             seed=None if name == "target" else seed, keep=name == "target")
        logits = observe(model, population_images, query_list, ctx)
    distance, _ = nearest(population_images, release.images, ctx)
    recipe = spec.recipe(len(release)) if query_list else {}
    return Pipeline(name, held, release, seed, logits, distance.double().numpy(), recipe, private_to_pool)


def pipeline_inputs(target: AuditTarget, population, spec: TargetSpec, query_list) -> dict:
    """What every pipeline of a game reads (sent to each worker once): the target's data, its release, the pool."""
    return {"dataset": target.dataset, "target": replace(target, dataset=None, metrics={}),
            "population": population, "spec": spec, "queries": query_list}


def pipeline_task(shared: dict, item: tuple, ctx: RunContext) -> Pipeline:
    """One pipeline of a game, for :meth:`RunContext.map`: ``item`` is (name, pool indices, held mask, seed)."""
    name, index, held, seed = item
    population = shared["population"]
    target = replace(shared["target"], dataset=shared["dataset"])
    return run_pipeline(target, name, population.subset(index), held, index, population.images, shared["spec"],
                        shared["queries"], seed, ctx)

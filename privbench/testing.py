"""Helpers for testing a plugin without installing it: tiny data, contract checks, one-call runs.

A plugin's tests can call its classes through the same checks privbench applies
when it loads and runs them::

    from privbench.testing import tiny_dataset, check_plugin, distill

    def test_herding_returns_real_images():
        data = tiny_dataset()
        check_plugin(Herding, "distiller")
        release = distill(Herding, data, ipc=2)
        assert len(release) == 2 * data.num_classes
"""

from __future__ import annotations

from typing import Any

import torch

from privbench.api import AuditTarget, Dataset, Release, ResultRow, RunContext, Split
from privbench.config import build_config, config_to_dict


def tiny_dataset(
    classes: int = 3, per_class: int = 12, size: int = 8, channels: int = 1, seed: int = 0, name: str = "tiny"
) -> Dataset:
    """Random images whose classes differ in mean brightness: learnable, and fast."""
    g = torch.Generator().manual_seed(seed)

    def split(n_per_class: int) -> Split:
        labels = torch.arange(classes).repeat_interleave(n_per_class)
        base = (labels.float() + 1) / (classes + 1)
        noise = torch.rand(len(labels), channels, size, size, generator=g) * 0.2 - 0.1
        images = (base.view(-1, 1, 1, 1) + noise).clamp(0, 1)
        return Split(images.contiguous(), labels)

    return Dataset(
        name=name,
        train=split(per_class),
        val=split(max(2, per_class // 3)),
        test=split(max(2, per_class // 3)),
        class_names=tuple(str(c) for c in range(classes)),
        spec=name,
        public=True,
    ).validate()


def check_plugin(cls: type, kind: str) -> None:
    """Fail (AssertionError, with privbench's own message) if ``cls`` would be rejected at load time.

    ``kind`` is ``"distiller"``, ``"attack"`` or ``"metric"``. The check holds under ``python -O`` too.
    """
    from privbench.api import KINDS
    from privbench.plugin_checks import check_plugin_class

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(sorted(KINDS))}, got {kind!r}")
    problem = check_plugin_class(kind, cls)
    if problem is not None:
        raise AssertionError(problem)


def distill(cls: type, data: Dataset, ipc: int | None, seed: int = 0, config: dict | None = None,
            **options: Any) -> Release:
    """Run a distiller class with checked options, as ``privbench distill`` would.

    The options are ``config`` and ``**options`` together; put a Config field
    named like an argument of this helper (``seed``, say) in ``config``.
    """
    from privbench.engine import _check_release_output, seed_everything

    checked = build_config(cls.Config, {**(config or {}), **options}, owner=f"distiller {cls.name}")
    seed_everything(seed)
    release = cls().distill(data, ipc, checked, RunContext(seed=seed))
    _check_release_output(release, data, cls.name)
    from privbench.provenance import split_manifest

    shareable, private = split_manifest(release.manifest)
    release.manifest = {**shareable, "method": cls.name, "ipc": ipc, "config": config_to_dict(checked)}
    release.provenance = {**private, **(release.provenance or {}), "source_fingerprint": data.fingerprint}
    return release


def attack(cls: type, data: Dataset, release: Release, seed: int = 0, metrics: dict | None = None,
           config: dict | None = None, **options: Any) -> list[ResultRow]:
    """Run an attack class on a release of ``data`` with checked options (``config`` and ``**options`` together).

    Its target cannot re-run the release's pipeline: ``target.rebuild`` raises
    :class:`NotImplementedError`. (A target privbench builds raises
    :class:`~privbench.api.UserError` when a re-run fails; an attack that
    needs re-runs handles both, as the built-in attacks do.)
    """
    from privbench.engine import seed_everything

    checked = build_config(cls.Config, {**(config or {}), **options}, owner=f"attack {cls.name}")
    seed_everything(seed)

    def rebuild(private: Dataset, ctx: RunContext) -> Release:
        raise NotImplementedError("this test target cannot re-run its pipeline")

    target = AuditTarget(data, release, metrics or {}, rebuild)
    rows = cls().run(target, checked, RunContext(seed=seed))
    if not (isinstance(rows, list) and all(isinstance(r, ResultRow) for r in rows)):
        raise AssertionError(f"attack {cls.name} returned {type(rows).__name__}, not a list of ResultRow")
    return rows

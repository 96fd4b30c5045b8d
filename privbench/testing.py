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
    """Fail with privbench's own message if ``cls`` would be rejected at load time."""
    from privbench.plugin_checks import check_plugin_class

    problem = check_plugin_class(kind, cls)
    assert problem is None, problem


def distill(cls: type, data: Dataset, ipc: int | None, seed: int = 0, **options: Any) -> Release:
    """Run a distiller class with checked options, as ``privbench distill`` would."""
    from privbench.engine import _check_release_output, seed_everything

    config = build_config(cls.Config, options, owner=f"distiller {cls.name}")
    seed_everything(seed)
    release = cls().distill(data, ipc, config, RunContext(seed=seed))
    _check_release_output(release, data, cls.name)
    from privbench.provenance import split_manifest

    shareable, private = split_manifest(release.manifest)
    release.manifest = {**shareable, "method": cls.name, "ipc": ipc, "config": config_to_dict(config)}
    release.provenance = {**private, **(release.provenance or {}), "source_fingerprint": data.fingerprint}
    return release


def attack(cls: type, data: Dataset, release: Release, seed: int = 0, metrics: dict | None = None,
           **options: Any) -> list[ResultRow]:
    """Run an attack class on a release of ``data`` with checked options."""
    from privbench.engine import seed_everything

    config = build_config(cls.Config, options, owner=f"attack {cls.name}")
    seed_everything(seed)

    def rebuild(private: Dataset, ctx: RunContext) -> Release:
        raise NotImplementedError("this test target cannot re-run its pipeline")

    target = AuditTarget(data, release, metrics or {}, rebuild)
    rows = cls().run(target, config, RunContext(seed=seed))
    assert isinstance(rows, list) and all(isinstance(r, ResultRow) for r in rows)
    return rows

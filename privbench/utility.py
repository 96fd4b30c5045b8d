"""Utility of a release: how good is a classifier trained on it, scored on real test data?

For each model (ConvNet by default, torchvision ResNets on request) several
fresh classifiers are trained on the release with the protocol of
:mod:`privbench.training`, each with its own seed, and scored on the real test
split: accuracy, balanced accuracy and ROC AUC, reported as the mean over seeds
with a Student-t 95% CI and n = seeds. The attacks train their target models
with :func:`train_on_release`, so "the same protocol as the utility scores" is
literally the same function.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

import privbench
from privbench.api import Dataset, Release, ResultRow, RunContext
from privbench.augment import DEFAULT_STRATEGY
from privbench.config import config_to_dict
from privbench.errors import UserError
from privbench.nets import MODELS, channel_stats, make_model
from privbench.results import RunInfo, utcnow
from privbench.stats import t_mean_ci
from privbench.training import (
    TrainConfig,
    classification_scores,
    derive_seed,
    predict_proba,
    train_classifier,
)

MEASURES = ("accuracy", "balanced_accuracy", "roc_auc")
ENSEMBLE_AUTO_DEVICES = ("cuda",)
"""Devices on which ``ensemble="auto"`` trains seeds together. Not the CPU, where 5 seeds together
measured 0.58x (digits) and 0.59x (PneumoniaMNIST) the speed of one at a time on a 2-core Intel Xeon,
and 1.91x and 0.55x on a 2-core AMD EPYC (docs/benchmarks.md): no rule on the release's size holds."""


@dataclass(frozen=True)
class UtilityConfig:
    """The utility protocol; users change it with ``--eval-set key=value``.

    ``epochs`` is 1000: the reference evaluates a synthetic set by training a
    fresh network for ``epoch_eval_train`` epochs, which is 1000 in its DM
    script (``main_DM.py``) and in its DC script whenever augmentation is on
    (``main.py`` uses 300 only without augmentation). privbench always
    augments, so 1000. A release of ipc 10 x 10 classes is one mini-batch
    per epoch, so that is 1000 steps; for large releases (the ``original``
    baseline) lower it.

    The other defaults are the same reference protocol: SGD lr 0.01, momentum
    0.9, weight decay 5e-4, batches of 256, lr x 0.1 at half the epochs, DSA
    ``color_crop_cutout_flip_scale_rotate``, evaluation at the last epoch. The
    ConvNet is width 128, depth 3, instance norm. ``ensemble="on"`` trains
    the seeds' ConvNets as one vectorised ensemble (:mod:`privbench.ensemble`:
    the same initialisation and data order per seed, up to float rounding);
    ResNets and batch norm always train one seed after another, as does
    every model with ``"off"``. ``"auto"`` is on for a CUDA device and off
    on a CPU (:data:`ENSEMBLE_AUTO_DEVICES`). ``precision="bf16"`` trains
    under bf16 autocast (off by default: the protocol is float32; measured in
    docs/benchmarks.md). ``compile=true`` runs the training's forward pass
    through ``torch.compile`` (:mod:`privbench.compiling`; off by default,
    measured in docs/benchmarks.md). ``weights`` is a local
    state-dict file for the ResNets (never downloaded).

    Inputs are normalised with the per-channel mean and std of the release
    itself: what a recipient of the release can compute, so no statistic of
    the private set enters the model the attacks audit.
    """

    epochs: int = 1000
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    lr_decay_at: float = 0.5
    dsa: bool = True
    dsa_strategy: str = DEFAULT_STRATEGY
    width: int = 128
    depth: int = 3
    norm: Literal["instancenorm", "batchnorm", "none"] = "instancenorm"
    weights: str | None = None
    ensemble: Literal["auto", "on", "off"] = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False

    def __post_init__(self) -> None:
        self.train_config()  # refuse bad values before any work

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            lr_decay_at=self.lr_decay_at,
            dsa=self.dsa,
            dsa_strategy=self.dsa_strategy,
            precision=self.precision,
            compile=self.compile,
        )


def check_models(models: Iterable[str]) -> None:
    """Refuse an empty list or an unknown model name, listing the valid ones."""
    models = list(models)
    if not models:
        raise UserError(f"no evaluation model given; valid models: {', '.join(MODELS)}")
    for name in models:
        if str(name).lower() not in MODELS:
            raise UserError(f"unknown evaluation model {name!r}; valid models: {', '.join(MODELS)}")


IMAGENET_FILES = {"resnet18": ("resnet18-f37072fd.pth",), "resnet50": ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth")}
"""torchvision's ImageNet weight files, as its downloader names them in the torch hub cache."""


def resolve_weights(model: str, weights: str | None) -> str | None:
    """The weights file a ResNet starts from: a path, or ``imagenet`` for torchvision's file in the hub cache.

    ``imagenet`` without the file means training from scratch (the caller warns);
    nothing is ever downloaded.
    """
    if not weights or model == "convnet":
        return None
    if weights != "imagenet":
        return weights
    import torch

    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    for name in IMAGENET_FILES.get(model, ()):
        if (checkpoints / name).is_file():
            return str(checkpoints / name)
    return None


def _check_release(release: Release, dataset: Dataset) -> None:
    if len(release) == 0:
        raise UserError("the release holds no images, so no classifier can be trained on it")
    release.check_against(dataset)


def _fresh_classifier(release: Release, dataset: Dataset, key: str, seed: int, config: UtilityConfig):
    """The untrained classifier of one seed and the generator of its shuffling and augmentation."""
    import torch

    mean, std = channel_stats(release.images)
    options = {"width": config.width, "depth": config.depth, "norm": config.norm} if key == "convnet" else {}
    model = make_model(
        key,
        dataset.channels,
        dataset.num_classes,
        dataset.image_shape[1:],
        weights=resolve_weights(key, config.weights),
        seed=derive_seed(seed, "init"),
        mean=mean,
        std=std,
        **options,
    )
    return model, torch.Generator().manual_seed(derive_seed(seed, "batches"))


def train_on_release(
    release: Release,
    dataset: Dataset,
    model_name: str,
    seed: int,
    config: UtilityConfig | None,
    ctx: RunContext,
):
    """A fresh ``model_name`` classifier trained on the release with the utility protocol.

    ``seed`` fixes the initialisation and, independently, the shuffling and
    augmentation; the model is returned in eval mode on ``ctx.device``.
    """
    return train_seeds(release, dataset, model_name, [seed], config, ctx)[0]


def train_seeds(
    release: Release,
    dataset: Dataset,
    model_name: str,
    seeds: list[int],
    config: UtilityConfig | None,
    ctx: RunContext,
) -> list:
    """One classifier per seed, as :func:`train_on_release` trains it; as one ensemble when
    ``config.ensemble`` allows (same initialisation and data order per seed, up to float rounding)."""
    return train_on_releases([release] * len(seeds), dataset, model_name, seeds, config, ctx,
                             progress_label=f"{model_name.lower()} seeds {seeds[0]}-{seeds[-1]}" if seeds else None)


def trains_together(config: UtilityConfig, ctx: RunContext) -> bool:
    """Whether ``config.ensemble`` asks for one ensemble on this run's device."""
    return config.ensemble == "on" or (
        config.ensemble == "auto" and ctx.torch_device.type in ENSEMBLE_AUTO_DEVICES)


def train_on_releases(
    releases: list[Release],
    dataset: Dataset | list[Dataset],
    model_name: str,
    seeds: list[int],
    config: UtilityConfig | None,
    ctx: RunContext,
    *,
    progress_label: str | None = None,
) -> list:
    """Classifier k trained on ``releases[k]`` with seed ``seeds[k]``, as :func:`train_on_release` trains it.

    ``dataset`` is the data every release was made from, or one per release
    (shadow pipelines, each with its own private set). Releases of one shape
    (the seeds of a utility score, the shadow releases of an audit) train as
    one ensemble when ``config.ensemble`` allows, with the same
    initialisation and data order per model (up to float rounding).
    """
    from privbench.ensemble import can_ensemble, train_ensemble

    config = config or UtilityConfig()
    check_models([model_name])
    datasets = list(dataset) if isinstance(dataset, (list, tuple)) else [dataset] * len(releases)
    if not len(releases) == len(seeds) == len(datasets):
        raise UserError(f"{len(releases)} releases need as many seeds and datasets, got {len(seeds)} and "
                        f"{len(datasets)}")
    for release, data in zip(releases, datasets):
        _check_release(release, data)
    key = model_name.lower()
    fresh = [_fresh_classifier(release, data, key, seed, config)
             for release, data, seed in zip(releases, datasets, seeds)]
    models = [model for model, _ in fresh]
    train = config.train_config()
    one_shape = all(r.images.shape == releases[0].images.shape for r in releases)
    if one_shape and trains_together(config, ctx) and can_ensemble(models):
        return train_ensemble(models, [r.images for r in releases], [r.labels for r in releases], train, ctx,
                              generators=[g for _, g in fresh],
                              progress_label=progress_label or f"{key} x {len(models)}")
    return [
        train_classifier(model, release.images, release.labels, train, ctx, generator=g,
                         progress_label=f"{key} seed {seed}")
        for (model, g), release, seed in zip(fresh, releases, seeds)
    ]


def evaluate_release(
    release: Release,
    dataset: Dataset,
    *,
    models: list[str],
    seeds: int,
    config: UtilityConfig | None,
    ctx: RunContext,
) -> list[tuple[RunInfo, list[ResultRow]]]:
    """Utility rows for each model: ``seeds`` classifiers (seeds ctx.seed + k) scored on ``dataset.test``."""
    from privbench.engine import dataset_columns, release_columns, release_identity

    config = config or UtilityConfig()
    check_models(models)
    if seeds < 1:
        raise UserError(f"the number of evaluation seeds must be at least 1, got {seeds}")
    _check_release(release, dataset)
    test = dataset.test
    out = []
    for name in models:
        key = name.lower()
        warnings_before = len(ctx.warnings)
        if key != "convnet" and config.weights == "imagenet" and resolve_weights(key, config.weights) is None:
            import torch

            ctx.warn(f"no ImageNet weights for {key} in {Path(torch.hub.get_dir()) / 'checkpoints'} (expected "
                     f"{' or '.join(IMAGENET_FILES[key])}): it is trained from scratch")
        started_at = utcnow()
        t0 = time.perf_counter()
        per_seed: dict[str, list[float]] = {m: [] for m in MEASURES}
        seed_list = [ctx.seed + k for k in range(seeds)]
        trained = train_seeds(release, dataset, key, seed_list, config, ctx)
        with ctx.progress.task(f"utility {key}", total=seeds) as task:
            for model in trained:
                probs = predict_proba(model, test.images, ctx)
                scores = classification_scores(probs, test.labels, dataset.num_classes)
                for m in MEASURES:
                    per_seed[m].append(scores[m])
                task.advance(1, acc=scores["accuracy"])
        rows = []
        for m in MEASURES:
            est = t_mean_ci(per_seed[m])
            values = [v if math.isfinite(v) else None for v in per_seed[m]]
            detail = {"per_seed": values, "seeds": seed_list, "test_images": len(test)}
            if est.n == 0:
                rows.append(ResultRow.unavailable(m, "undefined on this test split", higher_is_better=True))
                continue
            # All three measures live in [0, 1]; a t interval from two or three seeds can overshoot.
            low = None if est.ci_low is None else max(0.0, est.ci_low)
            high = None if est.ci_high is None else min(1.0, est.ci_high)
            rows.append(ResultRow(m, est.value, low, high, est.n, True, detail=detail))
        info = RunInfo(
            job=f"utility/{key}",
            task="utility",
            evaluator=key,
            plugin_package="privbench",
            plugin_version=privbench.__version__,
            config={"model": key, "seeds": seeds, "options": config_to_dict(config),
                    "weights_loaded": resolve_weights(key, config.weights), **release_identity(release)},
            seed=ctx.seed,
            device=ctx.device,
            warnings=ctx.warnings[warnings_before:],
            started_at=started_at,
            elapsed_s=time.perf_counter() - t0,
            **dataset_columns(dataset),
            **release_columns(release),
        )
        out.append((info, rows))
    return out

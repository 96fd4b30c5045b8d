"""The one training and evaluation loop for every plugin that trains a classifier.

Utility scores, the attacks' target and shadow models, and the feature
extractors of the distillers all train with :func:`train_classifier`, so "the
same protocol" means the same code. The protocol is the dataset-distillation
literature's evaluation: SGD (lr 0.01, momentum 0.9, weight decay 5e-4),
mini-batches of 256, the learning rate divided by 10 at half the epochs,
differentiable Siamese augmentation on every batch, and the model taken at the
last epoch (never chosen on test data).

Images stay tensors in memory (no DataLoader worker processes); they are moved
to the device once when small enough, otherwise batch by batch. Random draws
(shuffling and augmentation) come from a CPU ``torch.Generator``, so the same
seed gives the same model on the same hardware.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from privbench.api import ProgressReporter, RunContext
from privbench.augment import DEFAULT_STRATEGY, DSA, parse_strategy
from privbench.compiling import forward
from privbench.errors import UserError
from privbench.nets import input_stats

ON_DEVICE_LIMIT = 1 << 30
"""Training images up to this many bytes are moved to the device once; larger sets are streamed."""


@dataclass(frozen=True)
class TrainConfig:
    """How a classifier is trained; defaults are the distillation literature's evaluation protocol.

    ``lr_decay_at`` is the fraction of the epochs after which the learning rate
    is multiplied by ``lr_decay_factor`` (0 or >= 1: never). ``dsa`` turns
    augmentation on; ``dsa_strategy`` chooses the operations (see
    :mod:`privbench.augment`). Augmentation is drawn independently per image,
    as the reference does while training a model. ``precision="bf16"`` runs
    the forward pass and the loss under bf16 autocast (CUDA, or a CPU with
    AVX-512 BF16 / AMX); parameters, gradients and the optimiser stay float32.
    ``compile`` runs the forward pass through ``torch.compile`` (and, on
    CUDA, replays it as a CUDA graph; see :mod:`privbench.compiling`).
    """

    epochs: int
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    lr_decay_at: float = 0.5
    lr_decay_factor: float = 0.1
    dsa: bool = True
    dsa_strategy: str = DEFAULT_STRATEGY
    loss: Literal["cross_entropy"] = "cross_entropy"
    label_smoothing: float = 0.0
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise UserError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.lr <= 0 or self.momentum < 0 or self.weight_decay < 0:
            raise UserError("lr must be positive; momentum and weight_decay must not be negative")
        if self.loss != "cross_entropy":
            raise UserError(f"unknown loss {self.loss!r}; valid: cross_entropy")
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        if self.precision not in ("fp32", "bf16"):
            raise UserError(f"precision must be fp32 or bf16, got {self.precision!r}")
        if not isinstance(self.compile, bool):
            raise UserError(f"compile must be true or false, got {self.compile!r}")
        parse_strategy(self.dsa_strategy)

    @property
    def decay_epoch(self) -> int | None:
        """The epoch (0-based) from which the decayed learning rate applies, or None."""
        if not 0 < self.lr_decay_at < 1:
            return None
        return max(1, int(round(self.epochs * self.lr_decay_at)))


def precision_dtype(precision: str) -> torch.dtype | None:
    """``torch.bfloat16`` for ``"bf16"``, None (float32) for ``"fp32"``."""
    return torch.bfloat16 if precision == "bf16" else None


def autocast_as(device: torch.device, dtype: torch.dtype | None):
    """Autocast to ``dtype`` on ``device``; a no-op for None (float32)."""
    return torch.autocast(torch.device(device).type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def autocast(config: TrainConfig, device: torch.device):
    """The autocast context of ``config.precision`` on ``device`` (a no-op for fp32)."""
    return autocast_as(device, precision_dtype(config.precision))


def compiled_step(fn, config: TrainConfig, device: torch.device, keep: bool = True, cuda_graphs: bool = True):
    """``fn`` as a training step calls it: compiled when ``config.compile``, with CUDA-graph steps marked."""
    if not config.compile:
        return fn
    from privbench.compiling import compiled

    run = compiled(fn, device, cuda_graphs=cuda_graphs, keep=keep)
    if torch.device(device).type != "cuda" or not cuda_graphs:
        return run

    def step(*args):
        torch.compiler.cudagraph_mark_step_begin()  # the last step's outputs are no longer read
        return run(*args)

    return step


def derive_seed(seed: int, *purpose: object) -> int:
    """An independent 63-bit seed for each purpose (model init, shuffling, ...) of one run seed."""
    text = "/".join([str(int(seed))] + [str(p) for p in purpose])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def check_inputs(images: torch.Tensor, labels: torch.Tensor) -> None:
    """Refuse anything but N x C x H x W images with N labels, N > 0 (one line each)."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise UserError(f"training images must be an N x C x H x W tensor, got {tuple(getattr(images, 'shape', ()))}")
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise UserError(f"{images.shape[0]} training images need as many labels, got shape {tuple(labels.shape)}")
    if images.shape[0] == 0:
        raise UserError("cannot train a classifier on an empty set of images")


def stage(t: torch.Tensor, device: torch.device, limit: int | None = None) -> torch.Tensor:
    """The tensor on ``device`` when it fits the limit (default :data:`ON_DEVICE_LIMIT`), else left where it is."""
    limit = ON_DEVICE_LIMIT if limit is None else limit
    if t.device == device or t.element_size() * t.nelement() > limit:
        return t
    return t.to(device)


def make_dsa(config: TrainConfig, model: nn.Module) -> DSA | None:
    """The augmentation the protocol uses for ``model`` (its own normalisation), or None when off."""
    if not config.dsa or not parse_strategy(config.dsa_strategy):
        return None
    stats = input_stats(model)
    if stats is None:
        return DSA(config.dsa_strategy)
    return DSA(config.dsa_strategy, mean=stats[0], std=stats[1])


def protocol_optimizer(params, config: TrainConfig):
    """The protocol's SGD and its step decay of the learning rate, for ``params``."""
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    decay = config.decay_epoch
    schedule = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=[decay] if decay is not None else [], gamma=config.lr_decay_factor
    )
    return optimizer, schedule


def train_classifier(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
    ctx: RunContext,
    *,
    generator: torch.Generator | None = None,
    progress_label: str | None = None,
    cuda_graphs: bool = True,
) -> nn.Module:
    """Train ``model`` on images in [0, 1] with the protocol; return it in eval mode at the last epoch.

    ``generator`` (CPU) drives shuffling and augmentation; without one the
    context's generator is used. The model's initialisation is the caller's
    (see ``privbench.nets.make_model(seed=...)``). ``cuda_graphs=False``
    keeps a compiled step (``config.compile``) off CUDA graphs: for a caller
    that trains a fresh network every few dozen steps, which graphs would
    record again each time.
    """
    check_inputs(images, labels)
    device = ctx.torch_device
    gen = generator if generator is not None else ctx.generator
    model = model.to(device)
    x_all = stage(images.detach().float(), device)
    y_all = stage(labels.detach().long(), device)
    n = x_all.shape[0]
    dsa = make_dsa(config, model)
    optimizer, schedule = protocol_optimizer(model.parameters(), config)
    step_forward = compiled_step(forward, config, device, cuda_graphs=cuda_graphs)
    model.train()
    shown = type(ctx.progress) is not ProgressReporter
    label = progress_label or f"training {type(model).__name__}"
    with ctx.progress.task(label, total=config.epochs) as task:
        for _ in range(config.epochs):
            order = torch.randperm(n, generator=gen)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            for start in range(0, n, config.batch_size):
                idx = order[start : start + config.batch_size]
                x = x_all[idx.to(x_all.device)].to(device, non_blocking=True)
                y = y_all[idx.to(y_all.device)].to(device, non_blocking=True)
                if dsa is not None:
                    x = dsa(x, gen, per_sample=True)
                with autocast(config, device):
                    logits = step_forward(model, x).float()
                    loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach() * y.shape[0]
                correct += (logits.detach().argmax(1) == y).sum()
            schedule.step()
            if shown:  # one host synchronisation per epoch, and none when nobody watches
                task.advance(1, loss=float(loss_sum) / n, acc=int(correct) / n)
            else:
                task.advance(1)
    return model.eval()


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, ctx: RunContext, batch_size: int = 512) -> torch.Tensor:
    """Logits for images in [0, 1], batch by batch on the context's device; a CPU float32 tensor."""
    if images.ndim != 4:
        raise UserError(f"images must be N x C x H x W, got shape {tuple(images.shape)}")
    device = ctx.torch_device
    was_training = model.training
    model = model.to(device).eval()
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device, torch.float32, non_blocking=True)
        out.append(model(x).float().cpu())
    model.train(was_training)
    if not out:
        return torch.empty(0, 0)
    return torch.cat(out)


def predict_proba(model: nn.Module, images: torch.Tensor, ctx: RunContext, batch_size: int = 512) -> torch.Tensor:
    """Class probabilities (softmax of :func:`predict_logits`); a CPU float32 tensor."""
    return predict_logits(model, images, ctx, batch_size).softmax(dim=1)


def classification_scores(probs: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    """Accuracy, balanced accuracy and ROC AUC of predicted probabilities.

    ROC AUC: for two classes, of the positive class's probability; for more,
    one-vs-rest macro average. When a class is missing from ``labels`` its AUC
    is undefined, so the average runs over the classes present; with fewer
    than two classes present the AUC is NaN.
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

    p = np.asarray(torch.as_tensor(probs).detach().cpu(), dtype=np.float64)
    y = np.asarray(torch.as_tensor(labels).detach().cpu(), dtype=np.int64)
    if p.ndim != 2 or p.shape != (y.shape[0], num_classes):
        raise UserError(f"probabilities of shape {p.shape} do not match {y.shape[0]} labels and {num_classes} classes")
    pred = p.argmax(axis=1)
    present = np.unique(y)
    with warnings.catch_warnings():
        if present.size < 2:  # a one-class split is reported as such through the NaN AUC
            warnings.simplefilter("ignore", UserWarning)
        scores = {
            "accuracy": float(accuracy_score(y, pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        }
    if present.size < 2:
        auc = float("nan")
    elif num_classes == 2:
        auc = float(roc_auc_score(y, p[:, 1]))
    elif present.size == num_classes:
        p = p / p.sum(axis=1, keepdims=True)
        auc = float(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    else:
        auc = float(np.mean([roc_auc_score(y == c, p[:, c]) for c in present]))
    scores["roc_auc"] = auc
    return scores

"""Train K classifiers of one architecture as one vectorised model: the protocol of :mod:`privbench.training`, K at a time.

The K models' parameters are stacked (``torch.func.stack_module_state``) and
one forward pass runs all of them (``torch.func.vmap`` over
``functional_call``), each on its own mini-batch. The loss is the sum of the
K models' mean losses, so each model's slice of the stacked gradient is its
own gradient, and SGD with momentum and weight decay, being elementwise,
updates each slice exactly as K separate optimisers would. Each model keeps
its own generator for shuffling and augmentation, drawn in the same order as
:func:`privbench.training.train_classifier` draws them, so model k comes out
as it would from a sequential training with generator k, up to the rounding of
the batched kernels.

Fewer, larger kernels pay where launches and synchronisation cost (a GPU); a
CPU spends the same arithmetic either way. Models with batch norm (running
statistics updated in place) and the torchvision ResNets are trained
sequentially: :func:`can_ensemble` says which.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from privbench.api import RunContext
from privbench.errors import UserError
from privbench.nets import ConvNet
from privbench.training import (
    TrainConfig, autocast, check_inputs, compiled_step, make_dsa, protocol_optimizer, stage,
)


def can_ensemble(models: Sequence[nn.Module]) -> bool:
    """True when the models are ConvNets of one shape without batch norm (what vmap can train together)."""
    if len(models) < 2 or not all(type(m) is ConvNet for m in models):
        return False
    if any(isinstance(mod, nn.modules.batchnorm._BatchNorm) for m in models for mod in m.modules()):
        return False
    shapes = [[tuple(p.shape) for p in m.state_dict().values()] for m in models]
    return all(s == shapes[0] for s in shapes)


def train_ensemble(
    models: Sequence[nn.Module],
    images: torch.Tensor | Sequence[torch.Tensor],
    labels: torch.Tensor | Sequence[torch.Tensor],
    config: TrainConfig,
    ctx: RunContext,
    *,
    generators: Sequence[torch.Generator],
    progress_label: str | None = None,
) -> list[nn.Module]:
    """Train ``models`` (generator k for model k); return them in eval mode.

    ``images`` and ``labels`` are one set every model trains on (the seeds of
    a utility score) or one set per model, all of one shape (the target models
    of shadow pipelines, each on its own release). Equivalent to
    ``[train_classifier(m, x, y, config, ctx, generator=g) for ...]`` up to
    float rounding; refuses models :func:`can_ensemble` rejects.
    """
    from torch.func import functional_call, stack_module_state, vmap

    k = len(models)
    image_sets = [images] * k if isinstance(images, torch.Tensor) else list(images)
    label_sets = [labels] * k if isinstance(labels, torch.Tensor) else list(labels)
    if len(generators) != k or len(image_sets) != k or len(label_sets) != k:
        raise UserError(f"{k} models need as many generators and training sets, got {len(generators)} and "
                        f"{len(image_sets)}")
    for x, y in zip(image_sets, label_sets):
        check_inputs(x, y)
    if any(x.shape != image_sets[0].shape for x in image_sets):
        raise UserError("the models of an ensemble train on sets of one shape, got "
                        f"{sorted({tuple(x.shape) for x in image_sets})}")
    if not can_ensemble(models):
        raise UserError("an ensemble needs two or more ConvNets of one shape without batch norm")
    device = ctx.torch_device
    models = [m.to(device).train() for m in models]
    params, buffers = stack_module_state(list(models))
    skeleton = copy.deepcopy(models[0]).to("meta")

    def forward(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(skeleton, (p, b), (x,))

    batched_forward = compiled_step(vmap(forward), config, device, keep=False)
    staged: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}  # one copy of a set models share
    for x, y in zip(image_sets, label_sets):
        if (id(x), id(y)) not in staged:
            staged[id(x), id(y)] = (stage(x.detach().float(), device), stage(y.detach().long(), device))
    data = [staged[id(x), id(y)] for x, y in zip(image_sets, label_sets)]
    n = image_sets[0].shape[0]
    augmenters = [make_dsa(config, m) for m in models]
    optimizer, schedule = protocol_optimizer(list(params.values()), config)
    label = progress_label or f"training {k} x {type(models[0]).__name__}"
    with ctx.progress.task(label, total=config.epochs) as task:
        for _ in range(config.epochs):
            orders = [torch.randperm(n, generator=g) for g in generators]
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            for start in range(0, n, config.batch_size):
                xs, ys = [], []
                for order, dsa, g, (x_all, y_all) in zip(orders, augmenters, generators, data):
                    idx = order[start : start + config.batch_size]
                    x = x_all[idx.to(x_all.device)].to(device, non_blocking=True)
                    xs.append(dsa(x, g, per_sample=True) if dsa is not None else x)
                    ys.append(y_all[idx.to(y_all.device)].to(device, non_blocking=True))
                y = torch.stack(ys)
                with autocast(config, device):
                    logits = batched_forward(params, buffers, torch.stack(xs)).float()
                    per_image = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none",
                                                label_smoothing=config.label_smoothing)
                loss = per_image.view(k, -1).mean(1).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += per_image.detach().sum() / k
                correct += (logits.detach().argmax(-1) == y).sum()
            schedule.step()
            # One host synchronisation per epoch; loss and accuracy are the members' means.
            task.advance(1, loss=float(loss_sum) / n, acc=int(correct) / (n * k))
    with torch.no_grad():
        for i, model in enumerate(models):
            for name, tensor in model.named_parameters():
                tensor.copy_(params[name][i])
            for name, tensor in model.named_buffers():
                tensor.copy_(buffers[name][i])
    return [m.eval() for m in models]

"""Refinement of ``ddm`` candidates by the distribution-matching (DM) loss.

For each class c the loss is ``|| mean_i f(x_i) - mu_c ||^2`` over the
candidates generated for c, where ``mu_c`` is the mean embedding of the real
images of c. The pixels are the parameters; Adam moves them (its step size
does not depend on the scale of the features, which differs a lot between a
trained and a random network) and they are clamped to ``[0, 1]`` after every
step, so the images stay valid.

With a trained f_phi the real means are fixed and computed once. With random
networks a fresh ConvNet is drawn each step, as DM does, and the real means
come from a random real batch per class, both sides transformed by the same
differentiable Siamese augmentation.

A class with more candidates than ``refine_batch`` is handled in chunks with
the exact gradient: the mean embedding is computed first without a graph, then
each chunk back-propagates ``<f(x_i), 2 (m - mu)> / n``, whose gradient is the
loss's.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from privbench.api import RunContext, Split
from privbench.augment import DSA
from privbench.compiling import maybe_compiled
from privbench.nets import channel_stats
from privbench.training import derive_seed

from privbench_builtins.distillers._feature_space import feature_net

REPORT_EVERY = 10


def _match_class(
    net: nn.Module,
    leaf: torch.Tensor,
    index: torch.Tensor,
    target: torch.Tensor,
    chunk: int,
    transform: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Back-propagate the DM loss of the candidates ``leaf[index]`` into ``leaf``; return the loss (detached)."""
    n = index.numel()
    if n <= chunk:
        loss = (net.embed(transform(leaf[index])).mean(0) - target).pow(2).sum()
        loss.backward()
        return loss.detach()
    parts = torch.split(index, chunk)
    with torch.no_grad():
        m = sum(net.embed(transform(leaf[part])).sum(0) for part in parts) / n
        g = 2.0 * (m - target)
    for part in parts:
        (net.embed(transform(leaf[part])) @ g).sum().div(n).backward()
    return (m - target).pow(2).sum()


def refine(
    images: torch.Tensor,
    classes: torch.Tensor,
    train: Split,
    num_classes: int,
    config: Any,
    ctx: RunContext,
    seed: int,
    *,
    net: nn.Module | None = None,
    means: torch.Tensor | None = None,
    salt: object = 0,
) -> tuple[torch.Tensor, float]:
    """Refined candidates (CPU, ``[0, 1]``) and the last step's DM loss summed over classes.

    ``net`` and ``means`` are the fixed feature space of the ``trained``
    mode; without them a random network is drawn every step.
    """
    device = ctx.torch_device
    if config.refine_steps <= 0 or images.shape[0] == 0:
        return images.clone(), float("nan")
    x = images.to(device, torch.float32).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=config.refine_lr)
    gen = torch.Generator().manual_seed(derive_seed(seed, "ddm", "refine", salt))
    groups = {c: (classes == c).nonzero().flatten() for c in classes.unique().tolist()}
    groups_dev = {c: idx.to(device) for c, idx in groups.items()}
    fixed = net is not None and means is not None
    if not fixed:
        stats = channel_stats(train.images)
        real_index = {c: (train.labels == c).nonzero().flatten() for c in groups}
        dsa = DSA(config.refine_dsa, mean=stats[0], std=stats[1])
    last = float("nan")
    with ctx.progress.task("ddm: refining candidates (DM loss)", total=config.refine_steps) as task:
        for step in range(config.refine_steps):
            optimizer.zero_grad(set_to_none=True)
            total = torch.zeros((), device=device)
            if fixed:
                step_net = net
            else:
                step_net = feature_net(train, num_classes, config, ctx, seed, trained=False,
                                       salt=("refine", salt, step), stats=stats)
            step_net = maybe_compiled(step_net, getattr(config, "refine_compile", False), device)
            for c, idx in groups_dev.items():
                if fixed:
                    target, transform = means[c], _identity
                else:
                    target, transform = _random_target(step_net, train, real_index[c], dsa, config, ctx, gen)
                total = total + _match_class(step_net, x, idx, target, config.refine_batch, transform)
            optimizer.step()
            with torch.no_grad():
                x.clamp_(0.0, 1.0)
            if (step + 1) % REPORT_EVERY == 0 or step + 1 == config.refine_steps:
                last = float(total)
                task.advance((step % REPORT_EVERY) + 1, loss=last)
    return x.detach().cpu(), last


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@torch.no_grad()
def _random_target(
    net: nn.Module, train: Split, index: torch.Tensor, dsa: DSA, config: Any, ctx: RunContext, gen: torch.Generator
) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """A real batch's mean embedding under one sampled augmentation, and that same augmentation."""
    pick = index[torch.randperm(index.numel(), generator=gen)[: config.real_batch]]
    real = train.images[pick].to(ctx.torch_device, torch.float32)
    if not dsa.enabled:
        return net.embed(real).mean(0), _identity
    params = dsa.sample(gen)
    return net.embed(dsa.apply(real, params)).mean(0), lambda x: dsa.apply(x, params)


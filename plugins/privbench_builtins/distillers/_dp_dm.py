"""Differentially private distribution matching: the private data enters only through a sampled Gaussian mechanism.

Each iteration, for every class c, each training image of c joins the batch
independently with probability q (Poisson sampling); its embedding under the
iteration's random ConvNet, after the class's DSA transform, is clipped to L2
norm C; the clipped sum gets Gaussian noise of standard deviation sigma x C and
is divided by q x n_c (the expected batch size; the class counts n_c are
public: declared with the dataset, or counted and then declared public). One image changes one class's sum by at most C, so each
iteration is one sampled Gaussian mechanism of noise multiplier sigma, and the
T iterations compose into the (epsilon, delta) that :mod:`privbench.accounting`
computes. Everything else is independent of the private images: the
initialisation (noise), the input normalisation (fixed constants), the random
networks and the DSA parameters (seeded). The sampling and the noise are drawn
from the operating system's entropy, never from the recorded seed: a seed in
the manifest would let anyone regenerate the noise and subtract it.

The synthetic embeddings are clipped the same way (no privacy cost), so both
sides of the matching live in the same ball.
"""

from __future__ import annotations

import math
import secrets
from typing import Any, Sequence

import torch

from privbench.accounting import guarantee, noise_for
from privbench.api import Dataset, Release, RunContext
from privbench.augment import DSA, AugParams
from privbench.training import ON_DEVICE_LIMIT

from . import _matching as m
from ._dm import embed_real, real_chunk

FIXED_MEAN, FIXED_STD = 0.5, 0.5
"""Input normalisation by constants: the private set's own mean and std would be a statistic to pay for."""


def clip_rows(rows: torch.Tensor, clip: float) -> torch.Tensor:
    """Each row scaled to L2 norm at most ``clip`` (differentiable; ``inf`` leaves rows unchanged)."""
    if math.isinf(clip):
        return rows
    norms = rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return rows * (clip / norms).clamp(max=1.0)


def auto_delta(n: int) -> float:
    """Below 1/n, as a meaningful guarantee needs: 1 / (10 n)."""
    return 1.0 / (10 * max(1, n))


def noisy_class_means(net: torch.nn.Module, dsa: DSA, by_class: Sequence[torch.Tensor], source: torch.Tensor,
                      params: Sequence[AugParams] | None, q: float, clip: float, sigma: float, dim: int,
                      sampler: torch.Generator, noise: torch.Generator, chunk: int | None,
                      counts: Sequence[int]) -> torch.Tensor:
    """The mechanism: per class, (sum of clipped embeddings of a Poisson sample + N(0, (sigma C)^2)) / (q n_c).

    ``counts`` are the public class sizes n_c (never counted from the sample).
    """
    device = net_device(net)
    means = []
    for c, idx in enumerate(by_class):
        picked = idx[torch.rand(idx.numel(), generator=sampler) < q] if q < 1 else idx
        total = torch.zeros(dim, device=device)
        if picked.numel():
            x = source[picked.to(source.device)].to(device)
            if params is not None:
                x = m.augment_by_class(dsa, x, [x.shape[0]], [params[c]])
            total = clip_rows(embed_real(net, x, chunk), clip).sum(0)
        if sigma > 0:
            total = total + (torch.randn(dim, generator=noise) * (sigma * clip)).to(device)
        means.append(total / (q * counts[c]))
    return torch.stack(means)


def synthetic_class_means(net: torch.nn.Module, dsa: DSA, syn: m.SyntheticSet,
                          params: Sequence[AugParams] | None, clip: float) -> torch.Tensor:
    rows = net.embed(m.augment_by_class(dsa, syn.pixels(), syn.counts, params))
    return m.segment_means(clip_rows(rows, clip), syn.counts)


def net_device(net: torch.nn.Module) -> torch.device:
    return next(net.parameters()).device


def _secret_generator() -> torch.Generator:
    return torch.Generator().manual_seed(secrets.randbits(63))


def dp_distribution_matching(private: Dataset, ipc: int, config: Any, ctx: RunContext, name: str = "dp-dm") -> Release:
    """Learn ``ipc`` images per class from noisy class means; the manifest states the guarantee."""
    m.check_request(private, ipc, config.init, name)
    m.check_strategy(config.dsa_strategy, name)
    device = ctx.torch_device
    n = len(private.train)
    delta = config.delta or auto_delta(n)
    sigma = noise_for(config.epsilon, delta, config.sample_rate, max(1, config.iterations), config.accountant)
    private_run = sigma > 0
    c = private.channels
    stats = (torch.full((c,), FIXED_MEAN), torch.full((c,), FIXED_STD))
    syn = m.SyntheticSet(private, ipc, config.init, stats, device, m.seeded_generator(ctx.seed, name, "init"))
    labels = private.train.labels
    by_class = [torch.nonzero(labels == k).flatten() for k in range(private.num_classes)]
    counts, counts_source = private.declared_class_counts()
    images = private.train.images  # on the device when it fits there, the policy of the shared training loop
    source = images.to(device) if images.element_size() * images.nelement() <= ON_DEVICE_LIMIT else images
    sampler = _secret_generator() if private_run else m.seeded_generator(ctx.seed, name, "sample")
    noise = _secret_generator() if private_run else m.seeded_generator(ctx.seed, name, "noise")
    aug_generator = m.seeded_generator(ctx.seed, name, "dsa")
    dsa = DSA(config.dsa_strategy, mean=stats[0], std=stats[1])
    optimizer = torch.optim.SGD([syn.z], lr=config.lr_img, momentum=config.momentum)
    chunk = real_chunk(device, config, private.image_shape)
    with ctx.progress.task(f"{name} ipc {ipc}", total=config.iterations) as task:
        log = m.LossLog(task, scale=private.num_classes)
        for it in range(config.iterations):
            net = m.iteration_net(private, stats, config, ctx.seed, name, it, device)
            params = m.sample_per_class(dsa, aug_generator, private.num_classes)
            fake = synthetic_class_means(net, dsa, syn, params, config.clip_norm)
            real = noisy_class_means(net, dsa, by_class, source, params, config.sample_rate, config.clip_norm,
                                     sigma, fake.shape[1], sampler, noise, chunk, counts)
            log.add(m.descend(optimizer, (real - fake).pow(2).sum()))
        losses = log.values()
    privacy = guarantee(sigma, config.sample_rate, max(1, config.iterations), delta, config.clip_norm,
                        config.accountant)
    privacy["public"] = (f"the number of training images of each class ({counts_source}); the image shape; "
                         "the class names")
    privacy["public_class_counts"] = counts
    privacy["noise_source"] = "operating-system entropy (not the seed)" if private_run else "none (epsilon inf)"
    return m.matched_release(name, ipc, syn, losses, "squared distance of the noisy real and the synthetic "
                             "class means of clipped embeddings, averaged over classes", privacy=privacy)

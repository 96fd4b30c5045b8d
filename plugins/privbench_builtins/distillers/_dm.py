"""Distribution matching: the loss and the optimisation loop behind the ``dm`` plugin.

Each iteration samples a fresh random ConvNet (its weights are never trained),
embeds a real batch and the synthetic images of every class, and moves the
synthetic images so that each class's mean embedding matches the real one:
``sum_c || mean f(A_c(real_c)) - mean f(A_c(syn_c)) ||^2`` with ``A_c`` one
Siamese DSA transformation per class. With ``feature_extractor=resnet18`` f is
one fixed ImageNet ResNet-18 (``_pretrained.py``), built once per run; the
real batches, the DSA and the loss are the same.

All classes share one forward pass for the real images (no gradient needed)
and one for the synthetic images, and the per-class means are segment sums.
Instance norm (the default) and no norm work per image, so this is the same
loss as the reference's per-class loop, which :func:`dm_loss_per_class` keeps
for comparison; with batch norm the batched pass is the reference's own
batch-norm branch (statistics over all classes together).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from privbench.api import Dataset, Release, RunContext
from privbench.augment import DSA, AugParams
from privbench.compiling import maybe_compiled
from privbench.training import autocast_as, precision_dtype

from . import _matching as m


CPU_CHUNK_BYTES = 8 << 20
"""On a CPU, real images are embedded in chunks whose first feature map is about this size."""


def real_chunk(device: torch.device, config: Any, image_shape: Sequence[int]) -> int | None:
    """How many real images to embed at a time: all on a GPU; on a CPU, as many as keep caches warm.

    At 28 px the first feature map of 256 images is over 100 MB; streaming it
    through convolution, norm, activation and pooling in cache-sized chunks is
    about 1.5x faster on a CPU, and gives the same numbers up to rounding.
    Batch norm needs the whole batch's statistics, so it is never chunked.
    The ResNet-18's batch norm is in eval mode (per image), so it is chunked
    by the size of its stem's output: 64 channels at half the upsampled side.
    """
    if device.type != "cpu":
        return None
    _, h, w = image_shape
    if getattr(config, "feature_extractor", "random_convnet") == "resnet18":
        from ._pretrained import MIN_SIDE

        scale = max(1.0, MIN_SIDE / min(h, w))
        return max(1, CPU_CHUNK_BYTES // int(4 * 64 * (h * scale / 2) * (w * scale / 2)))
    if config.norm == "batchnorm":
        return None
    return max(1, CPU_CHUNK_BYTES // (4 * config.width * h * w))


def embed_real(net: torch.nn.Module, x: torch.Tensor, chunk: int | None,
               dtype: torch.dtype | None = None) -> torch.Tensor:
    """Embeddings of real images, without a graph, ``chunk`` images at a time (all at once for None).

    ``dtype`` (``torch.bfloat16``) runs the pass under autocast, float32 out;
    None computes in float32.
    """
    with torch.no_grad(), autocast_as(x.device, dtype):
        if chunk is None or x.shape[0] <= chunk:
            return net.embed(x).float()
        return torch.cat([net.embed(part).float() for part in x.split(chunk)])


def dm_loss(
    net: torch.nn.Module,
    dsa: DSA,
    real: torch.Tensor,
    real_counts: Sequence[int],
    syn: torch.Tensor,
    syn_counts: Sequence[int],
    params: Sequence[AugParams] | None,
    chunk: int | None = None,
    real_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The DM loss of class-sorted real and synthetic batches, every class in one pass per side."""
    real_embedded = embed_real(net, m.augment_by_class(dsa, real, real_counts, params), chunk, real_dtype)
    syn_embedded = net.embed(m.augment_by_class(dsa, syn, syn_counts, params))
    return (m.segment_means(real_embedded, real_counts) - m.segment_means(syn_embedded, syn_counts)).pow(2).sum()


def dm_loss_per_class(
    net: torch.nn.Module,
    dsa: DSA,
    real: torch.Tensor,
    real_counts: Sequence[int],
    syn: torch.Tensor,
    syn_counts: Sequence[int],
    params: Sequence[AugParams] | None,
    chunk: int | None = None,
    real_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The same loss computed one class at a time, as the reference does (for comparison and timing)."""
    loss = syn.new_zeros(())
    for k, (xr, xs) in enumerate(zip(real.split(list(real_counts)), syn.split(list(syn_counts)))):
        if params is not None:
            xr, xs = dsa.apply(xr, params[k]), dsa.apply(xs, params[k])
        real_mean = embed_real(net, xr, chunk, real_dtype).mean(0)
        loss = loss + (real_mean - net.embed(xs).mean(0)).pow(2).sum()
    return loss


def learning_rate(config: Any, ipc: int) -> float:
    """``lr_img`` if set, else the reference's choice: 1 for up to 50 images per class, 10 above."""
    if config.lr_img is not None:
        return float(config.lr_img)
    return 1.0 if ipc <= 50 else 10.0


def distribution_matching(private: Dataset, ipc: int, config: Any, ctx: RunContext, name: str = "dm") -> Release:
    """Learn ``ipc`` images per class by distribution matching; the manifest keeps the loss history."""
    m.check_request(private, ipc, config.init, name)
    m.check_strategy(config.dsa_strategy, name)
    device = ctx.torch_device
    fixed, extra = None, {}
    if config.feature_extractor == "resnet18":
        from ._pretrained import resnet18_features

        fixed, extra["feature_extractor"] = resnet18_features(config.feature_weights, private.channels, name, device)
    stats = m.image_stats(private)
    real = m.RealBatches(private, config.batch_real, device, m.seeded_generator(ctx.seed, name, "real"))
    syn = m.SyntheticSet(private, ipc, config.init, stats, device, m.seeded_generator(ctx.seed, name, "init"))
    aug_generator = m.seeded_generator(ctx.seed, name, "dsa")
    lr = learning_rate(config, ipc)
    optimizer = torch.optim.SGD([syn.z], lr=lr, momentum=config.momentum)
    loss_fn = dm_loss if config.batched else dm_loss_per_class
    chunk = real_chunk(device, config, private.image_shape)
    real_dtype = precision_dtype(getattr(config, "real_precision", "fp32"))
    # The ConvNet normalises with ``stats``, so DSA works in that same space (as in the reference); the
    # ResNet-18 gets the same augmented [0, 1] images and normalises them its own way.
    dsa = DSA(config.dsa_strategy, mean=stats[0], std=stats[1])
    with ctx.progress.task(f"{name} ipc {ipc}", total=config.iterations) as task:
        log = m.LossLog(task, scale=private.num_classes)
        for it in range(config.iterations):
            net = fixed if fixed is not None else m.iteration_net(private, stats, config, ctx.seed, name, it, device)
            net = maybe_compiled(net, getattr(config, "compile", False), device)
            x_real, real_counts = real.draw()
            params = m.sample_per_class(dsa, aug_generator, private.num_classes)
            loss = loss_fn(net, dsa, x_real, real_counts, syn.pixels(), syn.counts, params, chunk, real_dtype)
            log.add(m.descend(optimizer, loss))
        losses = log.values()
    return m.matched_release(
        name, ipc, syn, losses,
        "DM loss per class: squared distance of mean embeddings, averaged over classes", lr_img=lr, **extra,
    )

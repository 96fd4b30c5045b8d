"""Gradient matching ("DC"): the distance, the loop schedule and the optimisation behind ``gm``.

Each iteration takes a freshly initialised ConvNet. In each of ``outer`` steps
the synthetic images of every class move so that the gradient of the
classification loss on them matches the gradient on a real batch of that
class; between steps the network trains for ``inner`` epochs on the current
synthetic set (the shared training loop, plain SGD as in the reference), so
the matching follows the network along a training trajectory.

Per-class gradients of every class can come from one vectorised call
(``torch.func.vmap`` over classes of ``torch.func.grad``) when the classes'
batches have equal sizes: the same computation as the reference's per-class
loop with fewer, larger kernels, which pays on a GPU. On a CPU the loop is
faster (vmap turns the weight gradients into grouped convolutions), so
``class_batching="auto"`` picks by device.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from privbench.api import Dataset, ProgressReporter, Release, RunContext
from privbench.augment import DSA, AugParams
from privbench.compiling import maybe_compiled
from privbench.training import TrainConfig, autocast_as, precision_dtype, train_classifier

from . import _matching as m

# The reference's get_loops: images per class -> (outer loop, inner loop).
LOOP_ANCHORS = ((1, 1, 1), (10, 10, 50), (20, 20, 25), (30, 30, 20), (40, 40, 15), (50, 50, 10))
EPSILON = 1e-6  # added to the product of norms, as in the reference's distance
CPU_GRADIENT_CHUNK_BYTES = 12 << 20
"""On a CPU, a class's real gradient is summed over chunks whose first feature map is about this size."""


def loops_for(ipc: int) -> tuple[int, int]:
    """Outer and inner loop lengths for ``ipc``.

    The reference defines 1 -> (1, 1), 10 -> (10, 50), 20 -> (20, 25),
    30 -> (30, 20), 40 -> (40, 15), 50 -> (50, 10) and exits otherwise. Between
    those points both numbers are interpolated linearly and rounded (so the
    outer loop is ``ipc`` up to 50: 2 -> (2, 6), 5 -> (5, 23), 15 -> (15, 38));
    above 50 the last point is kept (50, 10).
    """
    if ipc < 1:
        raise ValueError(f"ipc must be positive, got {ipc}")
    for (i0, o0, n0), (i1, o1, n1) in zip(LOOP_ANCHORS, LOOP_ANCHORS[1:]):
        if i0 <= ipc <= i1:
            t = (ipc - i0) / (i1 - i0)
            return int(o0 + t * (o1 - o0) + 0.5), int(n0 + t * (n1 - n0) + 0.5)
    return LOOP_ANCHORS[-1][1], LOOP_ANCHORS[-1][2]


def gradient_chunk(device: torch.device, width: int, image_shape: Sequence[int]) -> int | None:
    """How many real images enter one backward pass: all on a GPU; on a CPU, a cache-sized chunk.

    A class's 256 real images at 28 px make feature maps of 100 MB and more,
    which glibc serves as fresh pages on every pass; summed over chunks of 31
    images the same gradient came 1.7x faster on a 2-core Xeon (with the
    allocator of :mod:`privbench.allocator`). The sum is exact up to rounding:
    every norm of GM's network is per image while the matching runs (batch
    norm is frozen by :func:`freeze_batchnorm`).
    """
    if device.type != "cpu":
        return None
    _, h, w = image_shape
    return max(1, CPU_GRADIENT_CHUNK_BYTES // (4 * width * h * w))


def _rows_distance(syn: torch.Tensor, real: torch.Tensor, lead: int) -> torch.Tensor:
    """Sum over output rows of 1 - cosine; ``lead`` leading dimensions (classes) are kept apart."""
    rows = syn.shape[lead]
    a = syn.reshape(*syn.shape[:lead], rows, -1)
    b = real.reshape(*real.shape[:lead], rows, -1)
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + EPSILON)
    return (1 - cos).sum()


def gradient_distance(
    syn: Mapping[str, torch.Tensor] | Sequence[torch.Tensor],
    real: Mapping[str, torch.Tensor] | Sequence[torch.Tensor],
    classes: bool = False,
) -> torch.Tensor:
    """The layer-wise distance of DC between two sets of parameter gradients.

    For each tensor with more than one dimension, reshaped to (output rows,
    -1): the sum over rows of ``1 - cos(syn_row, real_row)``; tensors of one
    dimension (biases, norm weights) are skipped, as in the reference. With
    ``classes`` every tensor carries a leading class dimension and the
    distances of all classes are summed.
    """
    if isinstance(syn, Mapping) != isinstance(real, Mapping):
        raise TypeError("pass two mappings or two sequences of gradients")
    pairs = [(syn[k], real[k]) for k in real] if isinstance(real, Mapping) else list(zip(syn, real))
    lead = 1 if classes else 0
    total = None
    for s, r in pairs:
        if s.shape != r.shape:
            raise ValueError(f"gradient shapes differ: {tuple(s.shape)} and {tuple(r.shape)}")
        if s.ndim - lead <= 1:
            continue
        d = _rows_distance(s, r, lead)
        total = d if total is None else total + d
    if total is None:
        return torch.zeros(())
    return total


class ClassGradients:
    """Per-class gradients of the cross-entropy with respect to a network's weights of two or more dimensions."""

    def __init__(self, net: torch.nn.Module, vectorise: bool, chunk: int | None = None, compile: bool = False):
        self.net = net
        self.vectorise = vectorise
        self.chunk = chunk
        self.real_forward = maybe_compiled(net, compile, next(net.parameters()).device)
        self.names = [n for n, p in net.named_parameters() if p.ndim > 1]

    def _weights(self) -> dict[str, torch.Tensor]:
        params = dict(self.net.named_parameters())
        return {n: params[n].detach() for n in self.names}

    def __call__(self, x: torch.Tensor, counts: Sequence[int], differentiable: bool) -> dict[str, torch.Tensor]:
        """``{name: classes x shape}`` for the class-sorted batch ``x``.

        ``differentiable`` keeps the graph to ``x`` (synthetic images);
        otherwise the gradients are plain tensors (real images), summed over
        chunks of ``chunk`` images when a class has more.
        """
        classes = len(counts)
        labels = torch.arange(classes, device=x.device).repeat_interleave(torch.tensor(list(counts), device=x.device))
        if self.vectorise and len(set(counts)) == 1:
            return self._vectorised(x, labels, classes, differentiable)
        out = {n: [] for n in self.names}
        params = dict(self.net.named_parameters())
        weights = [params[n] for n in self.names]
        for xs, ys in zip(x.split(list(counts)), labels.split(list(counts))):
            if differentiable:
                with torch.enable_grad():
                    grads = torch.autograd.grad(F.cross_entropy(self.net(xs), ys), weights, create_graph=True)
            else:
                grads = self._summed(xs, ys, weights)
            for n, g in zip(self.names, grads):
                out[n].append(g)
        return {n: torch.stack(gs) for n, gs in out.items()}

    def _summed(self, xs: torch.Tensor, ys: torch.Tensor, weights: list[torch.Tensor]) -> list[torch.Tensor]:
        """The mean loss's gradient for one class, as the sum of its chunks' summed losses over the class size."""
        size = xs.shape[0]
        chunk = size if self.chunk is None else self.chunk
        total: list[torch.Tensor] | None = None
        for part_x, part_y in zip(xs.split(chunk), ys.split(chunk)):
            with torch.enable_grad():
                loss = F.cross_entropy(self.real_forward(part_x), part_y, reduction="sum") / size
                grads = torch.autograd.grad(loss, weights)
            total = list(grads) if total is None else [t.add_(g) for t, g in zip(total, grads)]
        return total

    def _vectorised(self, x: torch.Tensor, labels: torch.Tensor, classes: int, differentiable: bool):
        from torch.func import functional_call, grad, vmap

        net = self.net

        def class_loss(weights: dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(functional_call(net, weights, (xs,)), ys)

        per_class = vmap(grad(class_loss), in_dims=(None, 0, 0))
        xs = x.reshape(classes, -1, *x.shape[1:])
        ys = labels.reshape(classes, -1)
        if differentiable:
            return per_class(self._weights(), xs, ys)
        with torch.no_grad():
            return per_class(self._weights(), xs, ys)


def gm_loss(
    grads: ClassGradients,
    dsa: DSA,
    real: torch.Tensor,
    real_counts: Sequence[int],
    syn: torch.Tensor,
    syn_counts: Sequence[int],
    params: Sequence[AugParams] | None,
    real_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The DC loss summed over classes, each class's real and synthetic batch under one DSA draw.

    ``real_dtype`` (``torch.bfloat16``) computes the real images' gradients under autocast.
    """
    x_real = m.augment_by_class(dsa, real, real_counts, params)
    with autocast_as(real.device, real_dtype):
        real_grads = grads(x_real, real_counts, differentiable=False)
    real_grads = {n: g.float() for n, g in real_grads.items()}
    syn_grads = grads(m.augment_by_class(dsa, syn, syn_counts, params), syn_counts, differentiable=True)
    return gradient_distance(syn_grads, real_grads, classes=True)


def freeze_batchnorm(net: torch.nn.Module, sample: m.RealBatches) -> None:
    """Batch-norm statistics from a real batch, then held fixed (a synthetic batch is too small for them)."""
    norms = [mod for mod in net.modules() if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm)]
    net.train()
    with torch.no_grad():
        net(sample.draw()[0])
    for mod in norms:
        mod.eval()


def gradient_matching(private: Dataset, ipc: int, config: Any, ctx: RunContext, name: str = "gm") -> Release:
    """Learn ``ipc`` images per class by gradient matching; the manifest keeps the loss history."""
    m.check_request(private, ipc, config.init, name)
    m.check_strategy(config.dsa_strategy, name)
    device = ctx.torch_device
    outer, inner = loops_for(ipc)
    outer = config.outer_loop or outer
    inner = config.inner_loop if config.inner_loop is not None else inner
    stats = m.image_stats(private)
    real = m.RealBatches(private, config.batch_real, device, m.seeded_generator(ctx.seed, name, "real"))
    # Batch-norm statistics come from 16 real images per class (the reference's BNSizePC).
    bn_sample = None
    if config.norm == "batchnorm":
        bn_sample = m.RealBatches(private, 16, device, m.seeded_generator(ctx.seed, name, "bn"))
    syn = m.SyntheticSet(private, ipc, config.init, stats, device, m.seeded_generator(ctx.seed, name, "init"))
    aug_generator = m.seeded_generator(ctx.seed, name, "dsa")
    train_generator = m.seeded_generator(ctx.seed, name, "train")
    dsa = DSA(config.dsa_strategy, mean=stats[0], std=stats[1])
    optimizer = torch.optim.SGD([syn.z], lr=config.lr_img, momentum=config.momentum)
    # The reference's inner loop: plain SGD (no momentum, no decay), augmentation per image when DSA is on.
    train_config = TrainConfig(
        epochs=max(1, inner),
        lr=config.lr_net,
        momentum=0.0,
        weight_decay=0.0,
        batch_size=config.batch_train,
        lr_decay_at=0.0,
        dsa=dsa.enabled,
        dsa_strategy=config.dsa_strategy if dsa.enabled else "none",
        precision=getattr(config, "precision", "fp32"),
        compile=getattr(config, "compile", False),
    )
    real_dtype = precision_dtype(train_config.precision)
    quiet = ctx.derive(progress=ProgressReporter())
    vectorise = config.class_batching == "vmap" or (config.class_batching == "auto" and device.type == "cuda")
    labels = syn.labels.to(device)
    chunk = gradient_chunk(device, config.width, private.image_shape)
    with ctx.progress.task(f"{name} ipc {ipc}", total=config.iterations) as task:
        # Averaged over classes and outer steps, as the reference prints it.
        log = m.LossLog(task, scale=private.num_classes * outer)
        for it in range(config.iterations):
            net = m.matching_net(
                private, stats, m.net_seed(ctx.seed, name, it), width=config.width, depth=config.depth, norm=config.norm
            ).to(device)
            net.train()
            grads = ClassGradients(net, vectorise, chunk, train_config.compile)
            total = torch.zeros((), device=device)
            for step in range(outer):
                if bn_sample is not None:
                    freeze_batchnorm(net, bn_sample)
                x_real, real_counts = real.draw()
                params = m.sample_per_class(dsa, aug_generator, private.num_classes)
                loss = gm_loss(grads, dsa, x_real, real_counts, syn.pixels(), syn.counts, params, real_dtype)
                optimizer.zero_grad(set_to_none=True)
                loss.backward(inputs=[syn.z])
                optimizer.step()
                total += loss.detach()
                if step == outer - 1 or inner == 0:
                    continue
                train_classifier(net, syn.pixels().detach(), labels, train_config, quiet, generator=train_generator,
                                 cuda_graphs=False)
                net.train()
            log.add(total)
        losses = log.values()
    return m.matched_release(
        name, ipc, syn, losses,
        "DC gradient distance per class, averaged over classes and outer steps", outer_loop=outer, inner_loop=inner,
    )

"""What the matching distillers (``dm``, ``gm``) share: real batches, the synthetic set, per-class DSA.

Both methods learn synthetic images by comparing them, class by class, with
random batches of real ones under a freshly initialised ConvNet. The pieces
here keep them short and identical where the papers are identical:

* :class:`RealBatches` draws each class's real batch on the CPU from a seeded
  generator and hands the device one class-sorted tensor, so a private set
  larger than device memory still works;
* :class:`SyntheticSet` holds the learnt images in the network's normalised
  space, the space the reference code learns in (its ``lr_img`` is a step size
  there, not in [0, 1] pixels), and converts at the boundary;
* :func:`augment_by_class` applies one Siamese DSA transformation per class to
  a class-sorted batch with as many calls as there are distinct operations,
  not one per class, so every class can then go through the network at once.

Imported lazily by the plugin modules, so listing plugins never imports torch.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from privbench.api import Dataset, Release, UserError, require_ipc_fits
from privbench.augment import DSA, AugParams, parse_strategy
from privbench.imagestore import is_streamed
from privbench.nets import channel_stats, make_model
from privbench.training import ON_DEVICE_LIMIT, derive_seed


def seeded_generator(seed: int, *purpose: object) -> torch.Generator:
    """A CPU generator for one purpose of one run (independent streams, reproducible)."""
    return torch.Generator().manual_seed(derive_seed(seed, *purpose))


def check_request(private: Dataset, ipc: int, init: str, method: str) -> None:
    """Refuse an ipc the method cannot honour, and classes without any training image."""
    if init == "real":
        require_ipc_fits(private, ipc, why=f"{method} initialises from real images; or use --set init=noise")
    elif ipc < 1:
        raise UserError(f"ipc must be a positive number of images per class, got {ipc}")
    counts = private.train.class_counts(private.num_classes)
    if 0 in counts:
        name = private.class_names[counts.index(0)]
        raise UserError(f"{method} cannot learn class {name!r}: it has no training images to match")


def check_strategy(strategy: str, method: str) -> None:
    """Refuse an unknown DSA strategy with the plugin named."""
    try:
        parse_strategy(strategy)
    except UserError as exc:
        raise UserError(f"distiller {method}: {exc}") from None


def matching_net(
    private: Dataset, stats: tuple[torch.Tensor, torch.Tensor], seed: int, *, width: int, depth: int, norm: str
) -> torch.nn.Module:
    """A freshly initialised ConvNet for one iteration, normalising with the private set's statistics."""
    return make_model(
        "convnet",
        private.channels,
        private.num_classes,
        private.image_shape[1:],
        seed=seed,
        mean=stats[0],
        std=stats[1],
        width=width,
        depth=depth,
        norm=norm,
    )


def image_stats(private: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of the private training images (the reference normalises with them)."""
    return channel_stats(private.train.images)


class RealBatches:
    """Random real batches, ``batch`` images per class (fewer for a smaller class), drawn without replacement.

    Indices are drawn on the CPU from ``generator``. A private set up to
    :data:`privbench.training.ON_DEVICE_LIMIT` bytes is moved to the device
    once (the policy of the shared training loop); a larger one stays in host
    memory (or on disk, when streamed) and only each drawn batch is copied over.
    """

    def __init__(self, private: Dataset, batch: int, device: torch.device, generator: torch.Generator):
        labels = private.train.labels
        self.by_class = [torch.nonzero(labels == c).flatten() for c in range(private.num_classes)]
        self.counts = [min(batch, int(idx.numel())) for idx in self.by_class]
        self.device = device
        self.generator = generator
        images = private.train.images
        fits = images.element_size() * images.nelement() <= ON_DEVICE_LIMIT
        if is_streamed(images) and device.type == "cpu":
            fits = False  # a streamed set stays on disk: each batch is read as it is drawn
        self.source = images.to(device) if fits else images
        self._pin = not fits and device.type == "cuda"

    def draw(self) -> tuple[torch.Tensor, list[int]]:
        """One class-sorted batch on the device, and the number of images of each class in it."""
        picks = [
            idx[torch.randperm(idx.numel(), generator=self.generator)[:n]]
            for idx, n in zip(self.by_class, self.counts)
        ]
        index = torch.cat(picks)
        if self.source.device == self.device:
            return self.source[index.to(self.device)], self.counts
        x = self.source[index]
        if self._pin:
            x = x.pin_memory()
        return x.to(self.device, non_blocking=True), self.counts


class SyntheticSet:
    """``ipc`` learnable images per class, kept as ``(x - mean) / std`` and sorted by class.

    ``init="real"`` starts from ``ipc`` distinct random training images of each
    class (their indices are kept in :attr:`init_indices`), ``"noise"`` from
    standard normal noise in the normalised space, as the reference does.
    """

    def __init__(
        self,
        private: Dataset,
        ipc: int,
        init: str,
        stats: tuple[torch.Tensor, torch.Tensor],
        device: torch.device,
        generator: torch.Generator,
    ):
        c, h, w = private.image_shape
        self.num_classes = private.num_classes
        self.ipc = ipc
        self.mean = stats[0].view(1, c, 1, 1).to(device)
        self.std = stats[1].view(1, c, 1, 1).to(device)
        self.labels = torch.arange(self.num_classes).repeat_interleave(ipc)
        self.init_indices: list[int] | None = None
        if init == "real":
            labels = private.train.labels
            picks = []
            for k in range(self.num_classes):
                idx = torch.nonzero(labels == k).flatten()
                picks.append(idx[torch.randperm(idx.numel(), generator=generator)[:ipc]])
            index = torch.cat(picks)
            self.init_indices = index.tolist()
            z = (private.train.images[index].to(device) - self.mean) / self.std
        elif init == "noise":
            z = torch.randn(self.num_classes * ipc, c, h, w, generator=generator).to(device)
        else:
            raise UserError(f"init must be 'real' or 'noise', got {init!r}")
        self.z = z.detach().clone().requires_grad_(True)

    @property
    def counts(self) -> list[int]:
        return [self.ipc] * self.num_classes

    def pixels(self) -> torch.Tensor:
        """The images as the network takes them (differentiable in :attr:`z`; not clamped)."""
        return self.z * self.std + self.mean

    def release_images(self) -> torch.Tensor:
        """The learnt images in [0, 1] on the CPU (clamped: the data contract of a release)."""
        return self.pixels().detach().clamp(0, 1).cpu()


def sample_per_class(dsa: DSA, generator: torch.Generator, num_classes: int) -> list[AugParams] | None:
    """One Siamese transformation per class (the reference draws one per class per step), or None when off."""
    if not dsa.enabled:
        return None
    return [dsa.sample(generator) for _ in range(num_classes)]


def augment_by_class(
    dsa: DSA, x: torch.Tensor, counts: Sequence[int], params: Sequence[AugParams] | None
) -> torch.Tensor:
    """Transform each class's rows of the class-sorted ``x`` by that class's ``params``.

    Classes that drew the same operation are transformed in one call, with
    their parameters repeated per row, which is exactly what applying each
    class's one-row parameters to that class's images gives.
    """
    if params is None:
        return x
    groups: dict[str, list[int]] = {}
    for k, p in enumerate(params):
        if counts[k]:
            groups.setdefault(p.op, []).append(k)
    starts = [0]
    for n in counts[:-1]:
        starts.append(starts[-1] + n)
    pieces, rows = [], []
    for op, classes in groups.items():
        u = torch.cat([params[k].u.expand(counts[k], -1) for k in classes])
        if len(groups) == 1:
            return dsa.apply(x, AugParams(op, u))
        index = torch.cat([torch.arange(starts[k], starts[k] + counts[k]) for k in classes])
        pieces.append(dsa.apply(x[index.to(x.device)], AugParams(op, u)))
        rows.append(index)
    inverse = torch.argsort(torch.cat(rows))
    return torch.cat(pieces)[inverse.to(x.device)]


def segment_means(rows: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
    """Per-class means of the class-sorted ``rows`` (N x D) -> (classes x D), in one reduction or scatter."""
    if len(set(counts)) == 1:
        return rows.view(len(counts), counts[0], -1).mean(1)
    device = rows.device
    sizes = torch.tensor(list(counts), device=device)
    segment = torch.repeat_interleave(torch.arange(len(counts), device=device), sizes)
    sums = torch.zeros(len(counts), rows.shape[1], device=device, dtype=rows.dtype).index_add(0, segment, rows)
    return sums / sizes.clamp_min(1).to(rows.dtype).unsqueeze(1)


def history_summary(losses: list[float], limit: int = 1000) -> tuple[list[float], int]:
    """At most ``limit`` points: the losses, or their means over equal windows of ``every`` iterations."""
    every = max(1, -(-len(losses) // limit))
    points = [sum(losses[i : i + every]) / len(losses[i : i + every]) for i in range(0, len(losses), every)]
    return [float(f"{v:.6g}") for v in points], every


def matched_release(name: str, ipc: int, syn: SyntheticSet, losses: list[float], definition: str, **extra) -> Release:
    """The learnt images as a release; the loss history (a statistic of the private images) and the training
    images the synthetic ones started from go to the private provenance, never into what is shared."""
    history, every = history_summary(losses)
    provenance = {"loss_history": history, "loss_history_every": every, "loss_definition": definition}
    if syn.init_indices is not None:
        provenance["init_indices"] = syn.init_indices
    return Release(syn.release_images(), syn.labels.clone(), {"method": name, "ipc": ipc, **extra}, provenance)


def net_seed(seed: int, method: str, iteration: int) -> int:
    return derive_seed(seed, method, "net", iteration)


def iteration_net(private: Dataset, stats: tuple[torch.Tensor, torch.Tensor], config: Any, seed: int, method: str,
                  iteration: int, device: torch.device) -> torch.nn.Module:
    """The fresh, frozen random ConvNet of one matching iteration (train mode, as the reference embeds)."""
    net = matching_net(private, stats, net_seed(seed, method, iteration), width=config.width, depth=config.depth,
                       norm=config.norm).to(device)
    net.requires_grad_(False)
    net.train()
    return net


READ_LOSS_EVERY = 25
"""Iterations between two reads of the loss on the host (for the progress bar): the steps never wait for it."""


class LossLog:
    """Per-iteration losses kept on the device, read on the host only every :data:`READ_LOSS_EVERY` steps.

    Reading a CUDA tensor waits for every queued kernel; logging ``float(loss)``
    each iteration would make the GPU idle between steps. ``values()`` reads
    the whole history once, at the end.
    """

    def __init__(self, task, scale: float = 1.0, every: int = READ_LOSS_EVERY):
        self.task, self.scale, self.every = task, scale, every
        self._pending: list[torch.Tensor] = []
        self._values: list[float] = []

    def add(self, loss: torch.Tensor) -> None:
        self._pending.append(loss.detach() / self.scale)
        if len(self._pending) >= self.every:
            self._flush()
        else:
            self.task.advance(1)

    def _flush(self, advance: int = 1) -> None:
        """Read the queued losses; advance the bar by the step just added (the others already were)."""
        if not self._pending:
            return
        values = torch.stack(self._pending).float().cpu().tolist()
        self._pending.clear()
        self._values.extend(values)
        self.task.advance(advance, loss=values[-1])

    def values(self) -> list[float]:
        """Every loss in order (one host read for what was still on the device)."""
        self._flush(advance=0)
        return list(self._values)


def descend(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> torch.Tensor:
    """One step on the synthetic images; returns the loss, detached and still on the device."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()

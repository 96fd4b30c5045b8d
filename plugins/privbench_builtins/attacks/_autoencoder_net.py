"""The reconstruction attack's convolutional autoencoder and its training loop.

Encoder: ``depth`` blocks of 3x3 convolution -> ReLU -> 2x2 max-pool, the
channels doubling from ``width``, then a 1x1 convolution to a latent of
``latent_channels`` (the bottleneck: the seed paper "compressed the input into
a latent space"; without one, 64 x 7 x 7 = 3,136 values for 784 pixels would
let the network learn a near-identity map that reconstructs anything);
decoder: the mirror image with nearest upsampling, then a 3x3 convolution to
the image's channels and a sigmoid, so outputs lie in [0, 1] like the inputs. Pools round up (``ceil_mode``) and each
upsampling restores the exact size its encoder block saw, so odd sizes (28 ->
14 -> 7 -> 4 and back) need no padding. Trained with MSE and Adam, as in the
seed paper's Section 4.3.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from privbench.api import RunContext


def code_size(size: tuple[int, int], depth: int) -> tuple[int, int]:
    """The bottleneck's height and width after ``depth`` pools that round up."""
    h, w = size
    for _ in range(depth):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return h, w


def latent_channels_for(fraction: float, channels: int, size: tuple[int, int], depth: int) -> int:
    """Latent channels so that the code holds at most ``fraction`` of the input's values (at least one)."""
    h, w = code_size(size, depth)
    return max(1, int(fraction * channels * size[0] * size[1] // (h * w)))


class ConvAutoencoder(nn.Module):
    def __init__(self, channels: int, size: tuple[int, int], width: int = 32, depth: int = 2,
                 latent_channels: int | None = None):
        super().__init__()
        h, w = size
        encoder: list[nn.Module] = []
        sizes = []
        c_in = channels
        for d in range(depth):
            c_out = width * 2**d
            encoder += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
            sizes.append((h, w))
            h, w = math.ceil(h / 2), math.ceil(w / 2)
            c_in = c_out
        decoder: list[nn.Module] = []
        if latent_channels:
            encoder.append(nn.Conv2d(c_in, latent_channels, 1))
            c_in = latent_channels
        self.code_shape = (c_in, h, w)
        for d in reversed(range(depth)):
            c_out = width * 2**d
            decoder += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.Upsample(size=sizes[d], mode="nearest")]
            c_in = c_out
        decoder += [nn.Conv2d(c_in, channels, 3, padding=1), nn.Sigmoid()]
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def train_autoencoder(
    images: torch.Tensor,
    *,
    width: int,
    depth: int,
    epochs: int,
    min_steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    ctx: RunContext,
    latent_fraction: float = 0.25,
    label: str = "autoencoder on the release",
) -> tuple[ConvAutoencoder, dict]:
    """An autoencoder fitted to ``images``; returns it in eval mode with the training facts."""
    device = ctx.torch_device
    size = tuple(images.shape[2:])
    latent = latent_channels_for(latent_fraction, images.shape[1], size, depth)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ConvAutoencoder(images.shape[1], size, width, depth, latent)
    model = model.to(device)
    x_all = images.detach().to(device, torch.float32)
    n = x_all.shape[0]
    per_epoch = math.ceil(n / batch_size)
    epochs_run = max(epochs, math.ceil(min_steps / per_epoch)) if min_steps > 0 else epochs
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed + 1)
    model.train()
    loss_sum = torch.zeros((), device=device)
    with ctx.progress.task(label, total=epochs_run) as task:
        for _ in range(epochs_run):
            order = torch.randperm(n, generator=gen)
            loss_sum = torch.zeros((), device=device)
            for start in range(0, n, batch_size):
                x = x_all[order[start : start + batch_size].to(device)]
                loss = F.mse_loss(model(x), x)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach() * x.shape[0]
            task.advance(1, mse=float(loss_sum) / n)
    h, w = code_size(size, depth)
    values = int(images[0].numel())
    facts = {"epochs_run": epochs_run, "steps": epochs_run * per_epoch, "final_train_mse": float(loss_sum) / n,
             "latent_shape": [latent, h, w], "latent_values": latent * h * w, "input_values": values,
             "latent_fraction_of_input": round(latent * h * w / values, 4)}
    return model.eval(), facts


@torch.no_grad()
def reconstruct(model: ConvAutoencoder, images: torch.Tensor, ctx: RunContext, batch_size: int = 512) -> torch.Tensor:
    """Reconstructions of ``images`` (CPU float32, clamped to [0, 1])."""
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(ctx.torch_device, torch.float32)
        out.append(model(x).float().clamp(0, 1).cpu())
    return torch.cat(out)

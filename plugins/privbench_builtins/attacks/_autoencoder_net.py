"""The reconstruction attack's convolutional autoencoder and its training loop.

Encoder: ``depth`` blocks of 3x3 convolution -> ReLU -> 2x2 max-pool, the
channels doubling from ``width``; decoder: the mirror image with nearest
upsampling, then a 3x3 convolution to the image's channels and a sigmoid, so
outputs lie in [0, 1] like the inputs. Pools round up (``ceil_mode``) and each
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


class ConvAutoencoder(nn.Module):
    def __init__(self, channels: int, size: tuple[int, int], width: int = 32, depth: int = 2):
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
        for d in reversed(range(depth)):
            c_out = width * 2**d
            decoder += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.Upsample(size=sizes[d], mode="nearest")]
            c_in = c_out
        decoder += [nn.Conv2d(c_in, channels, 3, padding=1), nn.Sigmoid()]
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)
        self.code_shape = (c_in, h, w)

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
) -> tuple[ConvAutoencoder, dict]:
    """An autoencoder fitted to ``images``; returns it in eval mode with the training facts."""
    device = ctx.torch_device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ConvAutoencoder(images.shape[1], tuple(images.shape[2:]), width, depth)
    model = model.to(device)
    x_all = images.detach().to(device, torch.float32)
    n = x_all.shape[0]
    per_epoch = math.ceil(n / batch_size)
    epochs_run = max(epochs, math.ceil(min_steps / per_epoch)) if min_steps > 0 else epochs
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed + 1)
    model.train()
    loss_sum = torch.zeros((), device=device)
    with ctx.progress.task("autoencoder on the release", total=epochs_run) as task:
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
    facts = {"epochs_run": epochs_run, "steps": epochs_run * per_epoch, "final_train_mse": float(loss_sum) / n}
    return model.eval(), facts


@torch.no_grad()
def reconstruct(model: ConvAutoencoder, images: torch.Tensor, ctx: RunContext, batch_size: int = 512) -> torch.Tensor:
    """Reconstructions of ``images`` (CPU float32, clamped to [0, 1])."""
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(ctx.torch_device, torch.float32)
        out.append(model(x).float().clamp(0, 1).cpu())
    return torch.cat(out)

"""The class-conditional DDPM behind ``ddm``: build, train and sample with diffusers.

Images cross this module's boundary in ``[0, 1]``. Inside, the model works in
``[-1, 1]`` on a *canvas*: the image padded (edge pixels replicated) to a
multiple of ``2 ** (levels - 1)`` so that every down-sampling of the UNet
halves cleanly. 28 x 28 with the default three levels needs no padding
(28 -> 14 -> 7); with four levels it becomes 32 x 32. Samples are cropped back
to the image size before they leave.

Every random draw (batch order, noise, timesteps, initial sampling noise) comes
from a CPU ``torch.Generator`` and is moved to the device, so a seed gives the
same model and samples on the same hardware.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from privbench.api import RunContext

LOSS_WINDOW = 50
"""The reported training loss is the mean over this many last steps (one step is noisy)."""

REPORT_EVERY = 25
"""Steps between progress updates: each one synchronises with the device."""


def canvas_padding(height: int, width: int, levels: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) padding that makes both sides divisible by ``2 ** (levels - 1)``."""
    multiple = 2 ** (levels - 1)
    pads = []
    for side in (width, height):
        extra = (-side) % multiple
        pads += [extra // 2, extra - extra // 2]
    return tuple(pads)  # type: ignore[return-value]


def to_model_space(images: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """``[0, 1]`` images -> ``[-1, 1]`` on the padded canvas."""
    x = images * 2.0 - 1.0
    return F.pad(x, pad, mode="replicate") if any(pad) else x


def to_image_space(samples: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """``[-1, 1]`` canvas -> ``[0, 1]`` images of the original size."""
    left, right, top, bottom = pad
    h, w = samples.shape[-2:]
    x = samples[..., top : h - bottom, left : w - right]
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def build_unet(config: Any, image_channels: int, num_classes: int, canvas: tuple[int, int], seed: int) -> UNet2DModel:
    """A small UNet2DModel with a class embedding; self-attention only at the lowest level (cheap there)."""
    levels = len(config.unet_channels)
    last_down = "AttnDownBlock2D" if config.attention else "DownBlock2D"
    first_up = "AttnUpBlock2D" if config.attention else "UpBlock2D"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DModel(
            sample_size=canvas,
            in_channels=image_channels,
            out_channels=image_channels,
            block_out_channels=tuple(config.unet_channels),
            layers_per_block=config.layers_per_block,
            down_block_types=("DownBlock2D",) * (levels - 1) + (last_down,),
            up_block_types=(first_up,) + ("UpBlock2D",) * (levels - 1),
            norm_num_groups=config.norm_groups,
            attention_head_dim=8,
            add_attention=config.attention,
            num_class_embeds=num_classes,
        )


def noise_scheduler(config: Any) -> DDPMScheduler:
    """The forward process the model is trained against (clipped x0 at sampling time)."""
    return DDPMScheduler(
        num_train_timesteps=config.timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type="epsilon",
        clip_sample=True,
    )


def train_ddpm(
    unet: UNet2DModel,
    scheduler: DDPMScheduler,
    images: torch.Tensor,
    labels: torch.Tensor,
    pad: tuple[int, int, int, int],
    config: Any,
    ctx: RunContext,
    seed: int,
) -> float:
    """Train ``unet`` in place (epsilon-prediction MSE, AdamW, EMA); return the final training loss.

    Mini-batches are drawn from CPU memory and moved to the device one at a
    time, so the dataset never has to fit on the device. The EMA weights
    (warm-up as in diffusers' training examples) replace the raw ones at the
    end: with a few thousand steps they sample visibly cleaner images.
    """
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    device = ctx.torch_device
    gen = torch.Generator().manual_seed(seed)
    unet.to(device).train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    warmup = min(config.warmup_steps, config.train_steps // 10)
    lr_schedule = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=warmup)
    ema = None
    if config.ema_decay > 0:
        ema = EMAModel(unet.parameters(), decay=config.ema_decay, use_ema_warmup=True, power=0.75)
        ema.to(device)
    n = images.shape[0]
    batch = min(config.batch_size, n)
    order = torch.randperm(n, generator=gen)
    cursor = 0
    recent: list[torch.Tensor] = []
    running = torch.zeros((), device=device)
    with ctx.progress.task("ddm: training the diffusion model", total=config.train_steps) as task:
        for step in range(config.train_steps):
            if cursor + batch > n:  # a new epoch: reshuffle, drop the ragged tail
                order, cursor = torch.randperm(n, generator=gen), 0
            idx = order[cursor : cursor + batch]
            cursor += batch
            x0 = to_model_space(images[idx].to(device, torch.float32, non_blocking=True), pad)
            y = labels[idx].to(device, non_blocking=True)
            noise = torch.randn(x0.shape, generator=gen).to(device)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), generator=gen).to(device)
            noisy = scheduler.add_noise(x0, noise, t)
            loss = F.mse_loss(unet(noisy, t, class_labels=y).sample, noise)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            lr_schedule.step()
            if ema is not None:
                ema.step(unet.parameters())
            recent.append(loss.detach())
            if len(recent) > LOSS_WINDOW:
                recent.pop(0)
            running = running + loss.detach()
            if (step + 1) % REPORT_EVERY == 0 or step + 1 == config.train_steps:
                done = (step % REPORT_EVERY) + 1
                task.advance(done, loss=float(running) / done)
                running = torch.zeros((), device=device)
    if ema is not None:
        ema.copy_to(unet.parameters())
    final = float(torch.stack(recent).mean()) if recent else math.nan
    unet.eval()
    return final


@torch.no_grad()
def sample(
    unet: UNet2DModel,
    scheduler: DDPMScheduler,
    labels: torch.Tensor,
    image_hw: tuple[int, int],
    pad: tuple[int, int, int, int],
    config: Any,
    ctx: RunContext,
    generator: torch.Generator,
) -> torch.Tensor:
    """One image per label by deterministic DDIM (eta 0); CPU float32 images in ``[0, 1]``.

    diffusers' pipelines take no class labels, so this is the sampling loop
    itself: noise from ``generator`` (CPU), then ``sampling_steps`` DDIM
    updates of the class-conditional model, in chunks of ``sample_batch_size``.
    """
    device = ctx.torch_device
    unet.to(device).eval()
    ddim = DDIMScheduler.from_config(scheduler.config)
    ddim.set_timesteps(config.sampling_steps, device=device)
    channels = unet.config.in_channels
    h, w = image_hw
    left, right, top, bottom = pad
    canvas = (h + top + bottom, w + left + right)
    chunks = list(torch.split(labels, config.sample_batch_size))
    out = []
    with ctx.progress.task("ddm: sampling candidates", total=len(chunks) * len(ddim.timesteps)) as task:
        for y in chunks:
            x = torch.randn((y.shape[0], channels, *canvas), generator=generator).to(device)
            y_dev = y.to(device)
            for t in ddim.timesteps:
                eps = unet(x, t, class_labels=y_dev).sample
                x = ddim.step(eps, t, x, eta=0.0).prev_sample
                task.advance(1)
            out.append(to_image_space(x, pad).float().cpu())
    return torch.cat(out) if out else torch.empty(0, channels, h, w)

"""The feature space coresets are selected in: raw pixels, or a randomly initialised ConvNet."""

from __future__ import annotations


def embed(images, space: str, seed: int, device: str):
    """N x D float32 features of ``images`` (N x C x H x W in [0, 1])."""
    import torch

    if space == "pixels":
        return images.reshape(images.shape[0], -1).float()
    if space == "convnet":
        from privbench.nets import ConvNet

        torch.manual_seed(seed)
        c, h, _ = images.shape[1:]
        net = ConvNet(c, 2, h).to(device).eval()
        with torch.no_grad():
            parts = [net.embed(images[i : i + 512].to(device)).cpu() for i in range(0, images.shape[0], 512)]
        return torch.cat(parts)
    raise ValueError(space)

"""Differentiable Siamese augmentation: shared transformations, gradients, determinism."""

from __future__ import annotations

import pytest
import torch

from privbench.augment import DSA, OPERATIONS, AugParams, parse_strategy
from privbench.errors import UserError

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", OPERATIONS)
def test_same_seed_same_transformation_on_different_batches(op, device):
    dsa = DSA(op)
    real, syn = torch.rand(6, 3, 16, 16, device=device), torch.rand(2, 3, 16, 16, device=device)
    both = torch.cat([real, syn])
    for seed in range(4):
        together = dsa(both, _gen(seed))
        assert torch.allclose(dsa(real, _gen(seed)), together[:6], atol=1e-6)
        assert torch.allclose(dsa(syn, _gen(seed)), together[6:], atol=1e-6)
        params = dsa.sample(_gen(seed))
        assert torch.allclose(dsa.apply(syn, params), together[6:], atol=1e-6)


@pytest.mark.parametrize("op", OPERATIONS)
@pytest.mark.parametrize("channels", [1, 3])
def test_gradient_reaches_the_pixels(op, channels):
    dsa = DSA(op)
    x = torch.rand(3, channels, 16, 16, requires_grad=True)
    out = dsa.apply(x, AugParams(op, torch.full((1, len(dsa.sample(_gen(0)).u[0])), 0.3)))
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_deterministic_under_a_seed_and_varies_across_seeds():
    dsa = DSA()
    x = torch.rand(4, 3, 16, 16)
    assert torch.equal(dsa(x, _gen(3)), dsa(x, _gen(3)))
    outs = [dsa(x, _gen(s)) for s in range(6)]
    assert any(not torch.allclose(outs[0], o) for o in outs[1:])


def test_per_sample_draws_differ_between_images():
    dsa = DSA("rotate")
    x = torch.rand(1, 1, 16, 16).expand(8, 1, 16, 16)
    out = dsa(x, _gen(0), per_sample=True)
    assert not torch.allclose(out[0], out[1])
    assert torch.allclose(dsa(x, _gen(0))[0], dsa(x, _gen(0))[7])


def test_strategy_parsing():
    assert parse_strategy("none") == ()
    assert parse_strategy("color_crop") == ("color", "crop")
    x = torch.rand(2, 1, 8, 8)
    assert DSA("none")(x, _gen(0)) is x
    with pytest.raises(UserError, match="unknown augmentation 'blur'"):
        DSA("color_blur")
    with pytest.raises(UserError):
        DSA("color__crop")


def test_colour_on_one_channel_keeps_saturation_neutral():
    dsa = DSA("color")
    x = torch.rand(2, 1, 8, 8)
    neutral_except_saturation = AugParams("color", torch.tensor([[0.5, 0.9, 0.5]]))
    assert torch.allclose(dsa.apply(x, neutral_except_saturation), x, atol=1e-6)
    brighter = dsa.apply(x, AugParams("color", torch.tensor([[1.0, 0.5, 0.5]])))
    assert torch.allclose(brighter - x, torch.full_like(x, 0.25), atol=1e-6)  # +0.5 std of 0.5


def test_empty_pixels_take_the_mean_colour():
    dsa = DSA("cutout", mean=0.3, std=0.2)
    x = torch.ones(1, 1, 8, 8)
    out = dsa.apply(x, AugParams("cutout", torch.tensor([[0.5, 0.5]])))
    assert torch.isclose(out.min(), torch.tensor(0.3)) and (out == 1).sum() == 64 - 16

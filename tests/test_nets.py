"""The shared classifiers: shapes, embeddings, names, seeds and local weights."""

from __future__ import annotations

import pytest
import torch
import torchvision

from privbench.errors import UserError
from privbench.nets import MODELS, ConvNet, channel_stats, input_stats, make_model


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size,side", [(16, 2), (28, None), (32, 4), (64, 8)])
def test_convnet_shapes(channels, size, side):
    net = ConvNet(channels, 10, size, width=16)
    x = torch.rand(2, channels, size, size)
    assert net(x).shape == (2, 10)
    if side is None:  # 28 px: one channel is padded to 32 px as in the reference, three are not
        side = 4 if channels == 1 else 3
    assert net.embed(x).shape == (2, 16 * side * side)


def test_convnet_reference_embedding_size():
    # 128 x 4 x 4 at 32 px, and at 28 px single-channel thanks to the padding of 3.
    assert ConvNet(3, 10, 32).embed(torch.rand(1, 3, 32, 32)).shape[1] == 2048
    assert ConvNet(1, 10, 28).embed(torch.rand(1, 1, 28, 28)).shape[1] == 2048
    norms = [m for m in ConvNet(3, 10, 32).modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 3 and all(n.num_groups == n.num_channels == 128 and n.affine for n in norms)


@pytest.mark.parametrize("norm,pool", [("batchnorm", "maxpool"), ("none", "none")])
def test_convnet_variants(norm, pool):
    net = ConvNet(1, 4, 16, width=8, depth=2, norm=norm, pool=pool)
    assert net(torch.rand(3, 1, 16, 16)).shape == (3, 4)


def test_convnet_bad_options():
    with pytest.raises(UserError, match="norm"):
        ConvNet(1, 10, 16, norm="layer")
    with pytest.raises(UserError, match="too deep"):
        ConvNet(1, 10, 8, depth=5)


def test_normalisation_inside_the_model():
    net = ConvNet(3, 2, 16, width=4, mean=[0.1, 0.2, 0.3], std=0.25)
    mean, std = input_stats(net)
    assert torch.allclose(mean, torch.tensor([0.1, 0.2, 0.3]))
    assert torch.allclose(std, torch.full((3,), 0.25))
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(net.normalize(x), (x - mean.view(1, 3, 1, 1)) / 0.25)
    m, s = channel_stats(torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)]))
    assert torch.allclose(m, torch.tensor([0.5])) and torch.allclose(s, torch.tensor([0.5]))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("channels", [1, 3])
def test_make_model_each_name(name, channels):
    model = make_model(name, channels, 3, 16, seed=0, **({"width": 8} if name == "convnet" else {}))
    x = torch.rand(2, channels, 16, 16)
    assert model(x).shape == (2, 3)
    assert model.embed(x).ndim == 2


def test_resnet_small_and_large_stems():
    small = make_model("resnet18", 1, 2, 32)
    assert small.backbone.conv1.kernel_size == (3, 3) and small.backbone.conv1.stride == (1, 1)
    assert isinstance(small.backbone.maxpool, torch.nn.Identity)
    large = make_model("resnet18", 1, 2, 64)
    assert large.backbone.conv1.kernel_size == (7, 7) and large.backbone.conv1.in_channels == 1


def test_unknown_model_and_options():
    with pytest.raises(UserError, match="valid models: convnet, resnet18, resnet50"):
        make_model("vgg11", 3, 10, 32)
    with pytest.raises(UserError, match="ConvNet options"):
        make_model("resnet18", 3, 10, 32, width=64)


def test_seeded_init_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = make_model("convnet", 1, 10, 16, seed=5, width=8)
    after = torch.rand(1)
    b = make_model("convnet", 1, 10, 16, seed=5, width=8)
    assert torch.equal(before, after)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_local_weights(tmp_path):
    net = make_model("convnet", 1, 10, 16, seed=1, width=8)
    path = tmp_path / "convnet.pt"
    torch.save(net.state_dict(), path)
    again = make_model("convnet", 1, 10, 16, weights=path, width=8)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    with pytest.raises(UserError, match="does not fit"):
        make_model("convnet", 1, 10, 16, weights=path, width=16)
    with pytest.raises(UserError, match="not found"):
        make_model("resnet18", 1, 10, 16, weights=tmp_path / "missing.pt")


def test_pretrained_resnet_adapted_to_one_channel(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pt"
    torch.save(reference.state_dict(), path)
    model = make_model("resnet18", 1, 2, 64, weights=path)
    assert torch.allclose(model.backbone.conv1.weight, reference.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(model.backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    assert model.classifier.out_features == 2


@pytest.mark.parametrize("shape", [(3, 8, 32, 32), (2, 5, 7, 9), (1, 128, 16, 16)])
def test_pool_as_convolution_is_the_pool_bit_for_bit(shape):
    from privbench.nets import AvgPool2x2

    dtype = torch.float32  # the only dtype that takes the convolution
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(3)).to(dtype).requires_grad_()
    y = x.detach().clone().requires_grad_()
    ours, native = AvgPool2x2()(x), torch.nn.AvgPool2d(2, 2)(y)
    assert ours.dtype == native.dtype and torch.equal(ours, native)
    up = torch.randn(native.shape, generator=torch.Generator().manual_seed(4)).to(dtype)
    ours.backward(up)
    native.backward(up)
    assert torch.equal(x.grad, y.grad)


def test_pool_as_convolution_under_autocast_vmap_and_its_fallbacks(monkeypatch):
    from torch.func import vmap

    from privbench import nets

    pool, native = nets.AvgPool2x2(), torch.nn.AvgPool2d(2, 2)
    x = torch.randn(2, 4, 6, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # pools in the input's dtype, as the native pool does
        assert pool(x).dtype == torch.float32 and torch.equal(pool(x), native(x))
    stacked = torch.randn(3, 2, 4, 6, 8)  # an ensemble's feature maps: one model per leading index
    assert torch.equal(vmap(pool)(stacked), native(stacked.flatten(0, 1)).view(3, 2, 4, 3, 4))
    wide = x.transpose(2, 3)  # not contiguous: the native pool
    assert torch.equal(pool(wide), native(wide))
    calls = []
    monkeypatch.setattr(nets.F, "conv2d", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(nets, "POOL_AS_CONV_BYTES", x.element_size() * x.nelement() - 1)
    assert torch.equal(pool(x), native(x)) and not calls  # above the size limit: the native pool
    monkeypatch.setattr(nets, "POOL_AS_CONV_BYTES", 1 << 30)
    for dtype in (torch.bfloat16, torch.float64):  # other dtypes: the native pool, whatever their size
        assert torch.equal(pool(x.to(dtype)), native(x.to(dtype))) and not calls
    pool(x)
    assert calls  # and below it the convolution


def test_convnet_trains_as_before_the_pool_and_in_place_activations():
    """ConvNet's weights after SGD steps equal those of the same layers built from torch's modules."""
    from torch import nn

    net = make_model("convnet", 1, 3, 16, seed=2, width=8, depth=2)
    plain = make_model("convnet", 1, 3, 16, seed=2, width=8, depth=2)
    plain.features = nn.Sequential(*[
        nn.AvgPool2d(2, 2) if isinstance(m, nn.AvgPool2d) else nn.ReLU() if isinstance(m, nn.ReLU) else m
        for m in plain.features
    ])
    assert any(isinstance(m, nn.ReLU) and m.inplace for m in net.features)
    x, y = torch.randn(12, 1, 16, 16), torch.randint(0, 3, (12,))
    for model in (net, plain):
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for _ in range(5):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for a, b in zip(net.parameters(), plain.parameters()):
        assert torch.equal(a, b)

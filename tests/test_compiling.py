"""The ``compile`` options: the same numbers as eager code, one compiled function for fresh networks, a clear refusal."""

from __future__ import annotations

import shutil

import pytest
import torch

from helpers import assert_one_line_error
from privbench import compiling
from privbench.api import RunContext
from privbench.data import load_dataset
from privbench.errors import UserError
from privbench.nets import make_model
from privbench.testing import distill
from privbench.training import TrainConfig, train_classifier
from privbench_builtins.distillers.dm import DistributionMatching

needs_compiler = pytest.mark.skipif(not any(shutil.which(c) for c in ("c++", "g++", "clang++")),
                                    reason="torch.compile on a CPU needs a C++ compiler")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@needs_compiler
def test_compiled_training_and_dm_match_eager(digits):
    x, y = digits.train.images[:24], digits.train.labels[:24]
    models = []
    for flag in (False, True):
        model = make_model("convnet", 1, 10, 16, seed=4, width=8, depth=2)
        config = TrainConfig(epochs=3, batch_size=16, compile=flag)  # a full batch and a last one of 8
        models.append(train_classifier(model, x, y, config, RunContext(seed=0, device="cpu"),
                                       generator=torch.Generator().manual_seed(1)))
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    assert not torch.equal(models[0].features[0].weight, make_model("convnet", 1, 10, 16, seed=4, width=8,
                                                                    depth=2).features[0].weight)  # it trained
    options = dict(iterations=3, width=8, depth=2, batch_real=8, dsa_strategy="crop_rotate")
    eager = distill(DistributionMatching, digits, 1, seed=2, **options)
    fast = distill(DistributionMatching, digits, 1, seed=2, compile=True, **options)
    assert torch.allclose(eager.images, fast.images, atol=1e-4)
    assert fast.provenance["loss_history"] == pytest.approx(eager.provenance["loss_history"], rel=1e-4)
    # Every iteration's fresh network reused the one compiled embedding.
    assert sum(1 for (fn, kind, _) in compiling._cache if fn is compiling.embed and kind == "cpu") == 1


def test_compiled_net_delegates_and_the_cache_keeps_one_function(monkeypatch):
    net = make_model("convnet", 1, 3, 16, seed=0, width=4, depth=1)
    monkeypatch.setattr(compiling, "_cache", {})
    monkeypatch.setattr(compiling.torch, "compile", lambda fn, **kw: fn)  # the wiring, without compiling
    view = compiling.maybe_compiled(net, True, torch.device("cpu"))
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(view.embed(x), net.embed(x)) and torch.equal(view(x), net(x))
    assert view.classifier is net.classifier and compiling.maybe_compiled(net, False, torch.device("cpu")) is net
    again = compiling.CompiledNet(make_model("convnet", 1, 3, 16, seed=1, width=4, depth=1), torch.device("cpu"))
    assert again._embed is view._embed and len(compiling._cache) == 2


def test_no_compiler_is_refused_in_one_line(monkeypatch, cli, tmp_path):
    monkeypatch.setattr(compiling.shutil, "which", lambda name: None)
    monkeypatch.setattr(compiling, "_cache", {})
    with pytest.raises(UserError, match="C\\+\\+ compiler"):
        compiling.compiled(compiling.forward, torch.device("cpu"))
    compiling.check_compiler(torch.device("cuda"))  # a GPU needs none
    out = tmp_path / "release"
    result = cli("distill", "--data", "digits", "--method", "dm", "--ipc", "1", "--set", "iterations=1",
                 "--set", "compile=true", "--no-evaluate", "--device", "cpu", "--out", out)
    assert_one_line_error(result, "C++ compiler")
    assert not out.exists()
    with pytest.raises(UserError, match="compile"):
        TrainConfig(epochs=1, compile="yes")


@needs_compiler
def test_compiled_ensemble_and_gm_match_eager(digits):
    from privbench.api import Release
    from privbench.utility import UtilityConfig, train_seeds
    from privbench_builtins.distillers.gm import GradientMatching

    release = Release(digits.train.images[:40], digits.train.labels[:40], {"method": "random", "ipc": 4})
    trained = [train_seeds(release, digits, "convnet", [0, 1], UtilityConfig(epochs=2, width=8, depth=2,
                                                                             ensemble="on", compile=flag),
                           RunContext(device="cpu")) for flag in (False, True)]
    for eager, fast in zip(*trained):
        for a, b in zip(eager.parameters(), fast.parameters()):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    options = dict(iterations=2, width=8, depth=2, batch_real=8, inner_loop=2, outer_loop=2)
    eager = distill(GradientMatching, digits, 1, seed=0, **options)
    fast = distill(GradientMatching, digits, 1, seed=0, compile=True, **options)
    assert torch.allclose(eager.images, fast.images, atol=1e-5)
    assert fast.provenance["loss_history"] == pytest.approx(eager.provenance["loss_history"], rel=1e-4)

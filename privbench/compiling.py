"""``torch.compile`` for the passes that run thousands of times, off by default until measured to help.

The ``compile`` options of the training loop (:class:`privbench.training.TrainConfig`,
so the utility score and the attacks' target and shadow models), of ``dm``,
``gm`` (its inner loop and real gradients) and ``ddm``'s refinement route a
network's forward or ``embed`` through :func:`compiled`. Each compiles a
module-level function that takes the network as an argument, once per process
and device kind: a fresh random ConvNet of the same shape every iteration
reuses the compiled code instead of compiling again (Dynamo treats the
parameters as inputs). Shapes are static (``dynamic=False``): the few batch
sizes a run meets (a full batch, the last one) each compile once.

On CUDA the training loop also replays its step as a CUDA graph (``mode=
"reduce-overhead"``) since a model keeps its shapes and parameters for all its
epochs; a distiller's network changes every iteration, so its passes (and
``gm``'s inner loop, ``train_classifier(cuda_graphs=False)``) compile without
graphs. Gradients of gradients (``gm``'s synthetic side) stay eager:
compiled code does not support double backward.

On a CPU, Inductor needs a C++ compiler; without one the option is refused up
front. The first call pays the compilation (seconds to a minute); what it
saves afterwards is measured in docs/benchmarks.md.
"""

from __future__ import annotations

import os
import shutil
from typing import Callable

import torch
from torch import nn

from privbench.errors import UserError

_cache: dict[tuple[Callable, str, bool], Callable] = {}


def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)``: the function compiled for a classifier's forward pass."""
    return model(x)


def embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model.embed(x)``: the function compiled for a distiller's feature pass."""
    return model.embed(x)


def check_compiler(device: torch.device) -> None:
    """Refuse ``compile`` on a CPU with no C++ compiler for Inductor (one line, before any work)."""
    if torch.device(device).type != "cpu":
        return
    names = [os.environ.get("CXX", "")] + ["c++", "g++", "clang++"]
    if not any(name and shutil.which(name) for name in names):
        raise UserError("compile=true on a CPU needs a C++ compiler (g++ or clang++, or $CXX) for torch.compile; "
                        "install one or leave compile off")


def compiled(fn: Callable, device: torch.device, cuda_graphs: bool = False, keep: bool = True) -> Callable:
    """``fn`` compiled for ``device``'s kind.

    ``keep``: the same compiled object for every call with a module-level
    ``fn`` (``forward``, ``embed``); a closure made per call passes False.
    """
    kind = torch.device(device).type
    graphs = cuda_graphs and kind == "cuda"
    key = (fn, kind, graphs)
    if keep and key in _cache:
        return _cache[key]
    check_compiler(torch.device(device))
    result = torch.compile(fn, dynamic=False, mode="reduce-overhead" if graphs else None)
    if keep:
        _cache[key] = result
    return result


class CompiledNet:
    """A network seen through compiled ``embed`` and forward passes (what the matching distillers call)."""

    def __init__(self, net: nn.Module, device: torch.device):
        self.net = net
        self._embed = compiled(embed, device)
        self._forward = compiled(forward, device)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self._embed(self.net, x)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(self.net, x)

    def __getattr__(self, name: str):
        if name == "net":  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self.net, name)


def maybe_compiled(net: nn.Module, enabled: bool, device: torch.device) -> nn.Module | CompiledNet:
    """``net`` itself, or a :class:`CompiledNet` over it when ``enabled``."""
    return CompiledNet(net, device) if enabled else net

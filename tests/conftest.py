"""Fixtures: tiny datasets, fake plugin distributions, and a CLI runner that captures exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

import privbench.plugins as plugins_mod
from helpers import CliResult

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread: the tests' models are tiny, and thread hand-offs cost more than they give."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path_factory):
    """Built-in plugins only, a private cache and data root, and a fresh registry per test."""
    monkeypatch.setenv(plugins_mod.ENV_LOAD, "")
    monkeypatch.delenv(plugins_mod.ENV_STRICT, raising=False)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("PRIVBENCH_DATA_ROOT", str(home / "data"))
    monkeypatch.setenv("MEDMNIST_ROOT", str(home / "medmnist"))
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    plugins_mod._cached = None
    yield
    plugins_mod._cached = None


@pytest.fixture
def cli(capsys):
    """Run ``privbench`` in-process: ``cli("plugins", "--json")`` -> CliResult."""
    from privbench.cli import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        plugins_mod._cached = None
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run



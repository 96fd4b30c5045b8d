"""Helpers shared by the tests: subprocess runs, error-shape checks, fake distributions, tiny files."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_subprocess(*args: str, env: dict | None = None, timeout: int = 240) -> CliResult:
    """Run ``python -m privbench`` in a child process (for start-up and environment checks)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "privbench", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(result: CliResult, *needles: str) -> None:
    """Exit 2, one line on stderr starting with 'privbench: error:', no traceback."""
    assert result.code == 2, (result.code, result.err)
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("privbench: error:"), lines[0]
    assert "Traceback" not in result.err
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines[0])


def make_distribution(root: Path, dist: str, module: str, source: str, entry_points: dict[str, str],
                      version: str = "1.0") -> Path:
    """Write an installed-looking distribution (module + .dist-info with entry points) under ``root``.

    A module of the same name imported by an earlier test is evicted, so this test loads its own source.
    """
    sys.modules.pop(module, None)
    importlib.invalidate_caches()
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[privbench]\n{lines}\n")
    return root


def write_medmnist_npz(path: Path, n=(30, 10, 10), size=8, rgb=False, classes=2, seed=0, **extra) -> Path:
    """A small file in the MedMNIST layout."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n):
        shape = (count, size, size, 3) if rgb else (count, size, size)
        arrays[f"{split}_images"] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(count) % classes).astype(np.uint8)[:, None]
    arrays.update(extra)
    np.savez(path, **arrays)
    return path

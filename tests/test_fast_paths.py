"""The CPU's fast paths change no result: a small quickstart-like suite, with and without them, row for row."""

from __future__ import annotations

import json
import math

import pyarrow.parquet as pq
import pytest

from privbench import nets
from privbench_builtins.distillers import _gm

SUITE = """
name = "fast-paths"
datasets = ["digits"]
seeds = [0]

[[releases]]
method = "random"
ipc = [3]

[[releases]]
method = "dm"
ipc = [2]
config = { iterations = 3, width = 16, batch_real = 24 }

[[releases]]
method = "gm"
ipc = [1]
config = { iterations = 1, outer_loop = 2, inner_loop = 2, width = 16, batch_real = 24 }

[utility]
models = ["convnet"]
seeds = 2
config = { epochs = 3, width = 16, batch_size = 64 }

[audit]
attacks = ["mia"]
metrics = []

[audit.config.mia]
game = "release"
shadows = 2
target_epochs = 3
target_width = 16
target_depth = 2
max_members = 40
max_nonmembers = 40
resamples = 20
"""
VARYING = {"elapsed_s", "created_at", "started_at"}


def _values(path):
    rows = pq.read_table(path / "results.parquet").to_pylist()
    return {(r["job"], r["measure"], r["subset"]): r for r in rows}


def test_the_suites_results_are_those_of_the_plain_paths(cli, tmp_path, monkeypatch):
    suite = tmp_path / "fast-paths.toml"
    suite.write_text(SUITE)
    calls = []
    pool_forward = nets.AvgPool2x2.forward

    def counted(self, x):
        calls.append(x.element_size() * x.nelement() <= nets.POOL_AS_CONV_BYTES)
        return pool_forward(self, x)

    monkeypatch.setattr(nets.AvgPool2x2, "forward", counted)
    with monkeypatch.context() as plain:
        plain.setattr(nets, "POOL_AS_CONV_BYTES", -1)  # torch's pool everywhere
        plain.setattr(_gm, "CPU_GRADIENT_CHUNK_BYTES", 1 << 40)  # one backward pass per class
        result = cli("run", suite, "--out", tmp_path / "plain", "-q", "--no-report", "--device", "cpu")
        assert result.code == 0, result.err
    assert calls and not any(calls)
    calls.clear()
    # Chunks of 5 real images for GM's gradients (24 per class), so the sum over chunks is what runs.
    monkeypatch.setattr(_gm, "CPU_GRADIENT_CHUNK_BYTES", 5 * 4 * 16 * 16 * 16)
    result = cli("run", suite, "--out", tmp_path / "fast", "-q", "--no-report", "--device", "cpu")
    assert result.code == 0, result.err
    assert calls and all(calls)
    plain, fast = _values(tmp_path / "plain"), _values(tmp_path / "fast")
    assert plain.keys() == fast.keys() and len(plain) > 20
    assert {k[0].split(": ")[1].split(" ")[0] for k in plain} >= {"utility", "audit"}
    numbers = {"value", "ci_low", "ci_high", "detail"}
    for key, row in plain.items():
        other = fast[key]
        assert {k: v for k, v in row.items() if k not in VARYING | numbers} == \
            {k: v for k, v in other.items() if k not in VARYING | numbers}, key
        for column in ("value", "ci_low", "ci_high"):
            _close(row[column], other[column], (key, column))
        a, b = json.loads(row["detail"] or "{}"), json.loads(other["detail"] or "{}")
        assert a.keys() == b.keys(), key
        for field in a:
            _close(a[field], b[field], (key, field))


def _close(a, b, where) -> None:
    """Equal, up to float rounding for numbers (NaN equals NaN)."""
    if isinstance(a, float) and isinstance(b, (int, float)):
        if math.isnan(a):
            assert math.isnan(b), where
        else:
            assert b == pytest.approx(a, rel=1e-4, abs=1e-4), where
    else:
        assert a == b, where

"""The example plugin package installs with pip and works with no change to privbench."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import ROOT, run_subprocess

EXAMPLE = ROOT / "plugins" / "privbench-coreset"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    """``pip install`` the example into a private target folder (no network: no deps, no isolation)."""
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(EXAMPLE)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return target


def _env(site, **extra):
    return {"PYTHONPATH": str(site), "PRIVBENCH_LOAD_PLUGINS": "privbench-coreset", **extra}


def test_example_plugins_are_listed(installed_example):
    result = run_subprocess("plugins", "--json", env=_env(installed_example))
    assert result.code == 0, result.err
    rows = {(r["kind"], r["name"]): r for r in json.loads(result.out)}
    for key in (("distiller", "herding"), ("distiller", "kcenter"), ("attack", "nn-distance")):
        assert rows[key]["package"] == "privbench-coreset"
        assert rows[key]["version"] == "0.1.0" and rows[key]["status"] == "ok"


def test_example_distiller_and_attack_run_by_name(installed_example, tmp_path):
    env = _env(installed_example)
    release = tmp_path / "herding"
    result = run_subprocess("distill", "--data", "digits", "--method", "herding", "--ipc", "3",
                            "--out", release, "--no-evaluate", "-q", env=env)
    assert result.code == 0, result.err
    manifest = json.loads((release / "release.json").read_text())
    assert manifest["plugin_package"] == "privbench-coreset" and manifest["images"] == 30

    audit = tmp_path / "audit"
    result = run_subprocess("audit", "--data", "digits", "--release", release, "--attack", "nn-distance",
                            "--out", audit, "-q", env=env)
    assert result.code == 0, result.err
    import pyarrow.parquet as pq

    rows = {r["measure"]: r for r in pq.read_table(audit / "results.parquet").to_pylist()}
    assert rows["auc"]["evaluator"] == "nn-distance" and rows["auc"]["ci_low"] <= rows["auc"]["value"]
    assert rows["auc"]["plugin_package"] == "privbench-coreset"

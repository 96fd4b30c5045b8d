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


def _available(env: dict, cwd) -> dict:
    import os

    proc = subprocess.run([sys.executable, "-m", "privbench", "plugins", "--available", "--json"],
                          capture_output=True, text=True, env={**os.environ, **env}, cwd=cwd, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return {r["package"]: r for r in json.loads(proc.stdout)}


def test_available_points_pip_at_the_example_in_a_checkout(tmp_path):
    rows = _available({"PRIVBENCH_LOAD_PLUGINS": ""}, tmp_path)
    assert rows["privbench-coreset"]["install"] == f"pip install {EXAMPLE.resolve()}"
    assert rows["privbench-coreset"]["installed"] is False


@pytest.mark.slow
def test_the_install_command_works_for_an_installed_privbench(tmp_path):
    """From a wheel (no source checkout), the printed command installs the example from inside the package."""
    import shlex

    wheels = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(wheels)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
    proc = subprocess.run([*pip, "--target", str(site), *map(str, wheels.glob("*.whl"))],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {"PYTHONPATH": str(site), "PRIVBENCH_LOAD_PLUGINS": "privbench-coreset"}
    command = shlex.split(_available(env, work)["privbench-coreset"]["install"])
    assert command[:2] == ["pip", "install"] and len(command) == 3
    folder = command[2]
    assert folder.startswith(str(site)) and "_examples" in folder  # inside the installed package
    plugin_site = tmp_path / "plugin-site"
    proc = subprocess.run([*pip, "--target", str(plugin_site), folder], cwd=work, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = run_subprocess("plugins", "--json", env={**env, "PYTHONPATH": f"{site}:{plugin_site}"})
    rows = {(r["kind"], r["name"]): r for r in json.loads(result.out)}
    assert rows[("distiller", "herding")]["status"] == "ok"
    assert rows[("distiller", "herding")]["package"] == "privbench-coreset"

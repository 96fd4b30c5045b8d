"""The lowest declared versions of NumPy, scikit-learn, SciPy and pyarrow really work: the statistics run on them.

A floor that is written down but never installed is a guess (``np.trapezoid`` needs NumPy 2 while
the floor said 1.24, and every AUC failed there). This test installs the floors of the libraries
the statistics and the results writer are built on into a fresh virtual environment, layered over
this environment's other packages, and runs the statistics tests there once.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOORED = {"numpy": "numpy", "scikit-learn": "sklearn", "scipy": "scipy", "pyarrow": "pyarrow"}  # -> module
"""The statistics' libraries, and the results writer's: a newer pyarrow refuses NumPy 1.x at import."""
TESTS = ["tests/test_attacks_mia.py", "tests/test_stats.py", "tests/test_population.py",
         "tests/test_attacks_aia.py::test_anonymeter_risk_by_hand",
         "tests/test_mia_games.py::test_a_release_equal_to_the_training_set_is_found_by_release_distance",
         "tests/test_mia_games.py::test_pooled_rows_and_rates_stay_consistent"]


def declared_floors() -> dict[str, str]:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {}
    for spec in dependencies:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)", spec.strip())
        if match and match.group(1).lower() in FLOORED:
            floors[match.group(1).lower()] = match.group(2)
    return floors


def test_every_floored_library_declares_its_floor():
    assert set(declared_floors()) == set(FLOORED)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_statistics_pass_on_the_lowest_declared_versions(tmp_path):
    floors = declared_floors()
    venv = tmp_path / "floor"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    pins = [f"{name}=={version}.*" for name, version in floors.items()]
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", *pins], capture_output=True, text=True)
    assert install.returncode == 0, f"could not install the declared floors {pins}: {install.stderr[-2000:]}"
    # the rest (torch, pytest, privbench itself) comes from this environment, after the floors on the path
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    Path(own, "zz_privbench_parent.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    modules = [FLOORED[name] for name in floors]
    versions = subprocess.run([str(python), "-c", f"import {', '.join(modules)}; "
                               f"print({', '.join(m + '.__version__' for m in modules)})"],
                              capture_output=True, text=True, check=True).stdout.split()
    for (name, floor), got in zip(floors.items(), versions):
        assert got.startswith(floor), f"{name} {got} is not the floor {floor}"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS], cwd=ROOT,
                         capture_output=True, text=True, env=env, timeout=540)
    assert run.returncode == 0, f"on {dict(zip(floors, versions))}:\n{run.stdout[-4000:]}\n{run.stderr[-2000:]}"

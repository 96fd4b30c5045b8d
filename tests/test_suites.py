"""Suites: validation before anything runs, caching, resume after a kill, third-party plugins."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from helpers import ROOT, assert_one_line_error

SUITE = """
name = "tiny"
datasets = ["digits"]
seeds = [0, 1, 2]

[[releases]]
method = "random"
ipc = [2]

[utility]
models = ["convnet"]
seeds = 1
config = {{ epochs = {epochs}, width = 16, batch_size = 64 }}
"""


def _write_suite(path, epochs=2, extra=""):
    path.write_text(SUITE.format(epochs=epochs) + extra)
    return path


def _values(results_path):
    rows = pq.read_table(results_path).to_pylist()
    return sorted((r["job"], r["measure"], r["subset"], r["value"], r["ci_low"], r["ci_high"], r["n"]) for r in rows)


def test_suite_runs_caches_and_reports(cli, tmp_path):
    suite = _write_suite(tmp_path / "tiny.toml")
    out = tmp_path / "out"
    first = cli("run", suite, "--out", out, "-q")
    assert first.code == 0, first.err
    assert "6 jobs, 6 run, 0 reused" in first.out
    rows = pq.read_table(out / "results.parquet").to_pylist()
    assert {r["measure"] for r in rows} == {"accuracy", "balanced_accuracy", "roc_auc"}
    assert {r["release_seed"] for r in rows} == {0, 1, 2}
    assert (out / "report.html").stat().st_size > 1000
    runs = pq.read_table(out / "runs.parquet").to_pylist()
    assert {r["task"] for r in runs} == {"distill", "utility"}

    again = cli("run", suite, "--out", out, "-q")
    assert "6 jobs, 0 run, 6 reused" in again.out
    assert _values(out / "results.parquet") == sorted(_values(out / "results.parquet"))

    fresh = cli("run", suite, "--out", out, "-q", "--fresh")
    assert "6 jobs, 6 run, 0 reused" in fresh.out


@pytest.mark.parametrize(
    "extra, needle",
    [
        ('\n[[releases]]\nmethod = "nope"\nipc = [1]\n', "unknown distiller 'nope'; available:"),
        ('\n[[releases]]\nmethod = "random"\nipc = [1]\nconfig = { speed = 2 }\n', "unknown option speed"),
        ('\n[audit]\nattacks = ["nope"]\n', "unknown attack 'nope'"),
        ('\ncolour = "red"\n', "unknown key(s) colour; valid keys:"),
    ],
)
def test_suites_are_validated_before_anything_runs(cli, tmp_path, extra, needle):
    suite = _write_suite(tmp_path / "bad.toml", extra=extra)
    out = tmp_path / "out"
    assert_one_line_error(cli("run", suite, "--out", out), needle)
    assert not (out / "jobs").exists()


def test_unknown_dataset_and_suite(cli, tmp_path):
    suite = tmp_path / "bad.toml"
    suite.write_text('datasets = ["imagenet"]\n[[releases]]\nmethod = "original"\n')
    assert_one_line_error(cli("run", suite, "--out", tmp_path / "o"), "unknown dataset 'imagenet'", "digits")
    assert_one_line_error(cli("run", "no-such-suite"), "unknown suite", "quickstart")


def test_killed_run_resumes_and_matches_an_uninterrupted_run(cli, tmp_path):
    suite = _write_suite(tmp_path / "tiny.toml", epochs=6)
    reference = tmp_path / "reference"
    assert cli("run", suite, "--out", reference, "-q").code == 0

    out = tmp_path / "killed"
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-m", "privbench", "run", str(suite), "--out", str(out), "-q"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    done = []
    while time.time() < deadline:
        done = list((out / "jobs").glob("*/job.json")) if (out / "jobs").exists() else []
        if len(done) >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(list((out / "jobs").glob("*/job.json")))
    assert 2 <= finished < 6, f"kill landed at {finished} finished jobs"
    assert not (out / "results.parquet").exists() or pq.read_table(out / "results.parquet").num_rows >= 0

    resumed = cli("run", suite, "--out", out, "-q")
    assert resumed.code == 0, resumed.err
    assert f"6 jobs, {6 - finished} run, {finished} reused" in resumed.out
    assert not [p for p in (out / "jobs").iterdir() if ".partial-" in p.name]
    assert _values(out / "results.parquet") == _values(reference / "results.parquet")


def test_third_party_plugin_in_a_suite(cli, tmp_path, monkeypatch):
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(site), str(ROOT / "plugins" / "privbench-coreset")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PRIVBENCH_LOAD_PLUGINS", "privbench-coreset")
    suite = tmp_path / "third.toml"
    suite.write_text(
        'name = "third"\ndatasets = ["digits"]\n'
        '[[releases]]\nmethod = "herding"\nipc = [3]\n'
        '[[releases]]\nmethod = "random"\nipc = [3]\n'
        '[utility]\nmodels = ["convnet"]\nseeds = 1\nconfig = { epochs = 2, width = 16 }\n'
        '[audit]\nattacks = ["nn-distance"]\n'
    )
    out = tmp_path / "out"
    result = cli("run", suite, "--out", out, "-q")
    assert result.code == 0, result.err
    rows = pq.read_table(out / "results.parquet").to_pylist()
    herding = [r for r in rows if r["release_method"] == "herding"]
    assert {r["evaluator"] for r in herding} == {"convnet", "nn-distance"}
    assert any(r["plugin_package"] == "privbench-coreset" for r in herding)
    html = (out / "report.html").read_text()
    assert "herding ipc=3" in html and "nn-distance" in html and "privbench-coreset" in html
    meta = json.loads((out / "suite.json").read_text())
    assert meta["suite"] == "third"


def test_suites_play_the_method_game_unless_they_say_otherwise(tmp_path):
    from privbench.jobs import plan_jobs
    from privbench.plugins import get_registry
    from privbench.suites import parse_suite, validate_suite

    registry = get_registry()
    for extra, game in (('\n[audit]\nattacks = ["mia"]\n', "method"),
                        ('\n[audit]\nattacks = ["mia"]\n[audit.config.mia]\ngame = "release"\n', "release")):
        suite = parse_suite(_write_suite(tmp_path / "s.toml", extra=extra))
        validate_suite(suite, registry)
        audits = [j for j in plan_jobs(suite, registry, {"digits": "f" * 64}) if j.kind == "audit"]
        assert audits and {j.options["config"]["game"] for j in audits} == {game}


def test_every_registry_suite_names_installed_plugins_and_valid_options():
    """Each shipped suite passes validation on data that is here (its own cards need their files)."""
    from privbench.plugins import get_registry
    from privbench.suites import available_suites, parse_suite, validate_suite

    suites = available_suites()
    assert {"quickstart", "paper", "paper-protocol", "smoke"} <= set(suites)
    for name, path in suites.items():
        suite = parse_suite(path)
        suite.datasets = ["digits"]
        validate_suite(suite, get_registry())
    protocol = parse_suite(suites["paper-protocol"])
    assert protocol.reproduces == "razi2025" and protocol.utility_models == ["resnet50"]
    assert {r.method: r.config.get("feature_extractor") for r in protocol.releases}["dm"] == "resnet18"


def test_a_release_runs_the_subset_of_attacks_it_names(tmp_path):
    from privbench.jobs import plan_jobs
    from privbench.plugins import get_registry
    from privbench.suites import parse_suite, validate_suite

    extra = ('\n[[releases]]\nmethod = "random"\nipc = [3]\nattacks = ["aia"]\n'
             '\n[audit]\nattacks = ["mia", "aia"]\n')
    suite = parse_suite(_write_suite(tmp_path / "s.toml", extra=extra))
    validate_suite(suite, get_registry())
    audits = [j for j in plan_jobs(suite, get_registry(), {"digits": "f" * 64}) if j.kind == "audit"]
    by_ipc = {}
    for j in audits:
        by_ipc.setdefault(j.release.ipc, set()).add(j.evaluator)
    assert by_ipc == {2: {"mia", "aia"}, 3: {"aia"}}


@pytest.mark.parametrize("extra, needle", [
    ('\n[[releases]]\nmethod = "random"\nipc = [3]\nattacks = ["canary"]\n\n[audit]\nattacks = ["mia"]\n',
     "which [audit] attacks does not run"),
    ('\n[[releases]]\nmethod = "random"\nipc = [3]\nattacks = ["aia"]\naudit_config = { mia = { shadows = 2 } }\n'
     '\n[audit]\nattacks = ["mia", "aia"]\n', "that this release does not run"),
])
def test_a_release_cannot_name_attacks_the_suite_does_not_run(cli, tmp_path, extra, needle):
    suite = _write_suite(tmp_path / "bad.toml", extra=extra)
    assert_one_line_error(cli("run", suite, "--out", tmp_path / "out"), needle)
    assert not (tmp_path / "out").exists()


def test_releases_that_differ_only_in_epsilon_get_distinct_job_labels(tmp_path):
    from privbench.jobs import plan_jobs
    from privbench.plugins import get_registry
    from privbench.suites import parse_suite

    extra = "".join(f'\n[[releases]]\nmethod = "dp-dm"\nipc = [2]\nconfig = {{ epsilon = {e} }}\n'
                    for e in ("1.0", "10.0", "inf"))
    suite = parse_suite(_write_suite(tmp_path / "s.toml", extra=extra))
    labels = [j.label for j in plan_jobs(suite, get_registry(), {"digits": "f" * 64}) if j.kind == "distill"]
    assert len(labels) == len(set(labels)) and any("epsilon=1.0" in label for label in labels)

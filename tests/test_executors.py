"""The Ray executor against the serial one: the same tables, no torn job after a killed worker, a clear refusal.

One local Ray (``num_cpus=2``) serves the in-process tests; the killed-worker
test runs ``privbench run`` in a subprocess that starts a Ray of its own, as a
user's command would.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from helpers import ROOT, assert_one_line_error, make_distribution

ray = pytest.importorskip("ray", reason="the ray extra is part of the test install")

SUITE = """
name = "executors"
datasets = ["digits"]
seeds = [0]

[[releases]]
method = "random"
ipc = [5]

[[releases]]
method = "random"
ipc = [3]
attacks = ["mia"]
audit_config = { mia = { game = "method", pipelines = 4 } }

[utility]
models = ["convnet"]
seeds = 2
config = { epochs = 3, width = 16, batch_size = 64 }

[audit]
attacks = ["mia", "canary"]
metrics = []

[audit.config.mia]
game = "release"
shadows = 4
target_epochs = 3
target_width = 16
target_depth = 2
max_members = 60
max_nonmembers = 60
resamples = 50

[audit.config.canary]
canaries = 40
runs = 2
target_epochs = 3
target_width = 16
target_depth = 2
resamples = 20
"""
UTILITY = """
[utility]
models = ["convnet"]
seeds = 1
config = { epochs = 2, width = 16, batch_size = 64 }
"""
TIMING = {"elapsed_s", "created_at", "started_at"}
"""The only columns that may differ between two runs of the same jobs."""

CRASHING = '''
import os
import signal
from pathlib import Path

from privbench import hookimpl
from privbench.api import Distiller, Release


class Crashing(Distiller):
    """Kills its own process the first CRASHES times it runs (counted in files), then copies ipc images."""

    name = "crashing"

    def distill(self, private, ipc, config, ctx):
        import torch

        marks = Path(os.environ["PRIVBENCH_TEST_CRASH_MARKS"])
        marks.mkdir(exist_ok=True)
        if len(list(marks.iterdir())) < int(os.environ["PRIVBENCH_TEST_CRASHES"]):
            (marks / str(len(list(marks.iterdir())))).write_text("")
            os.kill(os.getpid(), signal.SIGKILL)
        y = private.train.labels
        idx = torch.cat([torch.nonzero(y == c).flatten()[:ipc] for c in range(private.num_classes)])
        return Release(private.train.images[idx], y[idx], {"method": self.name, "ipc": ipc})


@hookimpl
def register_distillers(register):
    register(Crashing)
'''

FAILING = '''
from privbench import hookimpl
from privbench.api import Distiller


class Failing(Distiller):
    """Raises inside distill, as a buggy plugin would."""

    name = "failing"

    def distill(self, private, ipc, config, ctx):
        raise ValueError("centroids did not converge")


@hookimpl
def register_distillers(register):
    register(Failing)
'''

CRASH_SUITE = """
name = "crash"
datasets = ["digits"]
seeds = [0]

[[releases]]
method = "crashing"
ipc = [2]

[[releases]]
method = "random"
ipc = [2]
"""


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with two CPUs, joined by every in-process ``--executor ray`` run of this module."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    if started:
        ray.shutdown()


def _rows(path, also=()):
    rows = pq.read_table(path).to_pylist()
    return sorted(({k: v for k, v in r.items() if k not in TIMING and k not in also} for r in rows), key=repr)


def _same_tables(a, b):
    for name in ("results.parquet", "runs.parquet"):
        left, right = _rows(a / name), _rows(b / name)
        assert len(left) == len(right) > 0 or name == "results.parquet" and left == right
        assert left == right, name


def test_the_ray_executor_gives_the_serial_executors_tables(cli, tmp_path, local_ray):
    """Row for row the same results and runs (timings aside): the smoke suite, then utility, mia (4 shadows), canary."""
    for suite in ("smoke", tmp_path / "executors.toml"):
        if suite != "smoke":
            suite.write_text(SUITE)
        name = getattr(suite, "stem", suite)
        local, remote = tmp_path / f"{name}-local", tmp_path / f"{name}-ray"
        first = cli("run", suite, "--out", local, "-q", "--no-report", "--cpus-per-task", "1")
        assert first.code == 0, first.err
        second = cli("run", suite, "--out", remote, "-q", "--no-report", "--executor", "ray", "--max-workers", "2")
        assert second.code == 0, second.err
        assert "on the ray executor" in second.out
        _same_tables(local, remote)
    rows = pq.read_table(remote / "results.parquet").to_pylist()
    assert {r["evaluator"] for r in rows} == {"convnet", "mia", "canary"}
    games = {r["release_ipc"]: r["config"] for r in pq.read_table(remote / "runs.parquet").to_pylist()
             if r["evaluator"] == "mia"}
    assert '"game":"release"' in games[5] and '"shadows":4' in games[5]
    assert '"game":"method"' in games[3] and '"pipelines":4' in games[3]
    assert {"lira_online.auc", "rmia.auc"} <= {r["measure"] for r in rows if r["evaluator"] == "mia" and r["status"] == "ok"}
    again = cli("run", tmp_path / "executors.toml", "--out", remote, "-q", "--no-report", "--executor", "ray")
    assert again.code == 0 and "0 run, 7 reused" in again.out  # the same keys, whichever executor made them


def test_ray_missing_is_one_line_naming_the_extra(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without the extra sees
    out = tmp_path / "out"
    result = cli("run", "smoke", "--out", out, "--executor", "ray")
    assert_one_line_error(result, "privbench[ray]")
    assert result.code == 2 and not out.exists()


@pytest.mark.parametrize("address, says", [("127.0.0.1:1", "no Ray cluster answers at 127.0.0.1:1"),
                                             ("ray://127.0.0.1:1", "no Ray cluster answers"),
                                             ("nonsense", "is not auto, HOST:PORT")])
def test_an_address_no_cluster_answers_at_is_one_line_at_once(cli, tmp_path, address, says):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    result = cli("run", "smoke", "--out", out, "--executor", "ray", "--address", address)
    assert_one_line_error(result, says)
    assert result.code == 2 and not out.exists()


def test_local_executor_refuses_cluster_options(cli, tmp_path):
    result = cli("run", "smoke", "--out", tmp_path / "out", "--address", "auto")
    assert_one_line_error(result, "--executor ray")


def _crash_run(tmp_path, crashes: int):
    site = tmp_path / "site"
    if not site.exists():
        make_distribution(site, "fake-crash", "fake_crash", CRASHING, {"fake_crash": "fake_crash"})
    (tmp_path / "crash.toml").write_text(CRASH_SUITE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "PRIVBENCH_LOAD_PLUGINS": "fake-crash", "PRIVBENCH_TEST_CRASH_MARKS": str(tmp_path / f"marks-{crashes}"),
           "PRIVBENCH_TEST_CRASHES": str(crashes), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "privbench", "run", str(tmp_path / "crash.toml"), "--out",
                           str(tmp_path / "out"), "-q", "--no-report", "--executor", "ray", "--max-workers", "2"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=240)


def _no_torn_jobs(jobs):
    entries = list(jobs.iterdir())
    assert entries and all((e / "job.json").is_file() for e in entries), [e.name for e in entries]


def test_a_killed_worker_leaves_no_torn_job_and_a_rerun_completes(tmp_path):
    """Killed on both attempts: recorded as failed, the other job finishes, exit 3; once it survives, all finish."""
    failed = _crash_run(tmp_path, crashes=2)
    assert failed.returncode == 3, failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and "1 of 2 jobs failed" in lines[0] and "distill crashing" in lines[0], failed.stderr
    assert "died" in lines[0] or "Worker" in lines[0]
    _no_torn_jobs(tmp_path / "out" / "jobs")
    runs = pq.read_table(tmp_path / "out" / "runs.parquet").to_pylist()
    assert sorted(r["status"] for r in runs) == ["error", "ok"]
    assert next(r for r in runs if r["status"] == "error")["error"]
    assert len(list((tmp_path / "marks-2").iterdir())) == 2  # the task ran twice: once, and its one retry

    retried = _crash_run(tmp_path, crashes=1)  # killed once more, then the retry survives
    assert retried.returncode == 0, retried.stderr
    assert "1 run, 1 reused, 0 failed" in retried.stdout
    _no_torn_jobs(tmp_path / "out" / "jobs")
    runs = pq.read_table(tmp_path / "out" / "runs.parquet").to_pylist()
    assert [r["status"] for r in runs] == ["ok", "ok"]


def test_a_failing_job_is_recorded_while_the_others_run_and_a_rerun_retries_it(cli, tmp_path, monkeypatch):
    """The serial executor: the failure in the tables and the store, exit 3 in one line; the rest finished."""
    site = make_distribution(tmp_path / "site", "fake-failing-job", "fake_failing_job", FAILING,
                             {"fake_failing_job": "fake_failing_job"})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PRIVBENCH_LOAD_PLUGINS", "fake-failing-job")
    suite = tmp_path / "failing.toml"
    suite.write_text(CRASH_SUITE.replace("crashing", "failing") + UTILITY)
    out = tmp_path / "out"
    result = cli("run", suite, "--out", out, "-q")
    lines = result.err.strip().splitlines()
    assert result.code == 3 and len(lines) == 1 and lines[0].startswith("privbench: error: 1 of 4 jobs failed")
    assert "Traceback" not in result.err and "distill failing" in result.err and "ValueError: centroids did not converge" in result.err
    assert "1 job(s) that read their releases did not run" in result.err
    runs = pq.read_table(out / "runs.parquet").to_pylist()
    failed = [r for r in runs if r["status"] == "error"]
    assert len(failed) == 1 and "centroids did not converge" in failed[0]["error"]
    assert {r["task"] for r in runs if r["status"] == "ok"} == {"distill", "utility"}  # random's jobs ran
    assert (out / "report.html").is_file()
    _no_torn_jobs(out / "jobs")
    again = cli("run", suite, "--out", out, "-q")
    assert again.code == 3 and "2 reused, 1 failed" in again.out  # the failure is retried, the rest reused


def test_audit_fans_its_shadows_out_to_ray_with_the_same_results(cli, tmp_path, local_ray, monkeypatch):
    """``privbench audit --executor ray``: the shadows and canary runs are tasks; the results equal the serial ones."""
    options = ["--data", "digits", "--release", "original", "--attack", "mia", "--attack", "canary", "-q",
               "--set", "mia.game=release", "--set", "mia.shadows=2", "--set", "mia.max_members=40",
               "--set", "mia.max_nonmembers=40", "--set", "mia.resamples=20", "--set", "canary.canaries=20",
               "--set", "canary.runs=2", "--set", "canary.resamples=20", "--cpus-per-task", "1"]
    options += [x for a in ("mia", "canary") for k, v in {"target_epochs": 2, "target_width": 8,
                                                           "target_depth": 1}.items()
                for x in ("--set", f"{a}.{k}={v}")]
    local = cli("audit", *options, "--out", tmp_path / "local")
    assert local.code == 0, local.err
    put, sent = ray.put, []
    monkeypatch.setattr(ray, "put", lambda value, **kw: sent.append(type(value).__name__) or put(value, **kw))
    remote = cli("audit", *options, "--out", tmp_path / "ray", "--executor", "ray")
    assert remote.code == 0, remote.err
    assert sent.count("Dataset") == 1 and len(sent) > 1  # the dataset once; each map's other inputs once
    # A command's run id is drawn for each run; everything else must match.
    assert _rows(tmp_path / "local" / "results.parquet", {"run_id"}) == \
        _rows(tmp_path / "ray" / "results.parquet", {"run_id"})

"""A plugin that raises while it works: one line naming it, its package, the job and the error; exit 3; a log.

The fake package ``fake-failing`` (version 0.1) holds a distiller that raises in
``distill``, an attack that raises in ``run``, an attack that scores with the
metrics it is given, and a metric that raises in ``score``.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
import pytest

from helpers import assert_one_line_error, make_distribution

BROKEN = '''
from privbench import hookimpl
from privbench.api import Attack, Distiller, Metric, UserError, score_images


class Failing(Distiller):
    """Raises inside distill, as a buggy plugin would."""

    name = "failing"

    def distill(self, private, ipc, config, ctx):
        raise ValueError("centroids did not converge")


class Refusing(Distiller):
    """Says the input is bad: that stays exit 2."""

    name = "refusing"

    def distill(self, private, ipc, config, ctx):
        raise UserError("refusing needs at least 3 channels")


class Crashing(Attack):
    """Raises inside run."""

    name = "crashing"

    def run(self, target, config, ctx):
        raise KeyError("logits")


class Scoring(Attack):
    """Scores the release's images against themselves with every metric it is given."""

    name = "scoring"

    def run(self, target, config, ctx):
        images = target.release.images[:4]
        score_images(target.metrics, images, images)
        return []


class Pairing(Attack):
    """Pairs the release with a dataset it was not made from: privbench's own check refuses (exit 2)."""

    name = "pairing"

    def run(self, target, config, ctx):
        from privbench.testing import tiny_dataset
        from privbench.utility import train_on_release

        train_on_release(target.release, tiny_dataset(), "convnet", 0, None, ctx)
        return []


class Exploding(Metric):
    """Raises inside score."""

    name = "exploding"
    higher_is_better = True

    def score(self, reference, candidate):
        raise ZeroDivisionError("empty histogram")


@hookimpl
def register_distillers(register):
    register(Failing)
    register(Refusing)


@hookimpl
def register_attacks(register):
    register(Crashing)
    register(Scoring)
    register(Pairing)


@hookimpl
def register_metrics(register):
    register(Exploding)
'''

SUITE = """
name = "broken"
datasets = ["digits"]
seeds = [0]

[[releases]]
method = "failing"
ipc = [2]

[[releases]]
method = "random"
ipc = [2]

[utility]
models = ["convnet"]
seeds = 1
config = { epochs = 2, width = 16, batch_size = 64 }
"""
NO_EVAL = ["--no-evaluate", "-q"]


@pytest.fixture
def broken(tmp_path, monkeypatch):
    site = make_distribution(tmp_path / "site", "fake-failing", "fake_failing", BROKEN, {"fake_failing": "fake_failing"},
                             version="0.1")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PRIVBENCH_LOAD_PLUGINS", "fake-failing")
    monkeypatch.delenv("PRIVBENCH_DEBUG", raising=False)
    monkeypatch.delenv("PRIVBENCH_TRACEBACK", raising=False)


def assert_plugin_failure(result, *needles: str) -> str:
    """Exit 3, one line on stderr starting with 'privbench: error:', no traceback; the line."""
    assert result.code == 3, (result.code, result.err)
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("privbench: error:") and "Traceback" not in result.err, result.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _log_named_in(line: str):
    from pathlib import Path

    assert "(traceback in " in line, line
    return Path(line.rsplit("(traceback in ", 1)[1].rstrip(")"))


def test_a_distiller_that_raises_is_one_line_exit_3_and_a_log(cli, tmp_path, broken):
    out = tmp_path / "rel"
    result = cli("distill", "--data", "digits", "--method", "failing", "--ipc", "2", "--out", out, *NO_EVAL)
    line = assert_plugin_failure(result, "distiller 'failing' (fake-failing 0.1) failed on digits ipc=2: "
                                         "ValueError: centroids did not converge")
    log = out / "privbench-error.log"
    assert _log_named_in(line) == log
    text = log.read_text()
    assert text.startswith("# privbench error log") and "Traceback (most recent call last)" in text
    assert "fake_failing.py" in text and 'raise ValueError("centroids did not converge")' in text
    assert sorted(p.name for p in out.iterdir()) == [".privbench-output.json", "privbench-error.log"]

    # The next run needs no --force: the folder holds only privbench's log, which it replaces.
    again = cli("distill", "--data", "digits", "--method", "random", "--ipc", "2", "--out", out, *NO_EVAL)
    assert again.code == 0, again.err
    assert (out / "release.npz").is_file() and not log.exists()


def test_debug_prints_the_traceback_too(cli, tmp_path, broken):
    out = tmp_path / "rel"
    result = cli("--debug", "distill", "--data", "digits", "--method", "failing", "--ipc", "2", "--out", out, *NO_EVAL)
    assert result.code == 3
    assert "Traceback (most recent call last)" in result.err and "fake_failing.py" in result.err
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("privbench: error: distiller 'failing' (fake-failing 0.1)"), last
    assert "ValueError" in (out / "privbench-error.log").read_text()
    # The flag holds for that one command only.
    plain = cli("distill", "--data", "digits", "--method", "failing", "--ipc", "2", "--out", out, *NO_EVAL)
    assert_plugin_failure(plain, "ValueError")


def test_a_user_error_from_a_plugin_stays_exit_2_without_a_log(cli, tmp_path, broken):
    out = tmp_path / "rel"
    result = cli("distill", "--data", "digits", "--method", "refusing", "--ipc", "2", "--out", out, *NO_EVAL)
    assert_one_line_error(result, "refusing needs at least 3 channels")
    assert not out.exists()


def test_a_refusal_from_inside_a_plugin_names_the_plugin(cli, tmp_path, broken):
    """A check of privbench's that a plugin's call trips stays bad input (exit 2) and says whose call it was."""
    rel = tmp_path / "rel"
    assert cli("distill", "--data", "digits", "--method", "random", "--ipc", "2", "--out", rel, *NO_EVAL).code == 0
    result = cli("audit", "--data", "digits", "--release", rel, "--attack", "pairing", "--out", tmp_path / "a", "-q")
    assert_one_line_error(result, "attack 'pairing':")
    assert result.err.startswith("privbench: error: attack 'pairing': ")


def test_a_log_file_privbench_did_not_write_is_never_replaced(tmp_path):
    from privbench.failures import write_command_log

    out = tmp_path / "out"
    out.mkdir()
    (out / "privbench-error.log").write_text("my notes\n")
    where = write_command_log(out, "distiller 'x' failed", "Traceback ...", "privbench distill")
    assert (out / "privbench-error.log").read_text() == "my notes\n"
    assert where is not None and where.parent.name == "logs" and "Traceback ..." in where.read_text()


def test_an_earlier_release_is_kept_and_the_log_goes_to_the_cache(cli, tmp_path, broken):
    out = tmp_path / "rel"
    assert cli("distill", "--data", "digits", "--method", "random", "--ipc", "2", "--out", out, *NO_EVAL).code == 0
    before = sorted(p.name for p in out.iterdir())
    result = cli("distill", "--data", "digits", "--method", "failing", "--ipc", "2", "--out", out, "--force", *NO_EVAL)
    log = _log_named_in(assert_plugin_failure(result, "distiller 'failing'"))
    assert sorted(p.name for p in out.iterdir()) == before
    assert log.parent.name == "logs" and "centroids did not converge" in log.read_text()


def test_an_attack_that_raises_in_run(cli, tmp_path, broken):
    out = tmp_path / "audit"
    result = cli("audit", "--data", "digits", "--release", "original", "--attack", "crashing", "--out", out, "-q")
    line = assert_plugin_failure(result, "attack 'crashing' (fake-failing 0.1) failed on digits, release original: "
                                         "KeyError: 'logits'")
    assert _log_named_in(line) == out / "privbench-error.log"
    assert 'raise KeyError("logits")' in (out / "privbench-error.log").read_text()


def test_a_metric_that_raises_in_score_inside_an_attack(cli, tmp_path, broken):
    out = tmp_path / "audit"
    result = cli("audit", "--data", "digits", "--release", "original", "--attack", "scoring", "--metric", "exploding",
                 "--out", out, "-q")
    line = assert_plugin_failure(result, "metric 'exploding' (fake-failing 0.1) failed on digits, release original "
                                         "(in attack 'scoring'): ZeroDivisionError: empty histogram")
    assert 'raise ZeroDivisionError("empty histogram")' in _log_named_in(line).read_text()


def test_a_metric_that_raises_in_score_via_the_metrics_command(cli, tmp_path, broken):
    ref = tmp_path / "ref.npz"
    np.savez(ref, images=np.random.default_rng(0).integers(0, 256, size=(4, 8, 8), dtype=np.uint8))
    result = cli("metrics", ref, ref, "--metric", "exploding", "-q")
    line = assert_plugin_failure(result, "metric 'exploding' (fake-failing 0.1) failed on", "ZeroDivisionError")
    log = _log_named_in(line)
    assert log.parent.name == "logs" and "empty histogram" in log.read_text()  # no output folder: the cache's logs


def test_a_suite_finishes_the_other_jobs_and_its_report_lists_the_failure(cli, tmp_path, broken):
    suite = tmp_path / "broken.toml"
    suite.write_text(SUITE)
    out = tmp_path / "out"
    result = cli("run", suite, "--out", out, "-q")
    lines = result.err.strip().splitlines()
    assert result.code == 3 and len(lines) == 1 and "1 of 4 jobs failed" in lines[0], result.err
    reason = "distiller 'failing' (fake-failing 0.1) failed on digits ipc=2: ValueError: centroids did not converge"
    assert reason in lines[0] and "error.log" in lines[0]
    runs = pq.read_table(out / "runs.parquet").to_pylist()
    failed = [r for r in runs if r["status"] == "error"]
    assert len(failed) == 1 and failed[0]["error"] == reason  # the words a single command uses
    assert {r["task"] for r in runs if r["status"] == "ok"} == {"distill", "utility"}
    log = out / "jobs" / failed[0]["run_id"] / "error.log"
    assert 'raise ValueError("centroids did not converge")' in log.read_text()
    assert f"(traceback in {log})" in result.out
    html = (out / "report.html").read_text()
    box = html[html.index("<div class='failed'>"):]
    assert html.index("<div class='failed'>") < html.index("<h2>Summary</h2>")  # at the top
    assert "1 job failed" in box and "digits: distill failing ipc=2 seed=0" in box and "centroids did not converge" in box
    assert f"jobs/{failed[0]['run_id']}/error.log" in box


def test_a_report_without_failures_has_no_failure_box(tmp_path):
    from privbench.report import _failures_box

    assert _failures_box([{"status": "ok", "job": "a"}]) == ""
    box = _failures_box([{"status": "error", "job": "a", "error": "x <b>", "run_id": "k"}] * 2)
    assert "2 jobs failed" in box and "x &lt;b&gt;" in box


def _terminal_progress():
    from rich.console import Console

    from privbench.progress import RichProgress

    stream = io.StringIO()
    return RichProgress(console=Console(file=stream, force_terminal=True, width=100)), stream


def _plain(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_a_failed_task_ends_marked_failed_not_complete():
    progress, stream = _terminal_progress()
    with pytest.raises(ValueError):
        with progress.task("suite", total=3):
            with progress.task("kmeans", total=10) as bar:
                bar.advance(4)
                raise ValueError("boom")
    text = _plain(stream.getvalue())
    assert "failed kmeans" in text and "4/10" in text and "10/10" not in text

    progress, stream = _terminal_progress()
    with progress.task("suite quick", total=2) as bar:
        bar.advance(2)
        bar.fail("1 of 2 jobs failed")
    assert "failed suite quick: 1 of 2 jobs failed" in _plain(stream.getvalue())


def test_in_a_log_a_failed_task_leaves_no_bar():
    from rich.console import Console

    from privbench.progress import RichProgress

    stream = io.StringIO()
    progress = RichProgress(console=Console(file=stream, force_terminal=False, width=100))
    with pytest.raises(ValueError):
        with progress.task("kmeans", total=10):
            raise ValueError("boom")
    assert stream.getvalue().strip() == ""  # at most the newline rich ends its display with


def test_a_plugin_failure_survives_pickling():
    """Ray sends it back through ``__reduce__``; rebuilding from that is what crossing the wire does."""
    from privbench.errors import PluginFailure

    exc = PluginFailure("distiller", "kmeans", "privbench-extra", "0.1", "digits ipc=200", "ValueError: x", "trace")
    rebuild, args = exc.__reduce__()
    back = rebuild(*args)
    assert str(back) == "distiller 'kmeans' (privbench-extra 0.1) failed on digits ipc=200: ValueError: x"
    assert back.trace == "trace" and back.exit_code == 3

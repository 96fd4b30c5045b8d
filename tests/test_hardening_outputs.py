"""Outputs never destroy the user's data: no output on an input, --force only on privbench's own, no leftovers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import assert_one_line_error, write_medmnist_npz

FAST = ("--method", "random", "--ipc", "2", "--no-evaluate", "-q")


def _png(path, value=10):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 6), value, np.uint8)).save(path)


def _folder_dataset(root):
    for cls in ("a", "b"):
        for i in range(4):
            _png(root / cls / f"{i}.png", 10 + 40 * i)
    return root


def _snapshot(root):
    return sorted((str(p.relative_to(root)), p.read_bytes() if p.is_file() else b"") for p in root.rglob("*"))


def _leftovers(parent):
    return [p.name for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name]


def test_distill_refuses_to_write_over_the_folder_dataset_it_reads(cli, tmp_path):
    data = _folder_dataset(tmp_path / "data")
    before = _snapshot(data)
    for out in (data, data / "a", tmp_path):
        result = cli("distill", "--data", f"folder:{data}", "--out", out, "--force", *FAST)
        assert_one_line_error(result, "input")
    assert _snapshot(data) == before


def test_audit_refuses_to_write_over_the_release_it_audits(cli, tmp_path):
    release = tmp_path / "rel"
    assert cli("distill", "--data", "digits", "--out", release, *FAST).code == 0
    before = _snapshot(release)
    result = cli("audit", "--data", "digits", "--release", release, "--attack", "mia", "--out", release, "--force")
    assert_one_line_error(result, "input")
    assert _snapshot(release) == before


def test_metrics_refuses_to_overwrite_its_reference(cli, tmp_path):
    ref = tmp_path / "ref.npz"
    np.savez(ref, images=np.zeros((3, 8, 8), np.uint8))
    cand = tmp_path / "cand.npz"
    np.savez(cand, images=np.full((3, 8, 8), 9, np.uint8))
    before = ref.read_bytes()
    result = cli("metrics", ref, cand, "--metric", "psnr", "--out", ref, "--force")
    assert_one_line_error(result, "input")
    assert ref.read_bytes() == before
    mine = tmp_path / "notes.parquet"
    mine.write_bytes(b"the user's own file")
    assert_one_line_error(cli("metrics", ref, cand, "--metric", "psnr", "--out", mine, "--force"), "privbench")
    assert mine.read_bytes() == b"the user's own file"


def test_force_replaces_only_what_privbench_wrote(cli, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert_one_line_error(cli("distill", "--data", "digits", "--out", out, *FAST), "not empty", "--force")
    assert_one_line_error(cli("distill", "--data", "digits", "--out", out, "--force", *FAST), "did not write")
    assert (out / "precious.txt").read_text() == "keep me"
    fresh = tmp_path / "fresh"
    assert cli("distill", "--data", "digits", "--out", fresh, *FAST).code == 0
    first = (fresh / "release.npz").read_bytes()
    assert cli("distill", "--data", "digits", "--out", fresh, "--force", "--seed", "3", *FAST).code == 0
    assert (fresh / "release.npz").read_bytes() != first
    assert _leftovers(tmp_path) == []


def test_report_keeps_a_figures_folder_it_did_not_write(cli, tmp_path):
    run = tmp_path / "audit"
    assert cli("audit", "--data", "digits", "--release", "original", "--attack", "aia", "--out", run,
               "--set", "aia.target_steps=5", "-q").code == 0
    mine = tmp_path / "mine"
    (mine / "figures").mkdir(parents=True)
    (mine / "figures" / "plot.png").write_bytes(b"the user's figure")
    result = cli("report", run / "results.parquet", "--out", mine)
    assert_one_line_error(result, "did not write")
    assert (mine / "figures" / "plot.png").read_bytes() == b"the user's figure"
    assert sorted(p.name for p in mine.rglob("*")) == ["figures", "plot.png"]
    # Its own report and figures it replaces, again and again, beside the user's other files.
    (run / "notes.txt").write_text("mine")
    for _ in range(2):
        assert cli("report", run / "results.parquet").code == 0
    assert (run / "report.html").is_file() and (run / "notes.txt").read_text() == "mine"
    assert _leftovers(run) == []


def test_report_refused_on_bad_input_leaves_nothing(cli, tmp_path):
    bad = tmp_path / "results.parquet"
    bad.write_bytes(b"PAR1 not really")
    out = tmp_path / "rep"
    assert_one_line_error(cli("report", bad, "--out", out))
    assert not out.exists()


def test_a_failed_rename_leaves_no_staging_folder(cli, tmp_path, monkeypatch):
    import privbench.outputs as outputs

    def fail(staging, out):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(outputs, "_move_into_place", fail)
    out = tmp_path / "out"
    assert_one_line_error(cli("distill", "--data", "digits", "--out", out, *FAST), "cannot write", "denied")
    assert not out.exists() and _leftovers(tmp_path) == []


def test_a_name_too_long_for_the_file_system_is_one_line(cli, tmp_path):
    out = tmp_path / ("x" * 300)
    assert_one_line_error(cli("distill", "--data", "digits", "--out", out, *FAST), "bytes long")
    near = tmp_path / ("y" * 250)  # fits, but its staging name would not without shortening
    assert cli("distill", "--data", "digits", "--out", near, *FAST).code == 0
    assert (near / "release.npz").is_file() and _leftovers(tmp_path) == []


def test_stale_staging_of_a_dead_process_is_removed_and_a_live_ones_kept(cli, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.partial-{dead.pid}-0123abcd"
    live = tmp_path / f".other.partial-{os.getppid()}-0123abcd"
    for folder in (stale, live):
        folder.mkdir()
        (folder / "release.npz").write_bytes(b"private")
    assert cli("distill", "--data", "digits", "--out", tmp_path / "out", *FAST).code == 0
    assert not stale.exists() and live.exists()


def test_a_suite_refused_for_its_ipc_creates_nothing(cli, tmp_path):
    suite = tmp_path / "big.toml"
    suite.write_text('name = "big"\ndatasets = ["digits"]\n[[releases]]\nmethod = "random"\nipc = [5000]\n')
    out = tmp_path / "suite-out"
    assert_one_line_error(cli("run", suite, "--out", out, "-q"), "larger than class")
    assert not out.exists()


def test_a_missing_registry_is_named(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PRIVBENCH_REGISTRY", str(tmp_path / "nowhere"))
    assert_one_line_error(cli("run", "--list"), "registry")
    assert_one_line_error(cli("datasets"), "registry")


def test_a_plugin_that_raises_is_one_line_naming_it(cli, tmp_path, monkeypatch):
    from privbench_builtins.distillers.random import RandomSubset

    def boom(self, *args, **kwargs):
        raise RuntimeError("shape mismatch in step 3")

    monkeypatch.setattr(RandomSubset, "distill", boom)
    out = tmp_path / "out"
    result = cli("distill", "--data", "digits", "--out", out, *FAST)
    assert result.code == 3, result.err  # a plugin failed: not bad input
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    assert "distiller 'random' (privbench " in lines[0] and "RuntimeError: shape mismatch" in lines[0], lines[0]
    # Only the error log is left, in a folder privbench marks as its own; no staging folder.
    assert sorted(p.name for p in out.iterdir()) == [".privbench-output.json", "privbench-error.log"]
    assert _leftovers(tmp_path) == []


def test_out_of_memory_is_one_line(cli, tmp_path, monkeypatch):
    import privbench.data as data_mod

    def exhausted(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(data_mod, "load_dataset", exhausted)
    assert_one_line_error(cli("distill", "--data", "digits", "--out", tmp_path / "o", *FAST), "out of memory")


@pytest.mark.parametrize("command", ["distill", "run"])
def test_sigterm_leaves_no_staging_and_exits_143(tmp_path, command):
    """A kill mid-way removes what was being written, exactly as Ctrl-C does."""
    data = write_medmnist_npz(tmp_path / "d.npz", n=(60, 20, 20), size=12)
    out = tmp_path / "out"
    if command == "distill":
        args = ["distill", "--data", f"npz:{data}", "--method", "dm", "--ipc", "2", "--set", "iterations=100000",
                "--no-evaluate", "--out", str(out), "-q"]
    else:
        suite = tmp_path / "slow.toml"
        suite.write_text(f'name = "slow"\ndatasets = ["npz:{data}"]\n[[releases]]\nmethod = "dm"\nipc = [2]\n'
                         'config = { iterations = 100000 }\n')
        args = ["run", str(suite), "--out", str(out), "-q", "--no-report"]
    proc = subprocess.Popen([sys.executable, "-m", "privbench", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 120
        staging_seen = False
        while time.time() < deadline and not staging_seen:
            time.sleep(0.5)
            staging_seen = bool(_leftovers(tmp_path)) or bool(out.exists() and _leftovers(out / "jobs")
                                                              if (out / "jobs").is_dir() else False)
        assert staging_seen, "the command never started writing"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # a command that ignored the signal must not outlive the test
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert "Traceback" not in err and err.strip().startswith("privbench: error: terminated")
    assert _leftovers(tmp_path) == []
    assert not out.exists()  # nothing had finished, so nothing is kept


def test_a_cache_inside_the_data_is_refused(cli, tmp_path):
    data = _folder_dataset(tmp_path / "data")
    before = _snapshot(data)
    result = cli("distill", "--data", f"folder:{data}", "--cache-dir", data / "cache", "--out", tmp_path / "o", *FAST)
    assert_one_line_error(result, "input")
    assert _snapshot(data) == before


def test_a_failure_under_progress_bars_is_still_one_line(cli, tmp_path, monkeypatch):
    """The CPU allocator's RuntimeError is out of memory, and the bars of the failed run vanish."""
    import privbench.utility as utility

    def exhausted(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 36000000000000 bytes")

    monkeypatch.setattr(utility, "train_classifier", exhausted, raising=False)
    monkeypatch.setattr(utility, "evaluate_release", exhausted)
    result = cli("distill", "--data", "digits", "--method", "random", "--ipc", "1", "--eval-seeds", "1",
                 "--out", tmp_path / "o")
    # The evaluation's cost, said before any work, then the failure as one line.
    notice, *rest = result.err.strip().splitlines()
    assert notice.startswith("utility evaluation:") and result.code == 2
    assert len(rest) == 1 and "out of memory" in rest[0] and "36000000000000" in rest[0]
    assert not (tmp_path / "o").exists()


def test_integer_options_must_fit_in_64_bits(cli, tmp_path):
    result = cli("distill", "--data", "digits", "--method", "dm", "--ipc", "1", "--set",
                 "iterations=99999999999999999999999", "--no-evaluate", "--out", tmp_path / "o")
    assert_one_line_error(result, "64 bits")


def test_json_with_nan_and_a_release_without_images_are_refused(cli, tmp_path):
    rel = tmp_path / "rel"
    assert cli("distill", "--data", "digits", "--out", rel, *FAST).code == 0
    manifest = (rel / "release.json").read_text()
    (rel / "release.json").write_text(manifest.replace('"seed": 0', '"seed": NaN'))
    audit = ("audit", "--data", "digits", "--release", rel, "--attack", "aia", "--out", tmp_path / "a")
    assert_one_line_error(cli(*audit), "NaN")
    (rel / "release.json").write_text(manifest)
    np.savez(rel / "release.npz", images=np.zeros((0, 1, 16, 16), np.float32), labels=np.zeros(0, np.int64))
    assert_one_line_error(cli(*audit), "no images")


def test_bars_of_a_failed_run_vanish_and_those_of_a_finished_one_stay():
    import io

    from rich.console import Console

    from privbench.progress import RichProgress

    def run(fail):
        buffer = io.StringIO()
        progress = RichProgress(console=Console(file=buffer, width=80))
        with pytest.raises(RuntimeError) if fail else contextlib.nullcontext():
            with progress.task("outer", total=2) as outer:
                with progress.task("inner", total=3) as inner:
                    inner.advance(1)
                    if fail:
                        raise RuntimeError("boom")
                outer.advance(1)
        return buffer.getvalue()

    assert "outer" in run(fail=False)
    assert "outer" not in run(fail=True) and "inner" not in run(fail=True)

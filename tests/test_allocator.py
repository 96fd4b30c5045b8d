"""The host allocator's tuning: on by default under glibc, off when the user chose otherwise."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = "from privbench.allocator import tune_host_allocator as t; print(t(), t())"
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def probe(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k not in ("LD_PRELOAD", "PRIVBENCH_ALLOCATOR")}
    result = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
def test_tuned_once_under_glibc():
    assert probe() == "True True"


@pytest.mark.parametrize("env", [{"PRIVBENCH_ALLOCATOR": "default"}, {"PRIVBENCH_ALLOCATOR": " Default "},
                                 {"MALLOC_ARENA_MAX_": "2"}, {"LD_PRELOAD": "/nonexistent/libjemalloc.so"}])
def test_left_alone_when_the_user_chose(env):
    assert probe(**env) == "False False"


def test_the_command_line_tunes_it(monkeypatch):
    import privbench.cli as cli

    calls = []
    monkeypatch.setattr(cli, "tune_host_allocator", lambda: calls.append(1))
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert calls == [1]

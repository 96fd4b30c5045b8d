"""Where the traceback of a failed plugin goes: a log file privbench owns, and stderr under ``--debug``.

A plugin that raises gets one line on the terminal (its kind, name, package,
version, the job and the exception; see :class:`privbench.errors.PluginFailure`)
and exit code 3. The whole traceback goes to a log file:

* ``OUT/privbench-error.log`` for ``distill`` and ``audit``; ``OUT`` then holds
  only that log (and privbench's marker), and the next run replaces it without
  ``--force``;
* ``OUT/jobs/<key>/error.log`` for a failed job of a suite, beside its failure
  record;
* ``<cache>/logs/privbench-error-<time>-<pid>.log`` where there is no output
  folder to write into (``metrics``, a failure before a suite's folder exists,
  an ``--out`` that still holds an earlier finished output).

A log file is written only where none exists or where the one there is
privbench's (it starts with :data:`LOG_HEADER`); a file of the user's is never
replaced.
"""

from __future__ import annotations

import datetime as dt
import os
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from privbench.errors import PluginFailure

ERROR_LOG = "privbench-error.log"
"""The log of a failed ``distill`` or ``audit``, in its output folder."""
JOB_ERROR_LOG = "error.log"
"""The log of a failed suite job, in its folder of ``OUT/jobs/``."""
LOG_HEADER = "# privbench error log"
ENV_DEBUG = "PRIVBENCH_DEBUG"

_debug = False


def set_debug(flag: bool) -> None:
    """``privbench --debug``: print the traceback of a failure to stderr as well."""
    global _debug
    _debug = bool(flag)


def debug_enabled() -> bool:
    """``--debug``, or ``PRIVBENCH_DEBUG=1`` (``PRIVBENCH_TRACEBACK=1``, its older name) in the environment."""
    env = (os.environ.get(ENV_DEBUG) or os.environ.get("PRIVBENCH_TRACEBACK") or "").strip().lower()
    return _debug or env in ("1", "true", "yes", "on")


def failure_trace(exc: BaseException) -> str:
    """The traceback to log: a plugin failure's own (taken where the plugin raised, on a worker too), else ``exc``'s."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, PluginFailure) and current.trace:
            return current.trace
        cause = getattr(current, "cause", None)  # a Ray task's error carries the exception the task raised
        current = cause if isinstance(cause, BaseException) else current.__cause__
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def log_text(summary: str, trace: str, what: str) -> str:
    """A log file's content: the header, when and what failed, the one line, the traceback."""
    import privbench

    when = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return (f"{LOG_HEADER} (privbench {privbench.__version__}, {when})\n# {what}\n# {summary}\n\n"
            f"{trace.rstrip()}\n")


def is_own_log(path: Path) -> bool:
    """Whether ``path`` is a log file privbench wrote."""
    try:
        if path.is_symlink() or not path.is_file():
            return False
        with open(path, "rb") as fh:
            return fh.read(len(LOG_HEADER)) == LOG_HEADER.encode()
    except OSError:
        return False


def write_log(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` unless a file that is not privbench's log is there; True when written."""
    from privbench.results import atomic_write

    path = Path(path)
    if path.is_symlink() or (path.exists() and not is_own_log(path)):
        return False
    try:
        atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8", errors="backslashreplace"))
    except OSError:
        return False
    return True


def holds_only_failure_log(folder: Path) -> bool:
    """A folder that a failed command left: privbench's marker and its error log, nothing else."""
    from privbench.outputs import MARKER

    try:
        names = {p.name for p in Path(folder).iterdir()}
    except OSError:
        return False
    return ERROR_LOG in names and names <= {ERROR_LOG, MARKER} and is_own_log(Path(folder) / ERROR_LOG)


def fallback_log_path() -> Path:
    """A new file in the cache's ``logs`` folder, for a failure with no output folder to hold its log."""
    from privbench.api import default_cache_dir

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return default_cache_dir() / "logs" / f"privbench-error-{stamp}-{os.getpid()}.log"


def write_command_log(out_dir: Path | None, summary: str, trace: str, what: str) -> Path | None:
    """Write the log of a failed command; return where it went (None: nowhere could be written).

    ``out_dir`` (the command's output folder, already checked to be no input)
    gets ``privbench-error.log`` when it is absent, empty, or holds only an
    earlier failure's log; a folder holding an earlier finished output is left
    as it was and the log goes to the cache's ``logs`` folder instead.
    """
    from privbench.outputs import MARKER, write_marker

    text = log_text(summary, trace, what)
    if out_dir is not None:
        out_dir = Path(out_dir)
        try:
            usable = not out_dir.exists() or (out_dir.is_dir() and not out_dir.is_symlink()
                                              and (not any(out_dir.iterdir()) or holds_only_failure_log(out_dir)))
            if usable:
                out_dir.mkdir(parents=True, exist_ok=True)
                if not (out_dir / MARKER).is_file():
                    write_marker(out_dir, "error log")
                if write_log(out_dir / ERROR_LOG, text):
                    return out_dir / ERROR_LOG
        except OSError:
            pass
    for path in (fallback_log_path(), Path(_tempdir()) / fallback_log_path().name):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if write_log(path, text):
            return path
    return None


def _tempdir() -> str:
    import tempfile

    return tempfile.gettempdir()


@contextmanager
def log_failures_in(folder: Path) -> Iterator[None]:
    """A :class:`PluginFailure` raised inside gets its log written into ``folder`` (by the command line's handler)."""
    try:
        yield
    except PluginFailure as exc:
        if getattr(exc, "log_folder", None) is None:
            exc.log_folder = Path(folder).expanduser()
        raise

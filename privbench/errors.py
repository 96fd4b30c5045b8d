"""Errors that mean "the user gave us something we cannot use", and plugins that failed.

The CLI turns a :class:`UserError` into one line on stderr and exit code 2,
never a traceback, and a :class:`PluginFailure` into one line and exit code 3,
its traceback in a log file. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class UserError(Exception):
    """Bad input: a missing file, a wrong shape, an unknown plugin name, ..."""

    exit_code = 2

    def __init__(self, message: str):
        # One line only: the CLI prints exactly this.
        super().__init__(" ".join(str(message).split()))


class PluginError(UserError):
    """A plugin that is needed could not be loaded or is not valid."""


class PluginFailure(Exception):
    """A plugin raised while doing its work: not bad input but a failed plugin (exit code 3).

    It carries what the one-line message names (the plugin's kind, name,
    package and version, the job it was working on, the exception) and the
    formatted traceback, so that the command, or a suite's job store, can write
    the trace to a log file while the terminal gets one line. Picklable, so it
    crosses from a Ray worker to the driver intact.
    """

    exit_code = 3

    def __init__(self, kind: str, name: str, package: str = "", version: str = "", job: str = "",
                 error: str = "", trace: str = "", within: str = ""):
        self.kind, self.name, self.package, self.version = kind, name, package, version
        self.job, self.error, self.trace, self.within = job, error, trace, within
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """``distiller 'kmeans' (privbench-extra 0.1.0) failed on digits ipc=200: ValueError: ...``."""
        origin = " ".join(x for x in (self.package, self.version) if x)
        where = f" on {self.job}" if self.job else ""
        inside = f" (in {self.within})" if self.within else ""
        return f"{self.kind} {self.name!r}{f' ({origin})' if origin else ''} failed{where}{inside}: {self.error}"

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return (type(self), (self.kind, self.name, self.package, self.version, self.job, self.error, self.trace,
                             self.within))


def out_of_memory(exc: BaseException) -> bool:
    """MemoryError, CUDA's OutOfMemoryError, and the CPU allocator's RuntimeError."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in str(exc) or "out of memory" in str(exc))


def describe_exception(exc: BaseException) -> str:
    """``ValueError: what it said`` on one line, at most a few hundred characters."""
    detail = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}{': ' + detail if detail else ''}"


@contextmanager
def plugin_failure(kind: str, name: str, package: str = "", version: str = "", job: str = "",
                   keep: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Frame an exception from a plugin's own code as a :class:`PluginFailure` naming the plugin and the job.

    A :class:`UserError` raised inside (the plugin says the input is bad, or
    a privbench function it called refused its input) stays exit 2, its line
    prefixed with the plugin (``attack 'confgap': ...``) unless it names the
    plugin already; interrupts and exits are never
    caught; ``keep`` lists exceptions the caller handles itself. A failure of
    another plugin that this one called (a metric inside an attack, a distiller
    re-run for a shadow pipeline) keeps its own name and gets this job where it
    had none.
    """
    try:
        yield
    except keep:
        raise
    except UserError as exc:
        if type(exc) is not UserError or repr(name) in str(exc) or f"{kind} {name}" in str(exc):
            raise
        raise UserError(f"{kind} {name!r}: {exc}") from exc
    except PluginFailure as exc:
        if not exc.job and job:
            exc.job = job
            exc.within = exc.within or f"{kind} {name!r}"
            exc.args = (exc.message,)
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of third-party code
        if out_of_memory(exc):
            raise  # not the plugin's fault: the command line says so in its own line
        import traceback

        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        raise PluginFailure(kind, name, package, version, job, describe_exception(exc), trace) from exc


@contextmanager
def failure_job(job: str) -> Iterator[None]:
    """Name ``job`` in any :class:`PluginFailure` raised inside that names no job yet."""
    try:
        yield
    except PluginFailure as exc:
        if not exc.job:
            exc.job = job
            exc.args = (exc.message,)
        raise

"""Errors that mean "the user gave us something we cannot use".

The CLI turns a :class:`UserError` into one line on stderr and exit code 2,
never a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
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


class PluginFailure(PluginError):
    """A plugin raised while doing its work: one line that names it (``PRIVBENCH_TRACEBACK=1`` keeps the trace)."""


@contextmanager
def plugin_failure(kind: str, name: str, package: str = "", keep: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Frame an exception from a plugin's own code as one line naming the plugin and its package.

    A :class:`UserError` the plugin raises on purpose passes through unchanged;
    interrupts and exits are never caught; ``keep`` lists exceptions the
    caller handles itself.
    """
    try:
        yield
    except (UserError, *keep):
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of third-party code
        if os.environ.get("PRIVBENCH_TRACEBACK", "").lower() in ("1", "true", "yes"):
            raise
        where = f" (package {package})" if package and package != name else ""
        detail = " ".join(str(exc).split())[:300]
        raise PluginFailure(f"{kind} plugin {name!r}{where} failed: {type(exc).__name__}"
                            f"{': ' + detail if detail else ''} (set PRIVBENCH_TRACEBACK=1 for the trace)") from exc

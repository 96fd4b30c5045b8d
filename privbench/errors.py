"""Errors that mean "the user gave us something we cannot use".

The CLI turns a :class:`UserError` into one line on stderr and exit code 2,
never a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: a missing file, a wrong shape, an unknown plugin name, ..."""

    exit_code = 2

    def __init__(self, message: str):
        # One line only: the CLI prints exactly this.
        super().__init__(" ".join(str(message).split()))


class PluginError(UserError):
    """A plugin that is needed could not be loaded or is not valid."""

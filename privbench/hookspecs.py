"""The hooks a privbench plugin can implement.

A plugin package points an entry point of the ``privbench`` group at a module
that implements one or more of these hooks with ``@privbench.hookimpl``. Each
hook hands classes over through a ``register`` callback, so privbench can
check them (right base class, a name, a frozen ``Config``) and report a bad one
without crashing.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("privbench")
hookimpl = pluggy.HookimplMarker("privbench")


@hookspec
def register_distillers(register):
    """Register Distiller subclasses: call ``register(cls)`` once per class."""


@hookspec
def register_attacks(register):
    """Register Attack subclasses: call ``register(cls)`` once per class."""


@hookspec
def register_metrics(register):
    """Register Metric subclasses: call ``register(cls)`` once per class."""


@hookspec
def register_commands(cli):
    """Add click commands to the ``privbench`` command group ``cli``."""

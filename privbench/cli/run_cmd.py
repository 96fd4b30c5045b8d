"""``privbench run``: a whole suite (placeholder until the suite runner lands)."""

from __future__ import annotations

import click

from privbench.errors import UserError


@click.command("run")
@click.argument("suite", required=False, default="quickstart")
def command(suite: str) -> None:
    """Run a suite from registry/suites/."""
    raise UserError("privbench run is not implemented yet")

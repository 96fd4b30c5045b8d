"""``privbench report`` (placeholder until the report lands)."""

from __future__ import annotations

import click

from privbench.errors import UserError


@click.command("report")
@click.argument("results", required=True)
def command(results: str) -> None:
    """Write report.html and figures from a results table."""
    raise UserError("privbench report is not implemented yet")

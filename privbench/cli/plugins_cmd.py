"""``privbench plugins``: what is installed, what failed to load, and what exists."""

from __future__ import annotations

import json

import click
from rich.markup import escape
from rich.table import Table

from privbench.cli.common import registry_from, stdout_console
from privbench.errors import UserError
from privbench.plugins import ENV_LOAD
from privbench.registry_path import registry_dir

KINDS = ("distiller", "attack", "metric")


def _catalogue() -> list[dict]:
    path = registry_dir() / "plugins.toml"
    if not path.is_file():
        return []
    from privbench.schema import read_toml

    entries = read_toml(path, "plugin catalogue").get("plugin", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise UserError(f"plugin catalogue {path}: 'plugin' must be an array of tables ([[plugin]])")
    return entries


def _install_command(entry: dict) -> str:
    """The catalogue's install command; for a package shipped with privbench, pip pointed at where it is here.

    That folder is ``plugins/<package>`` in a source checkout and inside the
    installed privbench package otherwise, so the command works from anywhere.
    """
    example = entry.get("example")
    if isinstance(example, str) and example:
        import shlex

        from privbench.registry_path import example_package_dir

        folder = example_package_dir(example)
        if folder is not None:
            return f"pip install {shlex.quote(str(folder))}"
    return str(entry.get("install", ""))


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--kind", type=click.Choice(KINDS), default=None, help="Only plugins of this kind.")
@click.option("--available", is_flag=True, help="List known plugin packages from the catalogue, installed or not.")
@click.pass_context
def command(ctx: click.Context, as_json: bool, kind: str | None, available: bool) -> None:
    """List installed plugins (broken ones in red, with their error)."""
    registry = registry_from(ctx)
    console = stdout_console()
    if available:
        installed = {r.distribution.lower().replace("_", "-") for r in registry.records}
        rows = []
        for entry in _catalogue():
            pkg = entry.get("package", "")
            rows.append({**entry, "install": _install_command(entry),
                         "installed": pkg.lower().replace("_", "-") in installed})
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        table = Table(title="Known plugin packages (listing is not endorsement)")
        for col in ("package", "provides", "installed", "description", "install"):
            table.add_column(col, overflow="fold")  # a command cut with an ellipsis cannot be copied
        for r in rows:
            table.add_row(
                escape(r.get("package", "")),
                escape(", ".join(r.get("provides", []))),
                "[green]yes[/]" if r["installed"] else "no",
                escape(r.get("description", "")),
                escape(r.get("install", "")),
            )
        console.print(table)
        for r in rows:
            if not r["installed"] and r.get("install", "").startswith("pip "):
                console.print(f"{escape(r.get('package', ''))}: {escape(r['install'])}", soft_wrap=True)
        return

    records = [r for r in registry.records if kind is None or r.kind == kind]
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in records], indent=2))
        return
    table = Table(title="privbench plugins")
    for col in ("kind", "name", "package", "version", "status", "description / error"):
        table.add_column(col)
    order = {k: i for i, k in enumerate(KINDS)}
    for r in sorted(records, key=lambda r: (order.get(r.kind, 9), r.name)):
        if r.ok:
            table.add_row(r.kind, r.name, r.distribution, r.version, "[green]ok[/]", escape(r.description))
        elif r.status == "warning":
            table.add_row(r.kind, r.name, r.distribution, r.version, "[yellow]warning[/]",
                          f"[yellow]{escape(r.error or '')}[/]")
        else:
            table.add_row(
                r.kind, r.name, r.distribution, r.version, "[red]error[/]", f"[red]{escape(r.error or '')}[/]",
                style="red",
            )
    console.print(table)
    bad = registry.failures()
    if bad:
        console.print(f"[red]{len(bad)} plugin(s) failed to load[/]; commands that need them will refuse to run.")
    warned = registry.warnings()
    if warned:
        console.print(f"[yellow]{len(warned)} plugin warning(s)[/]: a package that provides nothing, or a name in "
                      f"{ENV_LOAD} that selects none; --strict-plugins makes them errors.")

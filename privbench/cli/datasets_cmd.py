"""``privbench datasets``: the dataset cards and whether each is on this machine."""

from __future__ import annotations

import json

import click
from rich.markup import escape
from rich.table import Table

from privbench.cli.common import stdout_console
from privbench.data.cards import DatasetCard, load_cards


def _protocol(card: DatasetCard) -> str:
    """How a card's folder becomes its splits, in a few words: two cards on one folder differ here."""
    options = card.options
    words = []
    if "classes" in options:
        words.append("merged" if any(len(sources) > 1 for _, sources in options["classes"]) else "selected")
    if options.get("balance"):
        words.append("balanced")
    if options.get("split"):
        words.append("{}/{}".format(*options["split"]))
    return ", ".join(words)


@click.command("datasets")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--layout", "show_layout", is_flag=True, help="Also print the folder layout each card expects.")
def command(as_json: bool, show_layout: bool) -> None:
    """List dataset cards and whether their data is available here."""
    cards = load_cards()
    rows = []
    for card in cards.values():
        available, where = card.availability()
        rows.append(
            {
                "name": card.name,
                "title": card.title,
                "spec": card.spec,
                "classes": list(card.classes),
                "image_size": card.image_size,
                "channels": card.channels,
                "licence": card.licence,
                "public": card.public,
                "protocol": _protocol(card),
                "class_sources": {name: list(sources) for name, sources in card.options["classes"]}
                if "classes" in card.options else None,
                "available": available,
                "where": where,
                "layout": card.layout.strip(),
                "source": card.source,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    console = stdout_console()
    table = Table(title="privbench datasets")
    for col in ("name", "title", "classes", "size", "protocol", "available", "where"):
        table.add_column(col)
    for r in rows:
        size = f"{r['image_size']} px" if r["image_size"] else "native"
        table.add_row(
            r["name"],
            escape(r["title"]),
            str(len(r["classes"])),
            size,
            escape(r["protocol"]),
            "[green]yes[/]" if r["available"] else "[yellow]no[/]",
            escape(r["where"]),
        )
    console.print(table)
    if show_layout:
        for r in rows:
            console.print(f"\n[bold]{r['name']}[/] ({escape(r['licence'])})\n{escape(r['layout'])}")
    else:
        console.print("Use a card name as --data, or npz:PATH / medmnist:NAME / folder:PATH / dicom:PATH. "
                      "'privbench datasets --layout' shows where to put each dataset.")

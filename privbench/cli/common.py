"""Options and output helpers shared by the commands."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import click
from rich.console import Console
from rich.table import Table

from privbench.limits import MAX_SEED
from privbench.plugins import Registry, get_registry

device_option = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"], case_sensitive=False),
    default="auto",
    show_default=True,
    help="Where to compute: a CUDA GPU when available (auto), or force one.",
)
seed_option = click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
                           help="Seed for every random draw (0 to 2**63-1).")
set_option = click.option(
    "--set",
    "set_items",
    multiple=True,
    metavar="KEY=VALUE",
    help="A plugin option, checked against the plugin's Config (repeatable).",
)
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
force_option = click.option("--force", is_flag=True, help="Replace a non-empty output directory.")
cache_option = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Cache for decoded images and intermediate models (default ~/.cache/privbench).",
)


def executor_options(fn):
    """--executor, --address, --max-workers and the per-task resource shares."""
    options = [
        click.option("--executor", type=click.Choice(["local", "ray"], case_sensitive=False), default="local",
                     show_default=True, help="Run jobs here one after another, or as Ray tasks (needs privbench[ray])."),
        click.option("--address", default=None, metavar="ADDR",
                     help="Ray cluster to join: auto, or ray://HOST:PORT (default: start a local Ray for the run)."),
        click.option("--max-workers", type=click.IntRange(1), default=None,
                     help="At most this many Ray tasks at once (default: as many as the CPUs allow)."),
        click.option("--cpus-per-task", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="CPUs each task holds; it computes with as many torch threads (ray default 1)."),
        click.option("--gpus-per-task", type=click.FloatRange(min=0), default=None,
                     help="GPU share each Ray task asks for, e.g. 0.25 (default: 1 on a cluster with GPUs, else 0)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def make_executor_options(executor: str, address: str | None, max_workers: int | None, cpus_per_task: float | None,
                          gpus_per_task: float | None):
    """The checked options; ``--executor ray`` without Ray installed is refused here, before any output."""
    from privbench.executors import ExecutorOptions, require_backend

    options = ExecutorOptions(executor.lower(), address, max_workers, cpus_per_task, gpus_per_task)
    require_backend(options)
    return options


def registry_from(ctx: click.Context) -> Registry:
    strict = bool((ctx.find_root().obj or {}).get("strict"))
    return get_registry(strict=strict)


def stdout_console() -> Console:
    """Tables on stdout; wide enough when piped to a file, where no terminal sets the width."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=140)
    return console


def make_run_context(device: str, seed: int, quiet: bool, cache_dir: Path | None = None, **extra: Any):
    """The core's :func:`privbench.engine.make_run_context`, imported when a command needs it (not at listing)."""
    from privbench.engine import make_run_context as make

    return make(device, seed, quiet, cache_dir, **extra)


def fmt_number(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def results_table(records: Iterable[dict[str, Any]], title: str | None = None) -> Table:
    """A rich table of result records: value [CI] (n); the game of a privacy figure, and a confounded one marked."""
    from privbench.report.tables import release_label

    records = list(records)
    games = any(r.get("game") for r in records)
    table = Table(title=title, show_lines=False)
    columns = ("release", "evaluator") + (("game",) if games else ()) + ("measure", "subset", "value", "95% CI", "n")
    for col in columns:
        table.add_column(col, justify="right" if col in ("value", "n") else "left")
    for r in records:
        release = release_label(r) if r.get("release_method") else ""
        try:
            detail = json.loads(r["detail"]) if r.get("detail") else {}
        except (json.JSONDecodeError, TypeError):
            detail = {}
        lead = [release, r["evaluator"]] + ([r.get("game") or ""] if games else []) + [r["measure"],
                                                                                        r.get("subset", "")]
        if r.get("status") != "ok":
            table.add_row(*lead, f"[yellow]{r['status']}[/]", str(detail.get("reason", ""))[:70], "-")
            continue
        ci = "-"
        if r.get("ci_low") is not None and r.get("ci_high") is not None:
            ci = f"[{fmt_number(r['ci_low'])}, {fmt_number(r['ci_high'])}]"
        value = fmt_number(r["value"])
        if detail.get("confounded"):
            value = f"[red]{value} confounded[/]"
        table.add_row(*lead, value, ci, str(r["n"]))
    return table

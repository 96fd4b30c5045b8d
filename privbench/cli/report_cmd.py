"""``privbench report``: the HTML report and PNG figures for a results table."""

from __future__ import annotations

from pathlib import Path

import click

from privbench.cli.common import stdout_console


@click.command("report")
@click.argument("results", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Directory for report.html and figures/ (default: beside RESULTS).")
@click.option("--runs", "runs_path", type=click.Path(path_type=Path), default=None,
              help="runs.parquet (default: beside RESULTS).")
@click.option("--show-private-images", is_flag=True,
              help="Include figures of private images even if the dataset card does not mark the data public.")
@click.option("--title", default=None, help="Title of the report.")
@click.option("--paper", default=None, metavar="NAME",
              help="Set a paper's published figures (registry/papers/NAME.toml) beside the measured ones "
                   "(default: the paper the suite declares it reproduces, if any).")
def command(results: Path, out_dir: Path | None, runs_path: Path | None, show_private_images: bool, title: str | None,
            paper: str | None):
    """Write report.html (self-contained) and figures from RESULTS (a results.parquet)."""
    from privbench.errors import UserError
    from privbench.outputs import check_own_entries, refuse_overlap
    from privbench.report import write_report
    from privbench.results import read_table

    read_table(results)  # a missing or corrupt file fails here, before anything is written
    out_dir = Path(out_dir or results.parent).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} exists and is not a directory")
    runs_path = runs_path or results.parent / "runs.parquet"
    jobs_dir = results.parent / "jobs"
    refuse_overlap([out_dir / "report.html", out_dir / "figures"], [results, runs_path, jobs_dir])
    check_own_entries(out_dir)
    html = write_report(results, out_dir, runs_path=runs_path, jobs_dir=jobs_dir if jobs_dir.is_dir() else None,
                        show_private_images=show_private_images, title=title, paper=paper)
    stdout_console().print(f"report: {html}")

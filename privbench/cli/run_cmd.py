"""``privbench run``: a whole suite, resumable, ending in Parquet tables and a report."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from privbench.cli.common import (cache_option, device_option, executor_options, make_executor_options, quiet_option,
                                  registry_from, stdout_console)


@click.command("run")
@click.argument("suite", required=False, default="quickstart")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output directory (default: privbench-out/SUITE).")
@click.option("--data", "data_specs", multiple=True, metavar="SPEC",
              help="Run the suite on this dataset instead of its own (repeatable), e.g. npz:PATH or folder:PATH.")
@click.option("--fresh", is_flag=True, help="Recompute every job instead of reusing finished ones.")
@click.option("--show-private-images", is_flag=True,
              help="Allow report figures of private images even if the dataset card does not mark the data public.")
@click.option("--no-report", is_flag=True, help="Write the tables only.")
@click.option("--list", "list_suites", is_flag=True, help="List the suites in the registry and exit.")
@device_option
@executor_options
@quiet_option
@cache_option
@click.pass_context
def command(ctx, suite, out_dir, data_specs, fresh, show_private_images, no_report, list_suites, device, executor,
            address, max_workers, cpus_per_task, gpus_per_task, quiet, cache_dir):
    """Run SUITE (a name from registry/suites/ or a .toml path; default: quickstart).

    Finished jobs are cached in OUT/jobs/ by a hash of their configuration: run the
    same command again after an interruption and only unfinished and failed jobs run.
    A job that fails is recorded with its reason while the others go on; the run
    then exits with code 3 naming the failed jobs.
    """
    from privbench.executors import JobsFailed, make_executor
    from privbench.inputs import dataset_inputs
    from privbench.jobs import prepare_suite, run_suite
    from privbench.outputs import check_own_entries, check_suite_dir, refuse_overlap, write_marker
    from privbench.suites import available_suites, parse_suite, suite_path, validate_suite

    console = stdout_console()
    if list_suites:
        for name, path in available_suites().items():
            first = parse_suite(path).description.splitlines()
            console.print(f"[bold]{name}[/]  {first[0] if first else ''}")
        return
    options = make_executor_options(executor, address, max_workers, cpus_per_task, gpus_per_task)
    registry = registry_from(ctx)
    spec = parse_suite(suite_path(suite))
    if data_specs:
        spec.datasets = list(dict.fromkeys(data_specs))
    validate_suite(spec, registry)
    out_dir = Path(out_dir) if out_dir else Path("privbench-out") / spec.name
    inputs = [p for d in spec.datasets for p in dataset_inputs(d)] + [spec.source]
    check_suite_dir(out_dir, inputs)  # reusing a suite's own folder is how it resumes
    if cache_dir is not None:
        refuse_overlap([cache_dir], inputs)
    if not no_report:
        check_own_entries(out_dir)
    prepared = prepare_suite(spec, registry, cache_dir)  # every refusal before anything is written
    runner = make_executor(options)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    if created:
        write_marker(out_dir, "run")
    try:
        results, runs, stats = run_suite(
            prepared, registry, out_dir, device=device, fresh=fresh, quiet=quiet, cache_dir=cache_dir,
            show_private_images=show_private_images, console=console, executor=runner,
        )
    except BaseException:
        if created and not any((out_dir / "jobs").glob("*/job.json")):
            shutil.rmtree(out_dir, ignore_errors=True)  # nothing finished: leave nothing behind
        raise
    console.print(
        f"suite [bold]{spec.name}[/]: {stats['jobs']} jobs, {stats['ran']} run, {stats['cached']} reused, "
        f"{len(stats['failed'])} failed on the {stats['executor']} executor "
        f"in {stats['seconds']:.1f} s -> {results}"
    )
    if not no_report:
        from privbench.report import write_report

        html = write_report(results, out_dir, runs_path=runs, jobs_dir=out_dir / "jobs",
                            show_private_images=show_private_images or spec.show_private_images)
        console.print(f"report: {html}")
    if stats["failed"]:
        names = "; ".join(f"{label} ({reason})" for label, reason in stats["failed"])
        skipped = f"; {len(stats['not_run'])} job(s) that read their releases did not run" if stats["not_run"] else ""
        raise JobsFailed(f"{len(stats['failed'])} of {stats['jobs']} jobs failed: {names}{skipped}; their records and "
                         f"tracebacks (error.log) are in {out_dir / 'jobs'} and a rerun retries them")

"""``privbench audit``: attack a release and measure what it gives away."""

from __future__ import annotations

from pathlib import Path

import click

from privbench.cli.common import (
    cache_option,
    device_option,
    executor_options,
    force_option,
    make_executor_options,
    make_run_context,
    quiet_option,
    registry_from,
    results_table,
    seed_option,
    set_option,
    stdout_console,
)


@click.command("audit")
@click.option("--data", "data_spec", required=True, metavar="SPEC", help="The private dataset the release came from.")
@click.option("--release", "release_arg", required=True, metavar="DIR|original", help="A release directory, or 'original' for the training set itself.")
@click.option("--attack", "attacks", multiple=True, help="Attack plugin(s) to run (repeatable; default: all installed).")
@click.option("--metric", "metrics", multiple=True, help="Metric plugin(s) to score with (repeatable; default: all installed).")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Directory for results and figures.")
@set_option
@click.option(
    "--show-private-images",
    is_flag=True,
    help="Allow figures that show private training images, even if the dataset card does not mark the data public.",
)
@device_option
@executor_options
@seed_option
@force_option
@quiet_option
@cache_option
@click.pass_context
def command(ctx, data_spec, release_arg, attacks, metrics, out_dir, set_items, show_private_images, device, executor,
            address, max_workers, cpus_per_task, gpus_per_task, seed, force, quiet, cache_dir):
    """Run attacks on a release and write OUT/results.parquet, OUT/runs.parquet and figures.

    Options go to one attack each: --set mia.shadows=8 --set autoencoder.epochs=5.
    With --executor ray, an attack's shadow pipelines and canary runs are Ray tasks.
    If a plugin raises, OUT holds only privbench-error.log (its traceback) and the
    command exits with code 3.
    """
    from privbench.config import build_config, parse_set_options, split_scoped
    from privbench.data import load_dataset
    from privbench.errors import UserError
    from privbench.outputs import check_output_dir, refuse_overlap

    options = make_executor_options(executor, address, max_workers, cpus_per_task, gpus_per_task)
    registry = registry_from(ctx)
    names = list(dict.fromkeys(attacks)) or registry.names("attack")
    if not names:
        raise UserError("no attack plugins are installed")
    classes = {name: registry.get("attack", name) for name in names}
    scoped = split_scoped(parse_set_options(set_items), names)
    configs = {name: build_config(classes[name].Config, scoped[name], owner=f"attack {name}") for name in names}
    for name in metrics:
        registry.get("metric", name)
    from privbench.inputs import dataset_inputs, release_inputs

    inputs = dataset_inputs(data_spec) + release_inputs(release_arg)
    check_output_dir(out_dir, force, inputs)
    if cache_dir is not None:
        refuse_overlap([cache_dir], inputs)

    dataset = load_dataset(data_spec, cache_dir=cache_dir)
    from privbench.executors import make_executor

    from privbench.failures import log_failures_in

    runner = make_executor(options)
    try:
        with log_failures_in(out_dir):  # a plugin's traceback goes to OUT/privbench-error.log
            runner.share(dataset)
            _audit(registry, dataset, runner, names, configs, metrics, out_dir, inputs, release_arg, device, seed,
                   force, quiet, cache_dir, show_private_images)
    finally:
        runner.close()


def _audit(registry, dataset, runner, names, configs, metrics, out_dir, inputs, release_arg, device, seed, force, quiet,
           cache_dir, show_private_images) -> None:
    from privbench.api import AuditTarget
    from privbench.engine import load_target_release, make_rebuild, metric_instances
    from privbench.outputs import staged_output_dir
    from privbench.results import result_records, run_record, write_results, write_runs

    run_ctx = make_run_context(device, seed, quiet, cache_dir, executor=runner,
                               allow_private_images=bool(dataset.public or show_private_images))
    release = load_target_release(registry, dataset, release_arg, run_ctx)
    target = AuditTarget(
        dataset=dataset,
        release=release,
        metrics=metric_instances(registry, run_ctx.device, list(metrics) or None),
        rebuild=make_rebuild(registry, release.manifest),
    )
    from privbench.engine import run_attack

    records, run_rows = [], []
    with staged_output_dir(out_dir, force, inputs, command="audit") as stage:
        run_ctx.out_dir = stage
        with run_ctx.progress.task("attacks", total=len(names)) as bar:
            for name in names:
                info, rows = run_attack(registry, name, target, configs[name], run_ctx)
                records += result_records(info, rows)
                run_rows.append(run_record(info))
                bar.advance(1, attack=name)
        write_results(stage / "results.parquet", records)
        write_runs(stage / "runs.parquet", run_rows)
    console = stdout_console()
    overall = [r for r in records if r.get("subset", "all") == "all"]
    console.print(results_table(overall, title=f"Audit of {release.method} on {dataset.name}"))
    if len(overall) < len(records):
        console.print(f"{len(records) - len(overall)} more rows (per class and per source of non-members) in the results table")
    from privbench.provenance import PROVENANCE_FILE, member_indices

    if release.provenance is None:
        console.print(f"[yellow]{PROVENANCE_FILE} was not found beside the release: the members that seeded it "
                      "could not be scored on their own[/]")
    elif release_arg != "original":
        seeded = len(member_indices(release.provenance))
        console.print(f"{PROVENANCE_FILE}: present ({seeded} members seeded the release"
                      f"{' and were scored on their own, subset init_members' if seeded else ''}); never share it")
    console.print(f"results: {out_dir / 'results.parquet'}")

"""``privbench distill``: make a release from a private training set, and score its utility."""

from __future__ import annotations

from pathlib import Path

import click

from privbench.cli.common import (
    cache_option,
    device_option,
    force_option,
    make_run_context,
    quiet_option,
    registry_from,
    results_table,
    seed_option,
    set_option,
    stdout_console,
)


def evaluation_plan(models: list[str], seeds: int, config, release_images: int | None, train_images: int,
                    test_images: int) -> str:
    """One line saying what the utility evaluation will train, and how to make it shorter.

    Printed before any work: with the defaults it trains 3 classifiers for 1000
    epochs each, which is most of the command's time on a CPU.
    """
    import math

    if release_images is None:
        on = f"the release (its size is set by the method; the private training set has {train_images} images)"
        steps = ""
    else:
        on = f"the release's {release_images} images"
        total = len(models) * seeds * config.epochs * math.ceil(release_images / config.batch_size)
        steps = f", {total} optimiser steps in all"
    shorter = ["--no-evaluate"]
    if config.epochs > 1:
        shorter.append(f"--eval-set epochs={max(1, config.epochs // 10)}")
    if seeds > 1:
        shorter.append("--eval-seeds 1")
    return (f"utility evaluation: {len(models) * seeds} classifier(s) ({' + '.join(models)} x {seeds} seed(s)), "
            f"{config.epochs} epoch(s) each on {on}{steps}, scored on {test_images} real test images; "
            f"to make it shorter: {', '.join(shorter)}")


@click.command("distill")
@click.option("--data", "data_spec", required=True, metavar="SPEC", help="digits, npz:PATH, medmnist:NAME, folder:PATH, dicom:PATH or a card name.")
@click.option("--method", required=True, help="A distiller plugin (see 'privbench plugins --kind distiller').")
@click.option("--ipc", type=int, default=None, help="Images per class in the release.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Release directory to create.")
@set_option
@click.option("--evaluate/--no-evaluate", default=True, show_default=True, help="Score utility: train classifiers on the release, test on real data.")
@click.option("--eval-model", "eval_models", multiple=True, default=("convnet",), show_default=True, help="convnet, resnet18 or resnet50 (repeatable).")
@click.option("--eval-seeds", type=int, default=3, show_default=True, help="Classifiers trained per model (the n of the CI).")
@click.option("--eval-set", "eval_set_items", multiple=True, metavar="KEY=VALUE", help="An option of the utility protocol (epochs, lr, ...).")
@device_option
@seed_option
@force_option
@quiet_option
@cache_option
@click.pass_context
def command(ctx, data_spec, method, ipc, out_dir, set_items, evaluate, eval_models, eval_seeds, eval_set_items,
            device, seed, force, quiet, cache_dir):
    """Distil DATA into a small release written to OUT.

    \b
    OUT/release.npz     images (float32, N x C x H x W, [0, 1]) and labels
    OUT/release.json    method, config, seed, versions, time, device (shareable)
    OUT/provenance.private.json  which training images seeded the release, the source
                        data's spec and fingerprint: never share this file
    OUT/preview.png     the released images, one row per class
    OUT/results.parquet utility scores (with --evaluate)

    If the distiller raises, OUT holds only privbench-error.log (its traceback)
    and the command exits with code 3.
    """
    from privbench.config import build_config, parse_set_options
    from privbench.errors import UserError
    from privbench.outputs import check_output_dir, refuse_overlap

    registry = registry_from(ctx)
    cls = registry.get("distiller", method)
    overrides = parse_set_options(set_items)
    build_config(cls.Config, overrides, owner=f"distiller {method}")  # refuse bad options before any work
    if cls.uses_ipc and ipc is None:
        raise UserError(f"distiller {method!r} needs --ipc")
    if ipc is not None and ipc < 1:
        raise UserError(f"--ipc must be a positive number of images per class, got {ipc}")
    if eval_seeds < 1:
        raise UserError(f"--eval-seeds must be at least 1, got {eval_seeds}")
    utility_config = None
    if evaluate:
        from privbench.utility import UtilityConfig, check_models

        check_models(eval_models)
        utility_config = build_config(UtilityConfig, parse_set_options(eval_set_items), owner="utility evaluation")
    from privbench.inputs import dataset_inputs

    inputs = dataset_inputs(data_spec)
    check_output_dir(out_dir, force, inputs)
    if cache_dir is not None:
        refuse_overlap([cache_dir], inputs)

    from privbench.failures import log_failures_in

    with log_failures_in(out_dir):  # a plugin's traceback goes to OUT/privbench-error.log
        _distill(registry, method, data_spec, ipc, out_dir, overrides, evaluate, eval_models, eval_seeds,
                 utility_config, device, seed, force, quiet, cache_dir, inputs)


def _distill(registry, method, data_spec, ipc, out_dir, overrides, evaluate, eval_models, eval_seeds, utility_config,
             device, seed, force, quiet, cache_dir, inputs) -> None:
    from privbench.data import load_dataset
    from privbench.engine import run_distiller
    from privbench.imaging import release_preview
    from privbench.limits import check_release_fits
    from privbench.outputs import staged_output_dir
    from privbench.releases import save_release
    from privbench.results import result_records, run_record, write_results, write_runs

    cls = registry.get("distiller", method)
    dataset = load_dataset(data_spec, cache_dir=cache_dir)
    if cls.uses_ipc:
        check_release_fits(ipc, dataset.num_classes, dataset.image_shape, f"--ipc {ipc} ({ipc * dataset.num_classes} images)")
    if evaluate:
        release_images = ipc * dataset.num_classes if cls.uses_ipc else None
        click.echo(evaluation_plan(list(eval_models), eval_seeds, utility_config, release_images,
                                   len(dataset.train), len(dataset.test)), err=True)
    run_ctx = make_run_context(device, seed, quiet, cache_dir)
    console = stdout_console()
    with staged_output_dir(out_dir, force, inputs, command="distill") as stage:
        run_ctx.out_dir = stage
        release = run_distiller(registry, method, dataset, ipc, overrides, run_ctx)
        save_release(release, stage)
        release_preview(release.images, release.labels, dataset.num_classes, stage / "preview.png")
        if evaluate:
            from privbench.utility import evaluate_release

            runs = evaluate_release(release, dataset, models=list(eval_models), seeds=eval_seeds,
                                    config=utility_config, ctx=run_ctx)
            records, run_rows = [], []
            for info, rows in runs:
                records += result_records(info, rows)
                run_rows.append(run_record(info))
            write_results(stage / "results.parquet", records)
            write_runs(stage / "runs.parquet", run_rows)
    m = release.manifest
    console.print(
        f"[bold]{method}[/]: {m['images']} images from {dataset.name} "
        f"({dataset.num_classes} classes, {len(dataset.train)} private training images) in {m['wall_time_s']:.1f} s "
        f"on {m['device']} -> {out_dir}"
    )
    if evaluate:
        console.print(results_table(records, title="Utility on the real test split"))
    for warning in (release.provenance or {}).get("warnings", []):
        console.print(f"[yellow]warning:[/] {warning}")

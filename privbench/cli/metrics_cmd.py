"""``privbench metrics``: score candidate images against reference images with every metric plugin."""

from __future__ import annotations

from pathlib import Path

import click

from privbench.cli.common import (
    device_option,
    fmt_number,
    quiet_option,
    registry_from,
    seed_option,
    set_option,
    stdout_console,
)

MEASURE_PREFIX = "similarity"
MAX_RESAMPLES = 100_000  # the CI's bounds settle long before; more only costs time and memory


def _check_out_file(out: Path | None, force: bool, inputs: list[Path]) -> Path | None:
    """Refuse an output that is a directory, an input or a file privbench did not write, before any work."""
    from privbench.outputs import check_output_file

    return None if out is None else check_output_file(out, force, inputs)


def _require_one_available(metrics) -> None:
    """Refuse early (before reading any image) when not one of the chosen metrics can run here."""
    from privbench.api import MetricUnavailable
    from privbench.errors import UserError

    reasons = []
    for name, metric in metrics.items():
        try:
            metric.check_available()
        except MetricUnavailable as exc:
            reasons.append(f"{name}: {exc}")
        else:
            return
    raise UserError(f"no metric could be computed here ({'; '.join(reasons)})")


def _table(rows, title: str):
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title)
    for col, justify in (("metric", "left"), ("closer copy", "left"), ("value", "right"), ("95% CI", "left"),
                         ("n", "right")):
        table.add_column(col, justify=justify)
    for r in rows:
        name = r.measure.split(".", 1)[-1]
        direction = {True: "higher", False: "lower", None: "-"}[r.higher_is_better]
        if r.status != "ok":
            reason = escape(str(r.detail.get("reason", "")))
            table.add_row(name, direction, f"[yellow]{r.status}[/]", reason, "-")
            continue
        ci = "-" if r.ci_low is None else f"[{fmt_number(r.ci_low)}, {fmt_number(r.ci_high)}]"
        table.add_row(name, direction, fmt_number(r.value), escape(ci), str(r.n))
    return table


@click.command("metrics")
@click.argument("reference", metavar="REF", type=click.Path(path_type=Path))
@click.argument("candidate", metavar="CAND", type=click.Path(path_type=Path))
@click.option("--metric", "metric_names", multiple=True,
              help="Metric plugin(s) to score with (repeatable; default: all installed).")
@click.option("--out", "out_file", type=click.Path(path_type=Path), default=None,
              help="Also write the rows to this Parquet file.")
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@click.option("--pair-by-order", is_flag=True,
              help="Pair two image folders by sorted file order instead of by file name.")
@click.option("--resamples", type=click.IntRange(0, MAX_RESAMPLES), default=1000, show_default=True,
              help=f"Bootstrap resamples for the 95% CI (0: none; at most {MAX_RESAMPLES}).")
@set_option
@device_option
@seed_option
@quiet_option
@click.pass_context
def command(ctx, reference, candidate, metric_names, out_file, force, pair_by_order, resamples, set_items, device, seed,
            quiet):
    """Score each image of CAND against the image of REF it pairs with, and summarise per metric.

    \b
    REF and CAND are each one of:
      a release directory    release.npz + release.json, as 'privbench distill' writes it
      an .npz file           with an 'images' array (uint8, or float in [0, 1]; never unpickled)
      a folder of images     equal-size PNG/JPEG/... files, paired by file name

    Prints the mean of every metric over the pairs with a seeded bootstrap 95% CI
    and n. A metric that cannot run here (LPIPS without its backbone weights)
    shows as unavailable with the reason; the others still score. Options go to
    one metric each: --set lpips.net=vgg --set ssim.batch_size=256.
    """
    from privbench.api import summarise_scores
    from privbench.cli.metrics_inputs import load_pair
    from privbench.config import config_to_dict, parse_set_options, split_scoped
    from privbench.engine import metric_instances, release_columns, resolve_device
    from privbench.errors import UserError, failure_job
    from privbench.progress import RichProgress
    from privbench.results import RunInfo, new_run_id, result_records, utcnow, write_results
    from privbench.scoring import score_images

    registry = registry_from(ctx)
    names = list(dict.fromkeys(metric_names)) or registry.names("metric")
    if not names:
        raise UserError("no metric plugins are installed")
    records_by_name = {name: registry.record("metric", name) for name in names}
    overrides = split_scoped(parse_set_options(set_items), names)
    device = resolve_device(device)
    metrics = metric_instances(registry, device, names, overrides)
    out_file = _check_out_file(out_file, force, [reference, candidate])
    _require_one_available(metrics)

    ref, cand = load_pair(reference, candidate, pair_by_order=pair_by_order)
    started_at = utcnow()
    with failure_job(f"{candidate} against {reference}"):
        scores = score_images(metrics, ref.images, cand.images, progress=RichProgress(quiet=quiet),
                              names=("REF", "CAND"))
    rows = summarise_scores(scores, MEASURE_PREFIX, resamples=resamples, seed=seed)
    if not any(r.status == "ok" for r in rows):
        reasons = "; ".join(f"{name}: {s.reason}" for name, s in scores.items())
        raise UserError(f"no metric could be computed here ({reasons})")

    release = cand.release or ref.release
    provenance = {}
    if release is not None:
        private = release.provenance or {}
        provenance = {
            "dataset": str(private.get("source_dataset", "")),
            "dataset_fingerprint": str(private.get("source_fingerprint", "")),
            **release_columns(release),
        }
    run_id = new_run_id()
    records = []
    for name, row in zip(scores, rows):
        record = records_by_name[name]
        info = RunInfo(
            job="metrics",
            task="metrics",
            evaluator=name,
            plugin_package=record.distribution,
            plugin_version=record.version,
            config={
                "metric": name,
                "options": config_to_dict(metrics[name].config),
                "reference": str(reference),
                "candidate": str(candidate),
                "pair_by_order": pair_by_order,
                "resamples": resamples,
            },
            seed=seed,
            device=device,
            started_at=started_at,
            elapsed_s=scores[name].elapsed_s,
            run_id=run_id,
            **provenance,
        )
        records += result_records(info, [row])
    if out_file is not None:
        write_results(out_file, records)

    n, shape = int(ref.images.shape[0]), " x ".join(str(d) for d in ref.images.shape[1:])
    console = stdout_console()
    console.print(_table(rows, title=f"{candidate} against {reference}: {n} pairs of {shape} images on {device}"))
    if out_file is not None:
        console.print(f"results: {out_file}")


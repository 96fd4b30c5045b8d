"""The report: the paper's tables and figures for one results table, as HTML and PNG.

``write_report(results.parquet, out_dir)`` writes ``out_dir/report.html`` (self-
contained: figures inlined, opens offline) and ``out_dir/figures/*.png``.
Figures that show private images (reconstructions, nearest private images,
released real images) are included only when the dataset card marks the data
public or the caller passes ``show_private_images``.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

from privbench.report import html as H
from privbench.report.figures import metric_bar_charts, privacy_utility_plot
from privbench.report.summary import dataset_summaries
from privbench.report.tables import (
    Cell,
    evaluator_tables,
    metric_names,
    privacy_table,
    release_label,
    utility_table,
)

# Figures attacks write that show private images, and must not leave the machine unless allowed.
PRIVATE_FIGURES = {"reconstructions.png", "memorisation.png", "preview.png"}


def _public_datasets(names: set[str]) -> set[str]:
    from privbench.data.cards import load_cards

    cards = load_cards()
    return {n for n in names if n in cards and cards[n].public}


def _job_figures(jobs_dir: Path | None, allowed_private: set[str]) -> list[dict[str, Any]]:
    """PNG files the jobs wrote, with the job's label; private ones only for allowed datasets."""
    if jobs_dir is None or not jobs_dir.is_dir():
        return []
    out = []
    for job_file in sorted(jobs_dir.glob("*/job.json")):
        meta = json.loads(job_file.read_text())
        dataset = None
        runs = job_file.parent / "runs.parquet"
        if runs.is_file():
            import pyarrow.parquet as pq

            rows = pq.read_table(runs, columns=["dataset"]).to_pylist()
            dataset = rows[0]["dataset"] if rows else None
        for png in sorted(job_file.parent.rglob("*.png")):
            private = png.name in PRIVATE_FIGURES
            if private and dataset not in allowed_private:
                continue
            out.append({"path": png, "label": meta.get("label", job_file.parent.name), "kind": meta.get("kind"),
                        "name": png.name, "private": private, "dataset": dataset})
    return out


def _utility_section(records: list[dict[str, Any]]) -> str:
    rows = utility_table(records)
    if not rows:
        return "<p class='note'>No utility results.</p>"
    body = [[f"<td>{H.esc(r['dataset'])}</td>", f"<td>{H.esc(r['release'])}</td>", f"<td>{H.esc(r['model'])}</td>",
             H.cell_td(r["accuracy"], True), H.cell_td(r["balanced_accuracy"], True), H.cell_td(r["roc_auc"])]
            for r in rows]
    return H.table(["dataset", "release", "model", "accuracy %", "balanced accuracy %", "ROC AUC"], body)


def _privacy_section(records: list[dict[str, Any]]) -> str:
    rows = privacy_table(records)
    if not rows:
        return "<p class='note'>No membership or attribute inference results.</p>"
    body = []
    for r in rows:
        variant = r["mia_tpr_1_variant"].replace("_", " ")
        body.append([
            f"<td>{H.esc(r['dataset'])}</td>", f"<td>{H.esc(r['release'])}</td>",
            H.cell_td(r["mia_loss_auc"]), H.cell_td(r["mia_lira_online_auc"]), H.cell_td(r["mia_lira_offline_auc"]),
            H.cell_td(r["mia_release_distance_auc"]), H.cell_td(r["mia_tpr_1"]), H.cell_td(r["mia_tpr_01"]),
            f"<td>{H.esc(variant)}</td>", H.cell_td(r["aia_auc"]), H.cell_td(r["aia_control_auc"]),
        ])
    headers = ["dataset", "release", "MIA AUC (loss)", "MIA AUC (LiRA online)", "MIA AUC (LiRA offline)",
               "MIA AUC (release distance)", "TPR @ 1% FPR", "TPR @ 0.1% FPR", "strongest at 1% FPR",
               "AIA AUC", "AIA AUC, control"]
    return H.table(headers, body)


def _metrics_section(records: list[dict[str, Any]], prefix: str) -> str:
    from privbench.report.tables import index, releases_by_dataset

    names = metric_names(records, prefix)
    if not names:
        return ""
    idx = index(records)
    body = []
    for dataset, releases in releases_by_dataset([r for r in records if r["measure"].startswith(prefix)]).items():
        for release in releases:
            body.append([f"<td>{H.esc(dataset)}</td>", f"<td>{H.esc(release)}</td>"]
                        + [H.cell_td(Cell.of(idx.get((dataset, release, "autoencoder", prefix + m, "all"))))
                           for m in names])
    return H.table(["dataset", "release"] + [m.upper() for m in names], body)


def _all_results_section(records: list[dict[str, Any]]) -> str:
    parts = []
    several = len({r.get("release_seed") for r in records}) > 1
    for (task, evaluator), rows in evaluator_tables(records).items():
        body = []
        for r in rows:
            body.append([f"<td>{H.esc(r['dataset'])}</td>", f"<td>{H.esc(release_label(r, several))}</td>",
                         f"<td>{H.esc(r['measure'])}</td>", f"<td>{H.esc(r.get('subset') or 'all')}</td>",
                         H.cell_td(Cell.of(r)), f"<td class='num'>{r.get('n') or ''}</td>",
                         f"<td>{'higher' if r.get('higher_is_better') else ('lower' if r.get('higher_is_better') is False else '')}</td>"])
        table = H.table(["dataset", "release", "measure", "subset", "value [95% CI]", "n", "better / closer"], body)
        package = rows[0].get("plugin_package") or ""
        parts.append(f"<details><summary>{H.esc(task)}: {H.esc(evaluator)} "
                     f"({len(rows)} rows{', from ' + H.esc(package) if package else ''})</summary>{table}</details>")
    return "".join(parts)


def _settings_section(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return ""
    body = []
    for r in runs:
        config = r.get("config") or "{}"
        body.append([f"<td>{H.esc(r['job'])}</td>", f"<td>{H.esc(r.get('device') or '')}</td>",
                     f"<td class='num'>{(r.get('elapsed_s') or 0):.1f}</td>",
                     f"<td><code>{H.esc(config[:400])}{'…' if len(config) > 400 else ''}</code></td>"])
    return H.table(["job", "device", "seconds", "configuration"], body)


def write_report(results_path: Path, out_dir: Path, *, runs_path: Path | None = None, jobs_dir: Path | None = None,
                 show_private_images: bool = False, title: str | None = None) -> Path:
    """Write report.html and figures/*.png into ``out_dir``; return the HTML path."""
    from privbench.results import atomic_write, read_records

    records = read_records(Path(results_path))
    runs = read_records(runs_path) if runs_path and Path(runs_path).is_file() else []
    out_dir = Path(out_dir)
    figures_dir = out_dir / "figures"
    if figures_dir.exists():
        shutil.rmtree(figures_dir)
    figures_dir.mkdir(parents=True)

    datasets = {r["dataset"] for r in records} | {r["dataset"] for r in runs}
    allowed = datasets if show_private_images else _public_datasets(datasets)
    metric_figs = metric_bar_charts(records, figures_dir)
    tradeoff = privacy_utility_plot(records, figures_dir)
    job_figs = _job_figures(jobs_dir, allowed)
    for i, fig in enumerate(job_figs):
        target = figures_dir / f"{fig['kind']}-{i:03d}-{fig['name']}"
        shutil.copyfile(fig["path"], target)
        fig["path"] = target

    devices = sorted({r.get("device") or "" for r in runs} | {r.get("device") or "" for r in records} - {""})
    created = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = title or f"privbench report: {', '.join(sorted(datasets))}"
    parts = [f"<h1>{H.esc(title)}</h1>",
             f"<p class='meta'>{len(records)} results from {len(runs) or '?'} runs; device(s): "
             f"{H.esc(', '.join(devices) or 'unknown')}; written {created}. Every number is a mean with its 95% "
             f"confidence interval in brackets; hover a cell for its n.</p>"]
    parts.append("<h2>Summary</h2>")
    for dataset, lines in dataset_summaries(records).items():
        parts.append(f"<h3>{H.esc(dataset)}</h3><ul class='summary'>"
                     + "".join(f"<li>{H.esc(line)}</li>" for line in lines) + "</ul>")
    parts.append("<h2>Table 1: utility</h2><p class='note'>Classifiers trained on each release, scored on the real "
                 "test split (never used for model selection); mean over training seeds with a Student-t 95% CI."
                 "</p>" + _utility_section(records))
    parts.append("<h2>Table 2: membership and attribute inference</h2><p class='note'>AUC 0.5 and TPR equal to the "
                 "FPR are chance. TPR at a low FPR shows whether a few patients are exposed even when the AUC looks "
                 "harmless. The AIA control attacker has no access to the released model: the gap between the two "
                 "columns is what the release adds.</p>" + _privacy_section(records))
    recon = _metrics_section(records, "reconstruction.")
    if recon:
        parts.append("<h2>Reconstruction attack: similarity of private images to their reconstructions</h2>"
                     "<p class='note'>SSIM, PSNR, NCC, FSIM: higher means a closer copy; LPIPS, EMD: lower means a "
                     "closer copy.</p>" + recon)
        parts.append("".join(H.image_tag(p, f"{p.stem.replace('metric_', '').upper()} by release (95% CI)")
                             for p in metric_figs))
    memo = _metrics_section(records, "memorisation.pixel.")
    if memo:
        parts.append("<h2>Memorisation: each released image against its nearest private image</h2>" + memo)
    if tradeoff is not None:
        parts.append("<h2>Privacy-utility trade-off</h2>" + H.image_tag(tradeoff, "Utility vs leakage, one point per release"))
    roc = [f for f in job_figs if not f["private"]]
    if roc:
        parts.append("<h2>Attack figures</h2>" + "".join(H.image_tag(f["path"], f["label"]) for f in roc))
    private = [f for f in job_figs if f["private"]]
    withheld = sorted(datasets - allowed)
    parts.append("<h2>Images: originals, reconstructions and nearest private images</h2>")
    if private:
        parts.append("".join(H.image_tag(f["path"], f"{f['label']}: {f['name'].replace('.png', '')}") for f in private))
    if withheld:
        parts.append(f"<p class='private'>Figures showing private images of {H.esc(', '.join(withheld))} are withheld: "
                     "the dataset card does not mark this data public. Pass --show-private-images to include them "
                     "in a report that stays inside your institution.</p>")
    elif not private:
        parts.append("<p class='note'>No image figures were produced.</p>")
    parts.append("<h2>All results</h2>" + _all_results_section(records))
    parts.append("<h2>Runs and settings</h2>" + _settings_section(runs))
    document = H.page(title, "".join(parts))
    out_path = out_dir / "report.html"
    atomic_write(out_path, lambda tmp: tmp.write_text(document, encoding="utf-8"))
    return out_path

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
from privbench.report.guarantees import guarantee_section, utility_epsilon_plot
from privbench.report.summary import dataset_summaries
from privbench.report.tables import (
    MIA_VARIANTS,
    Cell,
    epsilon_text,
    evaluator_tables,
    metric_names,
    privacy_table,
    release_label,
    releases_by_dataset,
    utility_table,
)

# Figures attacks write that show private images, and must not leave the machine unless allowed.
PUBLIC_FIGURES = {"roc.png"}
"""Job figures that show no image of the data. Any other figure a job wrote (a plugin's included)
counts as private unless its name ends in ``.public.png``: it may show patients."""


def is_private_figure(name: str) -> bool:
    """Whether a job's figure may show images of the data (withheld unless the dataset is public or asked for)."""
    return name not in PUBLIC_FIGURES and not name.endswith(".public.png")


def _public_datasets(names: set[str]) -> set[str]:
    from privbench.data.cards import load_cards

    cards = load_cards()
    return {n for n in names if n in cards and cards[n].public}


FIGURE_CAPTIONS = {
    "preview.png": "Released images, one row per class.",
    "reconstructions.png": "Top: private training images; bottom: their reconstructions by an autoencoder "
                           "trained on the release.",
    "memorisation.png": "Top: the released images closest to a private image; middle: the nearest private image "
                        "in pixel space; bottom: the nearest in feature space.",
    "roc.png": "Membership inference ROC curves on log axes: the left part is where individual patients are "
               "exposed with few false accusations.",
}
FIGURE_ORDER = ["preview.png", "reconstructions.png", "memorisation.png", "roc.png"]


def _job_figures(jobs_dir: Path | None, allowed_private: set[str], several_seeds: bool,
                 keys: set[str] | None = None) -> list[dict[str, Any]]:
    """PNG files the jobs wrote, with dataset and release; private ones only for allowed datasets.

    With ``keys`` (the run ids of the tables reported), only those jobs: a job
    folder left from another configuration is not this report's.
    """
    if jobs_dir is None or not jobs_dir.is_dir():
        return []
    from privbench.jobs import JOB_FILE, read_job_file
    from privbench.results import read_runs

    out = []
    for job_file in sorted(jobs_dir.glob(f"*/{JOB_FILE}")):
        if keys is not None and job_file.parent.name not in keys:
            continue
        meta = read_job_file(job_file)
        runs = job_file.parent / "runs.parquet"
        row = next(iter(read_runs(runs)), {}) if runs.is_file() else {}
        dataset = row.get("dataset")
        for png in sorted(job_file.parent.rglob("*.png")):
            private = is_private_figure(png.name)
            if private and dataset not in allowed_private:
                continue
            out.append({"path": png, "label": meta.get("label", job_file.parent.name), "kind": meta.get("kind"),
                        "name": png.name, "private": private, "dataset": dataset,
                        "release": release_label(row, several_seeds) if row else "?",
                        "evaluator": row.get("evaluator", "")})
    return out


def _utility_section(records: list[dict[str, Any]]) -> str:
    rows = utility_table(records)
    if not rows:
        return "<p class='note'>No utility results.</p>"
    body = [[f"<td>{H.esc(r['dataset'])}</td>", f"<td>{H.esc(r['release'])}</td>",
             f"<td class='num'>{H.esc(epsilon_text(r['epsilon']))}</td>", f"<td>{H.esc(r['model'])}</td>",
             H.cell_td(r["accuracy"], True), H.cell_td(r["balanced_accuracy"], True), H.cell_td(r["roc_auc"]),
             _n_td(r["accuracy"])]
            for r in rows]
    return H.table(["dataset", "release", "ε guaranteed", "model", "accuracy %", "balanced accuracy %", "ROC AUC",
                    "n (seeds)"], body)


def _n_td(*cells: Cell) -> str:
    n = max((c.n for c in cells if c.n), default=0)
    return f"<td class='num'>{n or ''}</td>"


def _mia_section(records: list[dict[str, Any]]) -> str:
    rows = [r for r in privacy_table(records) if any(r[f"mia_{v}_auc"].value is not None for v in MIA_VARIANTS)]
    if not rows:
        return "<p class='note'>No membership inference results.</p>"
    body = []
    for r in rows:
        aucs = [H.cell_td(r[f"mia_{v}_auc"], note="confounded" if r[f"mia_{v}_auc"].confounded else "")
                for v in MIA_VARIANTS]
        spread = ""
        first = next((r[f"mia_{v}_auc"] for v in MIA_VARIANTS if r[f"mia_{v}_auc"].value is not None), None)
        if first is not None and first.detail.get("targets"):
            spread = (f"{first.detail['targets']} targets: mean {first.detail['mean_over_targets']:.3f}, "
                      f"{first.detail['min_over_targets']:.3f}-{first.detail['max_over_targets']:.3f}")
        bound = r["canary_bound"]
        body.append([
            f"<td>{H.esc(r['dataset'])}</td>", f"<td>{H.esc(r['release'])}</td>", f"<td>{H.esc(r['game'])}</td>",
            f"<td class='num'>{H.esc(epsilon_text(r['epsilon']))}</td>",
            f"<td class='num'>{'–' if bound.value is None else f'{bound.value:.3f}'}</td>",
            *aucs,
            H.cell_td(r["mia_tpr_1"], True, note=r["mia_tpr_1_variant"].replace("_", " ")),
            H.cell_td(r["mia_tpr_01"], True), H.cell_td(r["mia_null_auc"]),
            f"<td>{H.esc(spread)}</td>", f"<td class='num'>{H.esc(r['mia_steps'])}</td>",
            _n_td(r["mia_loss_auc"], r["mia_tpr_1"]),
        ])
    headers = ["dataset", "release", "game", "ε guaranteed", "ε lower bound (canaries, 95%)", "AUC: loss", "AUC: LiRA offline", "AUC: LiRA online", "AUC: RMIA",
               "AUC: release distance", "TPR % at 1% FPR (strongest attack, exact CI)",
               "TPR % at 0.1% FPR (same attack)", "null control AUC (same attack)",
               "spread over targets (first attack's AUC)", "target optimiser steps", "n"]
    steps = sorted({r["mia_steps"] for r in rows if r["mia_steps"]}, key=int)
    warning = ""
    if len(steps) > 1:
        warning = (f"<p class='private'>The target models of these rows took different numbers of optimiser steps "
                   f"({', '.join(steps)}): a model trained longer memorises more, so compare membership figures only "
                   "between rows with equal steps (set <code>target_steps</code> to make them equal).</p>")
    return warning + H.table(headers, body)


def _aia_section(records: list[dict[str, Any]]) -> str:
    rows = [r for r in privacy_table(records) if r["aia_auc"].value is not None or r["aia_risk"].value is not None]
    seen, body, mixes = set(), [], False
    for r in rows:
        if (r["dataset"], r["release"]) in seen:
            continue
        seen.add((r["dataset"], r["release"]))
        mixes = mixes or bool(r["aia_auc"].detail.get("mixes_utility"))
        body.append([f"<td>{H.esc(r['dataset'])}</td>", f"<td>{H.esc(r['release'])}</td>", H.cell_td(r["aia_auc"]),
                     H.cell_td(r["aia_baseline_auc"]), H.cell_td(r["aia_members"], True),
                     H.cell_td(r["aia_controls"], True), H.cell_td(r["aia_risk"]), _n_td(r["aia_auc"])])
    if not body:
        return "<p class='note'>No attribute inference results.</p>"
    note = ("<p class='note'>The attribute here is the diagnosis label itself: inferring it from a partial image is "
            "what the released model is for, so the AUC columns mix the release's utility with leakage. The risk "
            "(members against non-member controls) is the part specific to the private set.</p>" if mixes else "")
    return note + H.table(["dataset", "release", "AUC with the released model", "AUC, baseline (untrained network)",
                           "success % on members", "success % on controls", "risk (Anonymeter) [95% CI]",
                           "n (members scored)"], body)


def _reconstruction_contrast(records: list[dict[str, Any]]) -> str:
    from privbench.report.tables import cell, index, metric_names, releases_by_dataset

    names = metric_names(records, "reconstruction_gap.")
    if not names:
        return ""
    idx = index(records)
    body = []
    for dataset, releases in releases_by_dataset(records).items():
        for release in releases:
            gaps = [cell(idx, dataset, release, "autoencoder", f"reconstruction_gap.{m}") for m in names]
            if all(g.value is None for g in gaps):
                continue
            auc = cell(idx, dataset, release, "autoencoder", "reconstruction_mia.auc")
            null = cell(idx, dataset, release, "autoencoder", "reconstruction_mia.auc", "null")
            body.append([f"<td>{H.esc(dataset)}</td>", f"<td>{H.esc(release)}</td>"]
                        + [H.cell_td(g, note="confounded" if g.confounded else "") for g in gaps]
                        + [H.cell_td(auc, note="confounded" if auc.confounded else ""), H.cell_td(null), _n_td(auc)])
    if not body:
        return ""
    return ("<p class='note'>Leakage is the contrast: members minus non-members (as many per class, no copy of a "
            "training image). A gap whose interval contains 0 means the autoencoder reconstructs anyone's image as "
            "well as a patient's. The membership AUC scores minus the reconstruction error; the null control is an "
            "autoencoder on a release made without the scored training images.</p>"
            + H.table(["dataset", "release"] + [f"{m.upper()} gap" for m in names]
                      + ["membership AUC (reconstruction error)", "null control AUC", "n"], body))


def _provenance_note(records: list[dict[str, Any]]) -> str:
    from privbench.report.tables import Cell

    absent = sorted({release_label(r) for r in records if r["evaluator"] in ("mia", "autoencoder")
                     and Cell.of(r).detail.get("release_provenance") == "absent"})
    if not absent:
        return ""
    return (f"<p class='private'>No provenance.private.json came with {H.esc(', '.join(absent))}: the members that "
            "seeded the release could not be scored on their own, and the release's source could not be "
            "checked.</p>")


def _unavailable_note(records: list[dict[str, Any]]) -> str:
    reasons: dict[str, str] = {}
    for r in records:
        if r.get("status") == "unavailable" and r.get("detail"):
            try:
                reason = json.loads(r["detail"]).get("reason", "")
            except (json.JSONDecodeError, AttributeError):
                reason = ""
            name = r["measure"].split(".")[-1]
            if reason and name not in reasons:
                reasons[name] = reason
    if not reasons:
        return ""
    items = "".join(f"<li><b>{H.esc(k)}</b>: {H.esc(v)}</li>" for k, v in sorted(reasons.items()))
    return f"<p class='note'>Not computed on this machine:</p><ul class='note'>{items}</ul>"


def _metrics_section(records: list[dict[str, Any]], prefix: str, extra: dict[str, str] | None = None) -> str:
    """One row per release, one column per metric (plus ``extra``: measure -> header)."""
    from privbench.report.tables import cell, index, releases_by_dataset

    names = metric_names(records, prefix)
    if not names:
        return ""
    extra = extra or {}
    idx = index(records)
    body = []
    for dataset, releases in releases_by_dataset([r for r in records if r["measure"].startswith(prefix)]).items():
        for release in releases:
            get = lambda m: cell(idx, dataset, release, "autoencoder", m)  # noqa: E731
            body.append([f"<td>{H.esc(dataset)}</td>", f"<td>{H.esc(release)}</td>"]
                        + [H.cell_td(get(prefix + m)) for m in names]
                        + [H.cell_td(get(m), percent=True) for m in extra]
                        + [_n_td(*(get(prefix + m) for m in names))])
    return H.table(["dataset", "release"] + [m.upper() for m in names] + list(extra.values()) + ["n"], body)


def _all_results_section(records: list[dict[str, Any]]) -> str:
    parts = []
    several = len({r.get("release_seed") for r in records}) > 1
    for (task, evaluator), rows in evaluator_tables(records).items():
        body = []
        for r in rows:
            cell_of = Cell.of(r)  # any attack's row marked confounded in its detail is shown so, a plugin's too
            body.append([f"<td>{H.esc(r['dataset'])}</td>", f"<td>{H.esc(release_label(r, several))}</td>",
                         f"<td>{H.esc(r.get('game') or '')}</td>", f"<td>{H.esc(r['measure'])}</td>", f"<td>{H.esc(r.get('subset') or 'all')}</td>",
                         H.cell_td(cell_of, note="confounded" if cell_of.confounded else ""),
                         f"<td class='num'>{r.get('n') or ''}</td>",
                         f"<td>{'higher' if r.get('higher_is_better') else ('lower' if r.get('higher_is_better') is False else '')}</td>"])
        table = H.table(["dataset", "release", "game", "measure", "subset", "value [95% CI]", "n", "stronger attack / closer"],
                        body)
        package = rows[0].get("plugin_package") or ""
        parts.append(f"<details><summary>{H.esc(task)}: {H.esc(evaluator)} "
                     f"({len(rows)} rows{', from ' + H.esc(package) if package else ''})</summary>{table}</details>")
    return "".join(parts)


def _failures_box(runs: list[dict[str, Any]]) -> str:
    """The jobs that failed, first on the page: their results are missing from every table below."""
    failed = [r for r in runs if r.get("status") == "error"]
    if not failed:
        return ""
    items = "".join(f"<li><b>{H.esc(r.get('job') or '?')}</b>: {H.esc(r.get('error') or 'no reason recorded')}"
                    + (f" <small>(traceback: jobs/{H.esc(r['run_id'])}/error.log)</small>" if r.get("run_id") else "")
                    + "</li>" for r in failed)
    return (f"<div class='failed'><b>{len(failed)} job{'s' if len(failed) > 1 else ''} failed</b>: their results "
            f"are missing below, and so are those of the jobs that read a failed job's release. A rerun of the "
            f"suite retries them.<ul>{items}</ul></div>")


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
                 show_private_images: bool = False, title: str | None = None, paper: str | None = None) -> Path:
    """Write report.html and figures/*.png into ``out_dir``; return the HTML path.

    Inputs are read and checked first; the figures and the page are made in a
    staging folder and moved in at the end, so a failure changes nothing.
    """
    from privbench.results import read_results, read_runs

    records = read_results(Path(results_path))
    runs = read_runs(runs_path) if runs_path and Path(runs_path).is_file() else []
    from privbench.outputs import check_own_entries, staged_into
    from privbench.report.paper import declared_paper, load_paper

    paper = paper or declared_paper(Path(results_path))
    published = load_paper(paper) if paper else None
    out_dir = Path(out_dir)
    check_own_entries(out_dir)
    with staged_into(out_dir, ("figures", "report.html"), command="report") as stage:
        _write_report(records, runs, stage, jobs_dir=jobs_dir, show_private_images=show_private_images, title=title,
                      published=published)
    return out_dir / "report.html"


def _write_report(records: list[dict[str, Any]], runs: list[dict[str, Any]], out_dir: Path, *,
                  jobs_dir: Path | None, show_private_images: bool, title: str | None, published: Any = None) -> None:
    from privbench.results import atomic_write

    figures_dir = out_dir / "figures"
    figures_dir.mkdir(parents=True)

    datasets = {r["dataset"] for r in records} | {r["dataset"] for r in runs}
    allowed = datasets if show_private_images else _public_datasets(datasets)
    metric_figs = metric_bar_charts(records, figures_dir)
    tradeoff = privacy_utility_plot(records, figures_dir)
    by_epsilon = utility_epsilon_plot(records, figures_dir)
    several = len({r.get("release_seed") for r in records}) > 1
    keys = {r.get("run_id") for r in runs} | {r.get("run_id") for r in records} if runs else None
    job_figs = _job_figures(jobs_dir, allowed, several, keys)
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
    parts.append(_failures_box(runs))
    parts.append("<h2>Summary</h2>")
    for dataset, lines in dataset_summaries(records).items():
        parts.append(f"<h3>{H.esc(dataset)}</h3><ul class='summary'>"
                     + "".join(f"<li>{H.esc(line)}</li>" for line in lines) + "</ul>")
    parts.append("<h2>Table 1: utility</h2><p class='note'>Classifiers trained on each release, scored on the real "
                 "test split (never used for model selection); mean over training seeds with a Student-t 95% CI."
                 "</p>" + _utility_section(records))
    parts.append("<h2>Table 2: membership and attribute inference</h2><p class='note'>Membership inference: AUC "
                 "0.5 and a TPR equal to the FPR are chance. The game is stated: <b>release</b> audits this one "
                 "release (shadow pipelines drawn like it), <b>method</b> asks how private the method is on this "
                 "data (pipelines on random halves of the pooled data, each in turn the target; values pooled over "
                 "targets, their spread beside). Members and non-members have the same class mix in every row; "
                 "non-members hold no copy of a training image. TPR at a low FPR shows whether a few patients are "
                 "exposed even when the AUC looks harmless; it carries exact (Clopper-Pearson) intervals, and "
                 "reads <i>insufficient</i> where the non-members are too few to resolve that FPR. The strongest "
                 "attack is chosen among those whose null control (the attack on two groups the attacked "
                 "pipeline never saw) contains 0.5; a <i>confounded</i> attack reads a difference between the "
                 "splits, not membership. Compare rows only at equal target optimiser steps. n counts the "
                 "candidates (members and non-members).</p>" + _provenance_note(records) + _mia_section(records))
    parts.append(guarantee_section(records))
    if by_epsilon is not None:
        parts.append("<h2>Utility against epsilon</h2>" + H.image_tag(
            by_epsilon, "Balanced accuracy by guaranteed epsilon (∞: no guarantee), and the canary audit's lower "
                        "bound against the guarantee"))
    parts.append("<p class='note'>Attribute inference: the attacker sees a partial record. Leakage is its success on "
                 "members against its success on non-member controls (the Anonymeter risk); the baseline attacker "
                 "has no access to the released model.</p>" + _aia_section(records))
    recon = _metrics_section(records, "reconstruction.")
    if recon:
        parts.append("<h2>Reconstruction attack: similarity of private images to their reconstructions</h2>"
                     "<p class='note'>SSIM, PSNR, NCC, FSIM: higher means a closer copy; LPIPS, EMD: lower means a "
                     "closer copy. These are the members' levels (the paper's figures); what they leak is the "
                     "contrast below.</p>" + recon + _unavailable_note(records) + _reconstruction_contrast(records))
        parts.append("<div class='figs'>" + "".join(
            H.image_tag(p, f"{p.stem.replace('metric_', '').upper()} by release (95% CI)") for p in metric_figs) + "</div>")
    memo = _metrics_section(records, "memorisation.pixel.", {"memorisation.verbatim": "verbatim copies %",
                                                              "memorisation.near_copies": "near-copies %"})
    if memo:
        parts.append("<h2>Memorisation: each released image against its nearest private image</h2>"
                     "<p class='note'>Nearest in pixel space. Near-copies: released images whose similarity to "
                     "their nearest private image passes the attack's threshold (by default SSIM of at least 0.95): "
                     "each is, for practical purposes, a patient's image.</p>" + memo)
    if tradeoff is not None:
        parts.append("<h2>Privacy-utility trade-off</h2>" + H.image_tag(tradeoff, "Utility vs leakage, one point per release"))
    parts.append("<h2>Figures by release</h2>")
    withheld = sorted(datasets - allowed)
    if withheld:
        parts.append(f"<p class='private'>Figures showing private images of {H.esc(', '.join(withheld))} are withheld: "
                     "the dataset card does not mark this data public. Pass --show-private-images to include them "
                     "in a report that stays inside your institution.</p>")
    order = {label: i for i, label in enumerate(r for rels in releases_by_dataset(records).values() for r in rels)}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for fig in job_figs:
        groups.setdefault((fig["dataset"] or "", fig["release"]), []).append(fig)
    rank = {name: i for i, name in enumerate(FIGURE_ORDER)}
    for (dataset, release), figs in sorted(groups.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 999))):
        figs.sort(key=lambda f: (rank.get(f["name"], 99), f["evaluator"]))
        parts.append(f"<h3>{H.esc(dataset)}: {H.esc(release)}</h3><div class='figs'>"
                     + "".join(H.image_tag(f["path"], FIGURE_CAPTIONS.get(f["name"], f"{f['evaluator']}: {f['name']}"))
                               for f in figs) + "</div>")
    if not job_figs:
        parts.append("<p class='note'>No figures were produced by the jobs.</p>")
    if published is not None:
        from privbench.report.paper import paper_section

        parts.append(paper_section(records, runs, published))
    parts.append("<h2>All results</h2>" + _all_results_section(records))
    parts.append("<h2>Runs and settings</h2>" + _settings_section(runs))
    document = H.page(title, "".join(parts))
    atomic_write(out_dir / "report.html", lambda tmp: tmp.write_text(document, encoding="utf-8"))

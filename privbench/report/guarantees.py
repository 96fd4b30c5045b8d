"""The report's guarantees: each release's epsilon beside the canary audit's lower bound, and utility against epsilon.

A private release states an (epsilon, delta) it guarantees; the canary audit
measures an epsilon the pipeline cannot be below (at 95% confidence). The
table puts the two side by side and says which held; the figure shows what
each epsilon costs in utility, with the releases that state no guarantee at
the right end of the axis (their epsilon is infinite).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from privbench.report import html as H
from privbench.report.tables import Cell, cell, epsilon_text, index, release_epsilons, releases_by_dataset

BOUND = "canary.epsilon_lower"


def guarantee_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per dataset and release with a guarantee or a canary audit: both epsilons and the verdict."""
    idx = index(records)
    epsilons = release_epsilons(records)
    out = []
    for dataset, releases in releases_by_dataset(records).items():
        for release in releases:
            epsilon = epsilons.get((dataset, release))
            bound = cell(idx, dataset, release, "canary", BOUND)
            if epsilon is None and bound.status == "missing":
                continue
            detail = bound.detail
            accuracy = (cell(idx, dataset, release, "canary", f"canary.{detail['score']}.guess_accuracy")
                        if detail.get("score") else Cell(None, status="missing"))
            if bound.value is None:
                verdict = "not audited" if bound.status == "missing" else bound.status
            elif detail.get("violation"):
                verdict = "EXCEEDS the guarantee: the mechanism or its accounting is wrong"
            elif epsilon is None or math.isinf(epsilon):
                verdict = "no guarantee to check (epsilon infinite)"
            else:
                verdict = "within the guarantee"
            out.append({"dataset": dataset, "release": release, "epsilon": epsilon, "bound": bound,
                        "delta": detail.get("delta"), "score": detail.get("score", ""),
                        "right": detail.get("right"), "guesses": detail.get("guesses"), "accuracy": accuracy,
                        "verdict": verdict})
    return out


def guarantee_section(records: list[dict[str, Any]]) -> str:
    rows = guarantee_rows(records)
    if not rows:
        return ""
    body = []
    for r in rows:
        guesses = f"{r['right']} of {r['guesses']}" if r["guesses"] else ""
        delta = f"{r['delta']:.2g}" if isinstance(r["delta"], (int, float)) else ""
        bound = r["bound"]
        shown = "–" if bound.value is None else f"{bound.value:.3f}"
        body.append([f"<td>{H.esc(r['dataset'])}</td>", f"<td>{H.esc(r['release'])}</td>",
                     f"<td class='num'>{H.esc(epsilon_text(r['epsilon']))}</td>", f"<td class='num'>{delta}</td>",
                     f"<td class='num' title='n = {bound.n} canaries'>{shown}</td>",
                     f"<td>{H.esc(r['score'].replace('_', ' '))}</td>", f"<td class='num'>{guesses}</td>",
                     H.cell_td(r["accuracy"], True), f"<td class='num'>{bound.n or ''}</td>",
                     f"<td>{H.esc(r['verdict'])}</td>"])
    return ("<h2>Guarantees and canary audits</h2><p class='note'>The guaranteed epsilon is what the release's "
            "manifest proves (at its delta, for adding or removing one training image); ∞ (none) marks a release "
            "that proves nothing. The canary audit inserts each canary with probability 1/2, re-runs the release "
            "pipeline and guesses which went in; the one-run analysis (Steinke, Nasr &amp; Jagielski 2023) turns "
            "the right guesses into an epsilon the pipeline cannot be below, at 95% confidence split over every "
            "score and number of guesses tried. A lower bound above the guarantee is a bug; a bound far below it "
            "says this attack found no more, not that the release is safer than proven.</p>"
            + H.table(["dataset", "release", "ε guaranteed", "δ", "ε lower bound (canaries, 95%)",
                       "best score", "right guesses", "accuracy % of those guesses", "canaries (n)", "verdict"],
                      body))


def utility_epsilon_plot(records: list[dict[str, Any]], out_dir: Path, model: str = "convnet") -> Path | None:
    """Balanced accuracy against the guaranteed epsilon (log axis, ∞ at the right), and the audit's bound beside it."""
    from privbench.report.figures import _pyplot, legend_entries

    epsilons = release_epsilons(records)
    if not any(e is not None for e in epsilons.values()):
        return None
    idx = index(records)
    models = sorted({r["evaluator"] for r in records if r["task"] == "utility"})
    if not models:
        return None
    model = model if model in models else models[0]
    finite = [e for e in epsilons.values() if e is not None and math.isfinite(e)]
    low, high = (min(finite), max(finite)) if finite else (1.0, 1.0)
    at_inf = high * 10 if finite else 1.0
    plt = _pyplot()
    groups = releases_by_dataset(records)
    measured = [b.value for (d, r) in epsilons for b in [cell(idx, d, r, "canary", BOUND)] if b.value is not None]
    audited = bool(measured)
    fig, axes = plt.subplots(1, 2 if audited else 1, figsize=(9.5 if audited else 5.2, 3.9), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (dataset, releases) in enumerate(groups.items()):
        series: dict[str, list[tuple[float, Cell, Cell]]] = {}
        unproven = 0
        for release in releases:
            epsilon = epsilons.get((dataset, release))
            x = epsilon if epsilon is not None and math.isfinite(epsilon) else at_inf * 1.06 ** unproven
            unproven += x >= at_inf  # releases at infinity side by side, so that each interval shows
            method = release.split(" ε=")[0]
            u = cell(idx, dataset, release, model, "balanced_accuracy")
            b = cell(idx, dataset, release, "canary", BOUND)
            series.setdefault(method if epsilon is not None else release, []).append((x, u, b))
        for j, (name, points) in enumerate(series.items()):
            points.sort(key=lambda p: p[0])
            colour = colours[(j + 3 * k) % len(colours)]
            label = name if len(groups) == 1 else f"{dataset}: {name}"
            shown = [(x, u) for x, u, _ in points if u.value is not None]
            if shown:
                xs = [x for x, _ in shown]
                ys = [u.value for _, u in shown]
                err = [[u.value - (u.ci_low if u.ci_low is not None else u.value) for _, u in shown],
                       [(u.ci_high if u.ci_high is not None else u.value) - u.value for _, u in shown]]
                axes[0][0].errorbar(xs, ys, yerr=err, fmt="o-" if len(shown) > 1 else "s", capsize=3,
                                    color=colour, label=label)
            if audited:
                bounds = [(x, b.value) for x, _, b in points if b.value is not None]
                if bounds:
                    axes[0][1].plot([x for x, _ in bounds], [v for _, v in bounds], "o" if len(bounds) == 1
                                    else "o-", color=colour, label=label)
    ticks = sorted(set(finite)) + [at_inf]
    for ax in axes[0]:
        ax.set_xscale("log")
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t:.3g}" for t in ticks[:-1]] + ["∞"])
        ax.minorticks_off()
        ax.set_xlim(low / 2, at_inf * 1.06 ** max(1, len(epsilons)) * 1.5)
        ax.set_xlabel("ε guaranteed (∞: no guarantee)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"utility: balanced accuracy ({model}, 95% CI)")
    axes[0][0].set_title("What each epsilon costs", fontsize=9)
    if audited:
        ax = axes[0][1]
        if finite:
            line = [low / 2, high * 1.3]
            ax.plot(line, line, "k--", lw=0.8, label="bound = guarantee")
            ax.set_ylim(bottom=-0.05 * high, top=max(high * 1.35, max(measured) * 1.1))  # a violation stays in view
        ax.set_ylabel("ε lower bound from canaries (95%)")
        ax.set_title("Measured against proven (a point above the line is a bug)", fontsize=9)
    handles, labels = legend_entries(axes[0])
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path = out_dir / "utility_epsilon.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

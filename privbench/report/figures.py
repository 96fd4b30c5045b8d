"""The report's figures as PNG: one bar chart per metric, and the privacy-utility plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from privbench.report.tables import Cell, cell, index, metric_names, releases_by_dataset

DPI = 110


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _errors(cells: list[Cell]) -> list[list[float]]:
    lo = [(c.value - c.ci_low) if c.value is not None and c.ci_low is not None else 0.0 for c in cells]
    hi = [(c.ci_high - c.value) if c.value is not None and c.ci_high is not None else 0.0 for c in cells]
    return [lo, hi]


def metric_bar_charts(records: list[dict[str, Any]], out_dir: Path, prefix: str = "reconstruction.") -> list[Path]:
    """Figures 15-20 of the paper: one chart per metric, release on the axis, dataset as colour."""
    plt = _pyplot()
    idx = index(records)
    by_dataset = releases_by_dataset([r for r in records if r["measure"].startswith(prefix)])
    releases: list[str] = []
    for labels in by_dataset.values():
        releases += [x for x in labels if x not in releases]
    paths = []
    for metric in metric_names(records, prefix):
        directions = {r.get("higher_is_better") for r in records if r["measure"] == prefix + metric}
        fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(releases) + 2), 3.6))
        width = 0.8 / max(1, len(by_dataset))
        plotted = False
        for k, dataset in enumerate(by_dataset):
            cells = [cell(idx, dataset, rel, "autoencoder", prefix + metric) for rel in releases]
            xs = [i + (k - (len(by_dataset) - 1) / 2) * width for i in range(len(releases))]
            values = [c.value if c.value is not None else 0.0 for c in cells]
            if any(c.value is not None for c in cells):
                plotted = True
            ax.bar(xs, values, width, yerr=_errors(cells), capsize=3, label=dataset)
        if not plotted:
            plt.close(fig)
            continue
        ax.set_xticks(range(len(releases)))
        ax.set_xticklabels(releases, rotation=20, ha="right")
        better = {True: "higher = closer copy (more leakage)", False: "lower = closer copy (more leakage)"}
        ax.set_ylabel(metric.upper())
        ax.set_title(f"Reconstruction {metric.upper()} (95% CI); {better.get(next(iter(directions), None), '')}",
                     fontsize=9)
        if len(by_dataset) > 1:
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"metric_{metric}.png"
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        paths.append(path)
    return paths


def legend_entries(axes) -> tuple[list, list[str]]:
    """Every labelled artist of every panel, once: a release may be missing from the first panel."""
    handles, labels = [], []
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    return handles, labels


def _utility_cell(idx: dict, dataset: str, release: str, model: str = "convnet") -> Cell:
    return cell(idx, dataset, release, model, "balanced_accuracy")


def _bound(idx: dict, dataset: str, release: str) -> Cell:
    """The canary audit's bound as a point (its interval is one-sided, so no bar)."""
    c = cell(idx, dataset, release, "canary", "canary.epsilon_lower")
    return Cell(c.value, c.value, c.value, c.n, c.status, c.detail)


def privacy_utility_plot(records: list[dict[str, Any]], out_dir: Path) -> Path | None:
    """Utility against leakage, one point per release: where a release sits on the trade-off."""
    from privbench.report.tables import best_mia

    plt = _pyplot()
    idx = index(records)
    models = sorted({r["evaluator"] for r in records if r["task"] == "utility"})
    if not models:
        return None
    model = "convnet" if "convnet" in models else models[0]
    panels = [
        ("MIA TPR at 1% FPR (strongest unconfounded attack)", lambda d, r: best_mia(idx, d, r, "tpr_at_fpr_0.01")[1]),
        ("MIA AUC (strongest unconfounded attack)", lambda d, r: best_mia(idx, d, r, "auc")[1]),
        ("Reconstruction SSIM gap (members - non-members)",
         lambda d, r: cell(idx, d, r, "autoencoder", "reconstruction_gap.ssim")),
        ("ε lower bound from canaries (95%, one-sided)", lambda d, r: _bound(idx, d, r)),
    ]
    points = []
    for dataset, releases in releases_by_dataset(records).items():
        for release in releases:
            u = _utility_cell(idx, dataset, release, model)
            if u.value is None:
                continue
            points.append((dataset, release, u, [f(dataset, release) for _, f in panels]))
    usable = [i for i in range(len(panels)) if any(p[3][i].value is not None for p in points)]
    if not points or not usable:
        return None
    cols = 2 if len(usable) == 4 else min(3, len(usable))
    rows = -(-len(usable) // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows + 0.5), squeeze=False)
    axes = [list(grid.flat)]
    for ax in axes[0][len(usable):]:
        ax.set_visible(False)
    markers = "osD^v<>ph*"
    datasets = list(dict.fromkeys(p[0] for p in points))
    releases = list(dict.fromkeys(p[1] for p in points))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, i in zip(axes[0], usable):
        for dataset, release, u, leaks in points:
            leak = leaks[i]
            if leak.value is None:
                continue
            label = release if len(datasets) == 1 else f"{dataset}: {release}"
            ax.errorbar(
                u.value, leak.value,
                xerr=[[u.value - (u.ci_low if u.ci_low is not None else u.value)],
                      [(u.ci_high if u.ci_high is not None else u.value) - u.value]],
                yerr=[[leak.value - (leak.ci_low if leak.ci_low is not None else leak.value)],
                      [(leak.ci_high if leak.ci_high is not None else leak.value) - leak.value]],
                fmt=markers[datasets.index(dataset) % len(markers)], capsize=2,
                color=colours[releases.index(release) % len(colours)], label=label,
            )
        ax.set_xlabel(f"utility: balanced accuracy ({model})")
        ax.set_ylabel(panels[i][0])
        ax.grid(alpha=0.3)
    handles, labels = legend_entries(axes[0])
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8, frameon=False)
    fig.suptitle("Privacy-utility trade-off (up = more leakage, right = more useful; 95% CIs)", fontsize=9)
    fig.tight_layout(rect=(0, 0.09 / rows, 1, 1))
    path = out_dir / "privacy_utility.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path

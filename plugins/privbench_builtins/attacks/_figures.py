"""The attacks' figures: image comparisons as PNG grids, and a log-scale ROC plot.

Figures that show private images (originals, reconstructions, nearest private
neighbours) are only written when ``ctx.allow_private_images`` is true; the
callers check it, and :func:`private_figures_allowed` says so once per run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from privbench.api import RunContext


def private_figures_allowed(ctx: RunContext, names: str) -> bool:
    """True when figures showing private images may be written to ``ctx.out_dir``; warn once otherwise."""
    if ctx.out_dir is None:
        return False
    if ctx.allow_private_images:
        return True
    ctx.warn(f"{names} not written: they show private images, and the dataset card does not mark the data "
             "public (pass --show-private-images to write them)")
    return False


def comparison_grid(rows: Sequence[torch.Tensor], path: Path) -> None:
    """One image row per tensor (same count each), upscaled so small images stay visible."""
    from privbench.imaging import grid_image, save_png

    h = int(rows[0].shape[-1])
    scale = max(1, 64 // max(1, h))
    save_png(grid_image([[img for img in row] for row in rows], scale=scale), path)


def roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], nonmembers: int, path: Path, title: str) -> None:
    """Log-log ROC curves, one per variant (label: AUC), with the chance diagonal."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    low = 0.5 / max(1, nonmembers)
    grid = np.logspace(np.log10(low), 0, 100)
    ax.plot(grid, grid, color="0.6", linestyle="--", linewidth=1, label="chance")
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(np.clip(fpr, low, 1), np.clip(tpr, low, 1), linewidth=1.5, label=f"{name} (AUC {auc:.3f})",
                drawstyle="steps-post")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, 1)
    ax.set_ylim(low, 1.05)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(True, which="major", linewidth=0.4, alpha=0.5)
    fig.tight_layout()
    fig.savefig(path, format="png")

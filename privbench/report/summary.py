"""A plain-language summary per dataset: which release is best on each axis, and what is a tie."""

from __future__ import annotations

from typing import Any

from privbench.report.tables import Cell, best_mia, index, releases_by_dataset


def _ranked(cells: dict[str, Cell], higher_better: bool) -> list[tuple[str, Cell]]:
    usable = [(k, c) for k, c in cells.items() if c.value is not None]
    return sorted(usable, key=lambda kc: kc[1].value, reverse=higher_better)


def _phrase(cells: dict[str, Cell], higher_better: bool, what: str, digits: str = "{:.3f}") -> str | None:
    ranked = _ranked(cells, higher_better)
    if not ranked:
        return None
    best_name, best = ranked[0]
    ties = [name for name, c in ranked[1:] if c.overlaps(best)]
    text = f"{what}: {best_name} is best ({digits.format(best.value)}"
    if best.ci_low is not None:
        text += f", 95% CI {digits.format(best.ci_low)}-{digits.format(best.ci_high)}"
    text += ")"
    if ties:
        text += f"; within its CI: {', '.join(ties)}, so these are not distinguishable at this sample size"
    elif len(ranked) > 1:
        text += "; its CI does not overlap the others'"
    return text + "."


def dataset_summaries(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    idx = index(records)
    models = sorted({r["evaluator"] for r in records if r["task"] == "utility"})
    model = "convnet" if "convnet" in models else (models[0] if models else None)
    out: dict[str, list[str]] = {}
    for dataset, releases in releases_by_dataset(records).items():
        lines = []
        if model:
            util = {r: Cell.of(idx.get((dataset, r, model, "balanced_accuracy", "all"))) for r in releases}
            p = _phrase(util, True, f"Utility (balanced accuracy of a {model} trained on the release)")
            if p:
                lines.append(p)
        mia = {r: best_mia(idx, dataset, r, "auc")[1] for r in releases}
        p = _phrase(mia, False, "Membership privacy (lowest AUC of the strongest membership attack; 0.5 = chance)")
        if p:
            lines.append(p)
        tpr = {r: best_mia(idx, dataset, r, "tpr_at_fpr_0.01")[1] for r in releases}
        p = _phrase(tpr, False, "Exposed members (lowest TPR at 1% FPR; 0.01 = chance)")
        if p:
            lines.append(p)
        ssim = {r: Cell.of(idx.get((dataset, r, "autoencoder", "reconstruction.ssim", "all"))) for r in releases}
        p = _phrase(ssim, False, "Reconstruction resistance (lowest SSIM between private images and their reconstructions)")
        if p:
            lines.append(p)
        aia = {r: Cell.of(idx.get((dataset, r, "aia", "with_model.auc", "all"))) for r in releases}
        ctrl = {r: Cell.of(idx.get((dataset, r, "aia", "control.auc", "all"))) for r in releases}
        gains = [r for r in releases if aia[r].value is not None and ctrl[r].value is not None
                 and not aia[r].overlaps(ctrl[r]) and aia[r].value > ctrl[r].value]
        if any(c.value is not None for c in aia.values()):
            if gains:
                lines.append(f"Attribute inference: the released model helps the attacker beyond the control for "
                             f"{', '.join(gains)} (CIs do not overlap).")
            else:
                lines.append("Attribute inference: no release lets the attacker beat the control attacker "
                             "(without the released model) beyond the CIs.")
        if not lines:
            lines.append("No utility or attack results for this dataset.")
        out[dataset] = lines
    return out

"""The verdict per dataset, in the order that decides a release: copies, exposed patients, then averages.

1. How many private images the release contains verbatim or as near-copies,
   with the exact count and interval: any copy is a patient's image shared.
2. How many members the strongest attack exposes at 1% FPR (exact interval),
   never from an attack whose null control says it reads something else.
3. The membership AUC. A release that publishes private images is never
   called best on membership privacy: an AUC near 0.5 there says only that
   the model attacks have nothing to find beyond the copies themselves.

Then utility, reconstruction and attribute inference, each as a contrast.
"""

from __future__ import annotations

from typing import Any

from privbench.report.tables import (
    Cell,
    best_mia,
    cell,
    confounded_variants,
    games_of,
    index,
    releases_by_dataset,
)


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


def _pct(c: Cell) -> str:
    return c.text(percent=True) + " %"


def _copies(idx, dataset: str, releases: list[str]) -> tuple[str | None, set[str]]:
    """The line on verbatim copies and near-copies, and the releases that contain any."""
    parts, copying = [], set()
    for release in releases:
        verbatim = cell(idx, dataset, release, "autoencoder", "memorisation.verbatim")
        near = cell(idx, dataset, release, "autoencoder", "memorisation.near_copies")
        if verbatim.value is None and near.value is None:
            continue
        bits = []
        if verbatim.value is not None:
            k, n = verbatim.detail.get("verbatim"), verbatim.detail.get("released_checked")
            bits.append(f"{k} of {n} released images verbatim ({_pct(verbatim)})")
        if near.value is not None:
            k, n = near.detail.get("near_copies"), near.detail.get("released_checked")
            rule = f"{str(near.detail.get('metric', 'ssim')).upper()} >= {near.detail.get('threshold', 0.95):g}"
            bits.append(f"{k} of {n} near-copies ({rule}: {_pct(near)})")
        if (verbatim.value or 0) > 0 or (near.value or 0) > 0:
            copying.add(release)
        parts.append(f"{release}: " + ", ".join(bits))
    if not parts:
        return None, copying
    return "Private images in the release (exact 95% CI): " + "; ".join(parts) + ".", copying


def _exposure(records, idx, dataset: str, releases: list[str]) -> list[str]:
    lines = []
    for release in releases:
        for game in games_of(records, dataset, release):
            variant, tpr = best_mia(idx, dataset, release, "tpr_at_fpr_0.01", game)
            where = f"{release} ({game} game)"
            if variant is not None:
                tp, n = tpr.detail.get("true_positives"), tpr.detail.get("members")
                achieved = tpr.detail.get("fpr_achieved")
                text = (f"{where}: {tp} of {n} members exposed at 1% FPR by {variant.replace('_', ' ')}: "
                        f"TPR {_pct(tpr)}")
                if achieved is not None:
                    text += f" at an achieved FPR of {achieved * 100:.2f} %"
                lines.append(text)
            elif tpr.status == "insufficient":
                lines.append(f"{where}: TPR at 1% FPR not resolvable: {tpr.reason}")
            bad = confounded_variants(idx, dataset, release, game)
            if bad:
                lines.append(f"{where}: {', '.join(v.replace('_', ' ') for v in bad)} confounded (the null control's "
                             "AUC interval excludes 0.5: the attack reads a difference between the training and the "
                             "non-member splits), so not counted as leakage")
    return lines


def guarantee_line(records: list[dict[str, Any]], dataset: str) -> str | None:
    """Which releases prove an epsilon, and whether the canary audit's bound stayed within it."""
    from privbench.report.guarantees import guarantee_rows
    from privbench.report.tables import epsilon_text

    parts = []
    for r in guarantee_rows(records):
        if r["dataset"] != dataset:
            continue
        bound, epsilon = r["bound"], r["epsilon"]
        if epsilon is None:
            text = f"{r['release']}: no guarantee"
        elif epsilon == float("inf"):
            text = f"{r['release']}: ε = ∞ (run without noise)"
        else:
            text = f"{r['release']}: proves ε = {epsilon_text(epsilon)}"
        if bound.value is not None:
            text += f", canaries show ε ≥ {bound.value:.2f}"
            if bound.detail.get("violation"):
                text += " (ABOVE the guarantee: the mechanism or its accounting is wrong)"
            elif epsilon is not None and epsilon != float("inf"):
                text += " (within it)"
        parts.append(text)
    if not parts:
        return None
    return ("Differential privacy (the guaranteed epsilon, and the canary audit's 95% lower bound, which must not "
            "exceed it): " + "; ".join(parts) + ".")


def dataset_summaries(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    idx = index(records)
    models = sorted({r["evaluator"] for r in records if r["task"] == "utility"})
    model = "convnet" if "convnet" in models else (models[0] if models else None)
    out: dict[str, list[str]] = {}
    for dataset, releases in releases_by_dataset(records).items():
        lines = []
        copies, copying = _copies(idx, dataset, releases)
        if copies:
            lines.append(copies)
        exposure = _exposure(records, idx, dataset, releases)
        if exposure:
            lines.append("Members exposed at low FPR (strongest attack whose null control holds; exact 95% CI): "
                         + "; ".join(exposure) + ".")
        mia = {}
        for r in releases:
            games = games_of(records, dataset, r)
            game = games[0] if games else "any"
            c = best_mia(idx, dataset, r, "auc", game)[1]
            if r not in copying:
                mia[f"{r} ({game} game)" if games else r] = c
        what = "Membership privacy (lowest AUC of the strongest unconfounded attack; 0.5 = chance)"
        p = _phrase(mia, False, what)
        ranked = _ranked(mia, False)
        if len(ranked) == 1 and copying:
            name, c = ranked[0]
            p = (f"{what}: {name} is the only release without private images in it; its strongest attack has AUC "
                 f"{c.text()}.")
        if p:
            if copying:
                p = p[:-1] + (f"; not ranked: {', '.join(sorted(copying))}, which contain private images, so an AUC "
                              "near 0.5 there does not mean privacy.")
            lines.append(p)
        elif copying and any(best_mia(idx, dataset, r, "auc")[1].value is not None for r in releases):
            lines.append(f"Membership privacy: no release is ranked; {', '.join(sorted(copying))} contain private "
                         "images, and no other release has an unconfounded membership AUC.")
        guaranteed = guarantee_line(records, dataset)
        if guaranteed:
            lines.append(guaranteed)
        if model:
            util = {r: cell(idx, dataset, r, model, "balanced_accuracy") for r in releases}
            p = _phrase(util, True, f"Utility (balanced accuracy of a {model} trained on the release)")
            if p:
                lines.append(p)
        gaps = {r: cell(idx, dataset, r, "autoencoder", "reconstruction_gap.ssim") for r in releases}
        leaking = [r for r, c in gaps.items() if c.value is not None and c.ci_low is not None and c.ci_low > 0
                   and not c.confounded]
        if any(c.value is not None for c in gaps.values()):
            if leaking:
                lines.append(f"Reconstruction: members are reconstructed better than non-members (SSIM gap CI above "
                             f"0, null control holding) for {', '.join(leaking)}.")
            else:
                lines.append("Reconstruction: no release lets its autoencoder reconstruct members better than "
                             "non-members beyond the CIs (or the gap is confounded), whatever the SSIM level.")
        risks = {r: cell(idx, dataset, r, "aia", "risk") for r in releases}
        if any(c.value is not None for c in risks.values()):
            above = [r for r, c in risks.items() if c.ci_low is not None and c.ci_low > 0]
            mixes = any(c.detail.get("mixes_utility") for c in risks.values())
            text = (f"Attribute inference: the attacker infers the attribute better for members than for controls "
                    f"(risk CI above 0) for {', '.join(above)}." if above else
                    "Attribute inference: no release gives the attacker more success on members than on non-member "
                    "controls beyond the CIs (risk CI contains 0).")
            if mixes:
                text += (" The attribute is the diagnosis label itself: the with-model AUC mixes the release's "
                         "utility with leakage; the risk is the part specific to members.")
            lines.append(text)
        if not lines:
            lines.append("No utility or attack results for this dataset.")
        out[dataset] = lines
    return out

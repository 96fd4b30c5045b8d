"""The report's tables, built from result records: the paper's Table 1 and Table 2, and the rest.

Measure names the tables look for (the built-in plugins write them; a third
party's rows appear in the per-evaluator tables at the end):

* utility (task ``utility``, evaluator = model): ``accuracy``, ``balanced_accuracy``, ``roc_auc``;
* ``mia``: ``<variant>.<statistic>`` for variants ``loss``, ``lira_offline``,
  ``lira_online``, ``rmia``, ``release_distance`` and statistics ``auc``,
  ``balanced_accuracy``, ``tpr_at_fpr_0.01``, ``tpr_at_fpr_0.001``, in the
  ``release`` or ``method`` game (the ``game`` column), with a ``null`` subset;
* ``aia``: ``with_model.auc``, ``baseline.auc``, ``success.members``,
  ``success.controls``, ``risk``;
* ``canary``: ``canary.epsilon_lower`` (the best bound) and, per score,
  ``canary.<score>.epsilon_lower``, ``.guess_accuracy``, ``.auc``;
* ``autoencoder``: ``reconstruction.<metric>``, ``reconstruction_gap.<metric>``,
  ``reconstruction_mia.auc``, ``memorisation.pixel.<metric>``,
  ``memorisation.verbatim``, ``memorisation.near_copies``.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

MIA_VARIANTS = ("loss", "lira_offline", "lira_online", "rmia", "release_distance")
GAMES = ("release", "method")


@dataclass
class Cell:
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0
    status: str = "ok"
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, record: dict[str, Any] | None) -> "Cell":
        if record is None:
            return cls(None, status="missing")
        detail = record.get("detail") or {}
        if isinstance(detail, str):
            try:
                detail = json.loads(detail) if detail else {}
            except json.JSONDecodeError:
                detail = {}
        return cls(record.get("value"), record.get("ci_low"), record.get("ci_high"), record.get("n") or 0,
                   record.get("status") or "ok", detail if isinstance(detail, dict) else {})

    @property
    def confounded(self) -> bool:
        return bool(self.detail.get("confounded"))

    @property
    def reason(self) -> str:
        return str(self.detail.get("reason") or "")

    def text(self, digits: int = 3, percent: bool = False) -> str:
        if self.status in ("unavailable", "insufficient"):
            return self.status
        if self.value is None:
            return "–"
        scale = 100 if percent else 1
        fmt = (lambda v: f"{v * scale:.1f}") if percent else (lambda v: f"{v:.{digits}g}" if abs(v) >= 100 else f"{v:.{digits}f}")
        out = fmt(self.value)
        if self.ci_low is not None and self.ci_high is not None:
            out += f" [{fmt(self.ci_low)}, {fmt(self.ci_high)}]"
        return out

    def overlaps(self, other: "Cell") -> bool:
        if None in (self.ci_low, self.ci_high, other.ci_low, other.ci_high):
            return True
        return not (self.ci_high < other.ci_low or other.ci_high < self.ci_low)

    def excludes(self, value: float) -> bool:
        return self.ci_low is not None and self.ci_high is not None and not self.ci_low <= value <= self.ci_high


def epsilon_text(epsilon: float | None) -> str:
    """A release's guarantee in words: its epsilon, or the infinity of a release that states none."""
    if epsilon is None or epsilon != epsilon:
        return "∞ (none)"
    return "∞" if math.isinf(epsilon) else f"{epsilon:.3g}"


def release_label(r: dict[str, Any], with_seed: bool = False) -> str:
    """Method, ipc, and the epsilon of a release that states a guarantee (so that epsilons do not merge)."""
    label = r.get("release_method") or "?"
    if r.get("release_ipc") is not None:
        label += f" ipc={r['release_ipc']}"
    epsilon = r.get("release_epsilon")
    if epsilon is not None and epsilon == epsilon:
        label += f" ε={epsilon_text(epsilon)}"
    if with_seed and r.get("release_seed") is not None:
        label += f" s{r['release_seed']}"
    return label


def several_seeds(records: list[dict[str, Any]]) -> bool:
    return len({r.get("release_seed") for r in records}) > 1


Index = dict


def index(records: list[dict[str, Any]]) -> Index:
    """(dataset, release, evaluator, measure, subset, game) -> record."""
    seeds = several_seeds(records)
    return {(r["dataset"], release_label(r, seeds), r["evaluator"], r["measure"], r.get("subset") or "all",
             r.get("game")): r for r in records}


def lookup(idx: Index, dataset: str, release: str, evaluator: str, measure: str, subset: str = "all",
           game: str | None = "any") -> dict[str, Any] | None:
    """The record for one number; ``game="any"`` takes it from whichever game (or none) has it."""
    if game != "any":
        return idx.get((dataset, release, evaluator, measure, subset, game))
    for g in (None, "release", "method"):
        found = idx.get((dataset, release, evaluator, measure, subset, g))
        if found is not None:
            return found
    return None


def cell(idx: Index, dataset: str, release: str, evaluator: str, measure: str, subset: str = "all",
         game: str | None = "any") -> Cell:
    return Cell.of(lookup(idx, dataset, release, evaluator, measure, subset, game))


def games_of(records: list[dict[str, Any]], dataset: str, release: str, evaluator: str = "mia") -> list[str]:
    seeds = several_seeds(records)
    found = {r.get("game") for r in records if r["dataset"] == dataset and r["evaluator"] == evaluator
             and release_label(r, seeds) == release}
    return [g for g in GAMES if g in found] + sorted(g for g in found if g not in GAMES and g is not None)


def releases_by_dataset(records: list[dict[str, Any]]) -> "OrderedDict[str, list[str]]":
    seeds = several_seeds(records)
    order: OrderedDict[str, list[str]] = OrderedDict()
    for r in records:
        labels = order.setdefault(r["dataset"], [])
        label = release_label(r, seeds)
        if label not in labels:
            labels.append(label)
    return order


def release_epsilons(records: list[dict[str, Any]]) -> dict[tuple[str, str], float | None]:
    """(dataset, release label) -> the epsilon the release guarantees (None: it states no guarantee)."""
    seeds = several_seeds(records)
    out: dict[tuple[str, str], float | None] = {}
    for r in records:
        key = (r["dataset"], release_label(r, seeds))
        if out.get(key) is None:
            value = r.get("release_epsilon")
            out[key] = None if value is None or value != value else float(value)
    return out


def utility_table(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table 1: accuracy, balanced accuracy and ROC AUC per dataset, release and model, beside the guarantee."""
    idx = index(records)
    epsilons = release_epsilons(records)
    models = sorted({r["evaluator"] for r in records if r["task"] == "utility"})
    rows = []
    for dataset, releases in releases_by_dataset(records).items():
        for release in releases:
            for model in models:
                cells = {m: cell(idx, dataset, release, model, m) for m in ("accuracy", "balanced_accuracy", "roc_auc")}
                if all(c.status == "missing" for c in cells.values()):
                    continue
                rows.append({"dataset": dataset, "release": release, "model": model,
                             "epsilon": epsilons.get((dataset, release)), **cells})
    return rows


def best_mia(idx: Index, dataset: str, release: str, statistic: str, game: str | None = "any",
             subset: str = "all") -> tuple[str | None, Cell]:
    """The strongest membership attack by a statistic (the auditor's worst case), never a confounded one."""
    best: tuple[str | None, Cell] = (None, Cell(None, status="missing"))
    for variant in MIA_VARIANTS:
        c = cell(idx, dataset, release, "mia", f"{variant}.{statistic}", subset, game)
        if c.value is None or c.confounded:
            continue
        if best[1].value is None or c.value > best[1].value:
            best = (variant, c)
    if best[0] is None:  # nothing resolvable: say why, from the first attack that reports it
        for variant in MIA_VARIANTS:
            c = cell(idx, dataset, release, "mia", f"{variant}.{statistic}", subset, game)
            if c.status in ("insufficient", "unavailable"):
                return None, c
    return best


def confounded_variants(idx: Index, dataset: str, release: str, game: str | None) -> list[str]:
    return [v for v in MIA_VARIANTS if cell(idx, dataset, release, "mia", f"{v}.auc", "all", game).confounded]


def optimiser_steps(c: Cell) -> str:
    """The target model's optimiser steps, as the rows' detail records them."""
    recipe = c.detail.get("target_recipe") or {}
    steps = recipe.get("optimiser_steps")
    return "" if steps is None else str(steps)


def privacy_table(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table 2: per dataset, release and game, MIA AUC by attack, exposure at low FPR, the null control; AIA;
    the guaranteed epsilon and the canary audit's lower bound."""
    idx = index(records)
    epsilons = release_epsilons(records)
    rows = []
    for dataset, releases in releases_by_dataset(records).items():
        for release in releases:
            games = games_of(records, dataset, release) or [None]
            for game in games:
                g = "any" if game is None else game
                row = {"dataset": dataset, "release": release, "game": game or "",
                       "epsilon": epsilons.get((dataset, release)),
                       "canary_bound": cell(idx, dataset, release, "canary", "canary.epsilon_lower")}
                for variant in MIA_VARIANTS:
                    row[f"mia_{variant}_auc"] = cell(idx, dataset, release, "mia", f"{variant}.auc", "all", g)
                variant, tpr = best_mia(idx, dataset, release, "tpr_at_fpr_0.01", g)
                row["mia_tpr_1"] = tpr
                row["mia_tpr_1_variant"] = variant or ""
                row["mia_tpr_01"] = (cell(idx, dataset, release, "mia", f"{variant}.tpr_at_fpr_0.001", "all", g)
                                     if variant else best_mia(idx, dataset, release, "tpr_at_fpr_0.001", g)[1])
                row["mia_null_auc"] = (cell(idx, dataset, release, "mia", f"{variant}.auc", "null", g)
                                       if variant else Cell(None, status="missing"))
                row["mia_confounded"] = confounded_variants(idx, dataset, release, g)
                first = next((row[f"mia_{v}_auc"] for v in MIA_VARIANTS if row[f"mia_{v}_auc"].value is not None),
                             Cell(None, status="missing"))
                row["mia_steps"] = optimiser_steps(first)
                row["mia_targets"] = first.detail.get("pooled_targets")
                row["aia_auc"] = cell(idx, dataset, release, "aia", "with_model.auc")
                row["aia_baseline_auc"] = cell(idx, dataset, release, "aia", "baseline.auc")
                row["aia_members"] = cell(idx, dataset, release, "aia", "success.members")
                row["aia_controls"] = cell(idx, dataset, release, "aia", "success.controls")
                row["aia_risk"] = cell(idx, dataset, release, "aia", "risk")
                if all(v.status == "missing" for v in row.values() if isinstance(v, Cell)):
                    continue
                rows.append(row)
    return rows


def metric_names(records: list[dict[str, Any]], prefix: str = "reconstruction.") -> list[str]:
    seen = []
    for r in records:
        if r["measure"].startswith(prefix):
            name = r["measure"][len(prefix):]
            if "." not in name and name not in seen:
                seen.append(name)
    return seen


def evaluator_tables(records: list[dict[str, Any]]) -> "OrderedDict[tuple[str, str], list[dict[str, Any]]]":
    """Every record, grouped by (task, evaluator): third-party plugins' rows land here."""
    out: OrderedDict[tuple[str, str], list[dict[str, Any]]] = OrderedDict()
    for r in records:
        out.setdefault((r["task"], r["evaluator"]), []).append(r)
    return out

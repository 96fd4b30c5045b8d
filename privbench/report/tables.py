"""The report's tables, built from result records: the paper's Table 1 and Table 2, and the rest.

Measure names the tables look for (the built-in plugins write them; a third
party's rows appear in the per-evaluator tables at the end):

* utility (task ``utility``, evaluator = model): ``accuracy``, ``balanced_accuracy``, ``roc_auc``;
* ``mia``: ``<variant>.<statistic>`` for variants ``loss``, ``lira_offline``,
  ``lira_online``, ``release_distance`` and statistics ``auc``,
  ``balanced_accuracy``, ``tpr_at_fpr_0.01``, ``tpr_at_fpr_0.001``;
* ``aia``: ``with_model.auc`` and ``control.auc``;
* ``autoencoder``: ``reconstruction.<metric>``, ``memorisation.pixel.<metric>``,
  ``memorisation.near_copies``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

MIA_VARIANTS = ("loss", "lira_offline", "lira_online", "release_distance")


@dataclass
class Cell:
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0
    status: str = "ok"

    @classmethod
    def of(cls, record: dict[str, Any] | None) -> "Cell":
        if record is None:
            return cls(None, status="missing")
        return cls(record.get("value"), record.get("ci_low"), record.get("ci_high"), record.get("n") or 0,
                   record.get("status") or "ok")

    def text(self, digits: int = 3, percent: bool = False) -> str:
        if self.status == "unavailable":
            return "unavailable"
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


def release_label(r: dict[str, Any], with_seed: bool = False) -> str:
    label = r.get("release_method") or "?"
    if r.get("release_ipc") is not None:
        label += f" ipc={r['release_ipc']}"
    if with_seed and r.get("release_seed") is not None:
        label += f" s{r['release_seed']}"
    return label


def several_seeds(records: list[dict[str, Any]]) -> bool:
    return len({r.get("release_seed") for r in records}) > 1


def index(records: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """(dataset, release, evaluator, measure, subset) -> record."""
    seeds = several_seeds(records)
    return {(r["dataset"], release_label(r, seeds), r["evaluator"], r["measure"], r.get("subset") or "all"): r
            for r in records}


def releases_by_dataset(records: list[dict[str, Any]]) -> "OrderedDict[str, list[str]]":
    seeds = several_seeds(records)
    order: OrderedDict[str, list[str]] = OrderedDict()
    for r in records:
        labels = order.setdefault(r["dataset"], [])
        label = release_label(r, seeds)
        if label not in labels:
            labels.append(label)
    return order


def utility_table(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table 1: accuracy, balanced accuracy and ROC AUC per dataset, release and model."""
    idx = index(records)
    models = sorted({r["evaluator"] for r in records if r["task"] == "utility"})
    rows = []
    for dataset, releases in releases_by_dataset(records).items():
        for release in releases:
            for model in models:
                cells = {m: Cell.of(idx.get((dataset, release, model, m, "all")))
                         for m in ("accuracy", "balanced_accuracy", "roc_auc")}
                if all(c.status == "missing" for c in cells.values()):
                    continue
                rows.append({"dataset": dataset, "release": release, "model": model, **cells})
    return rows


def best_mia(idx: dict, dataset: str, release: str, statistic: str) -> tuple[str | None, Cell]:
    """The strongest MIA variant by a statistic (the auditor's worst case)."""
    best: tuple[str | None, Cell] = (None, Cell(None, status="missing"))
    for variant in MIA_VARIANTS:
        cell = Cell.of(idx.get((dataset, release, "mia", f"{variant}.{statistic}", "all")))
        if cell.value is not None and (best[1].value is None or cell.value > best[1].value):
            best = (variant, cell)
    return best


def privacy_table(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table 2: MIA and AIA AUC per dataset and release, with TPR at low FPR and the control."""
    idx = index(records)
    rows = []
    for dataset, releases in releases_by_dataset(records).items():
        for release in releases:
            get = lambda ev, m: Cell.of(idx.get((dataset, release, ev, m, "all")))  # noqa: E731
            row = {
                "dataset": dataset,
                "release": release,
                "mia_loss_auc": get("mia", "loss.auc"),
                "mia_lira_online_auc": get("mia", "lira_online.auc"),
                "mia_lira_offline_auc": get("mia", "lira_offline.auc"),
                "mia_release_distance_auc": get("mia", "release_distance.auc"),
                "aia_auc": get("aia", "with_model.auc"),
                "aia_control_auc": get("aia", "control.auc"),
            }
            variant, tpr = best_mia(idx, dataset, release, "tpr_at_fpr_0.01")
            row["mia_tpr_1"] = tpr
            row["mia_tpr_1_variant"] = variant or ""
            row["mia_tpr_01"] = Cell.of(idx.get((dataset, release, "mia", f"{variant}.tpr_at_fpr_0.001", "all"))) \
                if variant else Cell(None, status="missing")
            if all(isinstance(v, Cell) and v.status == "missing" for k, v in row.items() if isinstance(v, Cell)):
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

"""A paper's published figures beside privbench's measured ones (``registry/papers/*.toml``).

A suite that declares ``[report] reproduces = "NAME"`` stamps the name into its
``results.parquet`` (schema metadata), so ``privbench report`` finds it from the
table alone; ``privbench report --paper NAME`` asks for it on any table. Every
published number gets a row: the measured value with its 95% CI and n, or
"not run"; a CI that excludes the published value is marked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privbench.errors import UserError
from privbench.registry_path import registry_dir
from privbench.report import html as H
from privbench.schema import Field, check_fields, is_nonempty_str, is_str, is_table, list_of, read_toml

METADATA_KEY = b"privbench.reproduces"

_MEASURE_FIELDS = (
    Field("label", is_str, "a string", required=True),
    Field("evaluator", is_nonempty_str, "the evaluator that writes it", required=True),
    Field("measure", is_nonempty_str, "a privbench measure name", required=True),
    Field("scale", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
)
_FIGURE_FIELDS = (
    Field("measure", is_nonempty_str, "a key of [measures]", required=True),
    Field("dataset", is_nonempty_str, "a key of [datasets]", required=True),
    Field("release", is_nonempty_str, "a release method", required=True),
    Field("value", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number", required=True),
)
_PAPER_FIELDS = (
    Field("name", is_nonempty_str, "a string", required=True),
    Field("title", is_str, "a string", required=True),
    Field("protocol", is_str, "a string"),
    Field("datasets", lambda v: is_table(v) and all(isinstance(x, list) and all(isinstance(c, str) for c in x)
                                                    for x in v.values()),
          "a table of lists of dataset card names", required=True),
    Field("measures", lambda v: is_table(v) and all(is_table(x) for x in v.values()), "a table of tables",
          required=True),
    Field("figures", list_of(is_table), "an array of tables ([[figures]])", required=True),
)


@dataclass(frozen=True)
class Paper:
    name: str
    title: str
    protocol: str
    datasets: dict[str, list[str]]
    measures: dict[str, dict[str, Any]]
    figures: list[dict[str, Any]]


def papers_dir() -> Path:
    return registry_dir() / "papers"


def load_paper(name: str) -> Paper:
    """The paper ``name`` from the registry, every field checked."""
    known = sorted(p.stem for p in papers_dir().glob("*.toml"))
    if name not in known:
        raise UserError(f"unknown paper {name!r}; the registry holds: {', '.join(known) or 'none'}")
    path = papers_dir() / f"{name}.toml"
    data = read_toml(path, "paper figures")
    where = f"paper figures {path}"
    check_fields(data, _PAPER_FIELDS, where, allow_unknown=False)
    for key, measure in data["measures"].items():
        check_fields(measure, _MEASURE_FIELDS, f"{where}, measures.{key}", allow_unknown=False)
    for i, fig in enumerate(data["figures"]):
        check_fields(fig, _FIGURE_FIELDS, f"{where}, figure {i + 1}", allow_unknown=False)
        if fig["measure"] not in data["measures"] or fig["dataset"] not in data["datasets"]:
            raise UserError(f"{where}, figure {i + 1}: measure {fig['measure']!r} or dataset {fig['dataset']!r} "
                            f"is not declared")
    return Paper(data["name"], data["title"], data.get("protocol", ""), data["datasets"], data["measures"],
                 data["figures"])


def declared_paper(results_path: Path) -> str | None:
    """The paper a suite's results table says it reproduces (its Parquet metadata), if any."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(results_path).metadata or {}
    except Exception:  # noqa: BLE001 - read_table has already refused a bad file
        return None
    value = metadata.get(METADATA_KEY)
    return value.decode("utf-8", "replace") if value else None


def _release_label(r: dict[str, Any]) -> str:
    return r["release_method"] + ("" if r.get("release_ipc") is None else f" ipc={r['release_ipc']}")


def _matches(records: list[dict[str, Any]], paper: Paper, fig: dict[str, Any]) -> tuple[str | None, list[dict]]:
    spec = paper.measures[fig["measure"]]
    present = {r["dataset"] for r in records}
    card = next((c for c in paper.datasets[fig["dataset"]] if c in present), None)
    if card is None:
        return None, []
    rows = [r for r in records if r["dataset"] == card and r["release_method"] == fig["release"]
            and r["evaluator"] == spec["evaluator"] and r["measure"] == spec["measure"]
            and (r.get("subset") or "all") == "all"]
    return card, sorted(rows, key=lambda r: (_release_label(r), r.get("game") or "", r.get("release_seed") or 0))


def _measured_cell(row: dict[str, Any], scale: float, published: float) -> tuple[str, str]:
    if row.get("status") != "ok" or row.get("value") is None:
        reason = ""
        try:
            reason = json.loads(row.get("detail") or "{}").get("reason", "")
        except (TypeError, ValueError):
            pass
        return f"<td class='na' title='{H.esc(reason)}'>{H.esc(row.get('status'))}</td>", "<td>-</td>"
    value = row["value"] * scale
    low, high = row.get("ci_low"), row.get("ci_high")
    ci = "" if low is None or high is None else f" [{low * scale:.4g}, {high * scale:.4g}]"
    cell = f"<td class='num' title='n = {row.get('n')}'>{value:.4g}{ci}</td>"
    if low is None or high is None:
        verdict = "no CI"
    elif low * scale <= published <= high * scale:
        verdict = "within the CI"
    else:
        verdict = "<b>outside the CI</b>"
    return cell, f"<td>{verdict}</td>"


def paper_section(records: list[dict[str, Any]], runs: list[dict[str, Any]], paper: Paper) -> str:
    """The HTML section: one row per published number and privbench row that measures it."""
    body = []
    for fig in paper.figures:
        spec = paper.measures[fig["measure"]]
        scale = float(spec.get("scale", 1.0))
        card, rows = _matches(records, paper, fig)
        lead = [f"<td>{H.esc(spec['label'])}</td>", f"<td>{H.esc(fig['dataset'])}</td>",
                f"<td>{H.esc(fig['release'])}</td>", f"<td class='num'>{fig['value']:.4g}</td>"]
        if not rows:
            body.append(lead + [f"<td>{H.esc(card or ' / '.join(paper.datasets[fig['dataset']]))}</td>",
                                "<td class='na'>not run</td>", "<td>-</td>", "<td>-</td>"])
            continue
        for row in rows:
            measured, verdict = _measured_cell(row, scale, float(fig["value"]))
            label = _release_label(row) + (f" ({row['game']} game)" if row.get("game") else "")
            body.append(lead + [f"<td>{H.esc(card)}</td>", f"<td>{H.esc(label)}</td>", measured, verdict])
    weights = _utility_weights(runs)
    return ("<h2>Published figures beside measured ones</h2>"
            f"<p class='note'>{H.esc(paper.title)}. Its protocol: {H.esc(paper.protocol)}. Each published number "
            "is set beside privbench's measured value with its 95% CI (hover for n); <i>not run</i> marks a number "
            "this table has no row for. Settings differ from the paper's wherever the suite says so; a CI that "
            "excludes the published value is marked, which is a difference to explain, not by itself an "
            f"error.{(' ' + H.esc(weights)) if weights else ''}</p>"
            + H.table(["published quantity", "paper's dataset", "release", "published", "privbench dataset",
                       "privbench release", "measured [95% CI]", "published value"], body))


def _utility_weights(runs: list[dict[str, Any]]) -> str:
    """Which weights the ResNets (classifiers and attacked models) started from, as the runs recorded it."""
    seen = set()
    for run in runs:
        try:
            config = json.loads(run.get("config") or "{}")
        except (TypeError, ValueError):
            continue
        for model, loaded in _weights_entries(config, str(run.get("evaluator", ""))):
            if model.startswith("resnet"):
                what = "utility" if run.get("task") == "utility" else f"{run.get('evaluator')} target"
                seen.add(f"{model} ({what}): {'ImageNet weights from ' + loaded if loaded else 'trained from scratch'}")
    return ("Models: " + "; ".join(sorted(seen)) + ".") if seen else ""


def _weights_entries(node: Any, model: str) -> list[tuple[str, str | None]]:
    """Every ``weights_loaded`` in a run's configuration, with the model it belongs to."""
    found = []
    if isinstance(node, dict):
        model = str(node.get("model", model))
        if "weights_loaded" in node:
            found.append((model, node["weights_loaded"]))
        for value in node.values():
            found += _weights_entries(value, model)
    elif isinstance(node, list):
        for value in node:
            found += _weights_entries(value, model)
    return list(dict.fromkeys(found))

"""A self-contained HTML report: tables and PNG figures inlined, opens offline."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from privbench.report.tables import Cell

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto; max-width: 1180px;
       color: #1d2330; line-height: 1.45; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #dde2ea; padding-bottom: 0.2rem; }
.meta { color: #5a6475; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.86rem; }
th, td { border: 1px solid #dde2ea; padding: 0.28rem 0.55rem; text-align: left; vertical-align: top; }
th { background: #f2f4f8; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.na { color: #9aa3b2; text-align: center; }
.note { color: #5a6475; font-size: 0.85rem; max-width: 60rem; }
figure { display: inline-block; margin: 0.6rem 1rem 0.6rem 0; vertical-align: top; max-width: 100%; }
figure img { max-width: 100%; border: 1px solid #e5e8ee; }
.figs figure { max-width: calc(50% - 1rem); }
.figs figure img { max-height: 420px; }
.scroll { overflow-x: auto; }
figcaption { font-size: 0.82rem; color: #5a6475; max-width: 34rem; }
ul.summary li { margin-bottom: 0.35rem; }
details { margin: 0.4rem 0; } summary { cursor: pointer; color: #2a4f8f; }
.failed { background: #fdecec; border: 1px solid #e7a9a9; padding: 0.5rem 0.8rem; margin: 1rem 0; font-size: 0.9rem; }
.private { background: #fff7e6; border: 1px solid #f0d9a8; padding: 0.5rem 0.8rem; font-size: 0.85rem; }
"""


def esc(text: Any) -> str:
    return html.escape(str(text))


def cell_td(cell: Cell, percent: bool = False, note: str = "") -> str:
    text = esc(cell.text(percent=percent))
    if note and cell.value is not None:
        text += f"<br><small>{esc(note)}</small>"
    cls = "na" if cell.value is None else "num"
    title = f' title="n = {cell.n}"' if cell.n else ""
    return f'<td class="{cls}"{title}>{text}</td>'


def table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def image_tag(path: Path, caption: str, alt: str | None = None) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt or caption)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><meta name='generator' content='privbench'><title>{esc(title)}</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{CSS}</style></head>"
            f"<body>{body}</body></html>")

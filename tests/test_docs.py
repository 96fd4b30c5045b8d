"""Every hook specification is documented with its exact signature."""

from __future__ import annotations

import inspect
from pathlib import Path

from privbench import hookspecs

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _hookspecs():
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction):
        if hasattr(fn, "privbench_spec"):
            yield name, fn


def test_every_hookspec_is_documented_with_its_signature():
    text = (DOCS / "plugins" / "hooks.md").read_text()
    specs = list(_hookspecs())
    assert {name for name, _ in specs} >= {"register_distillers", "register_attacks", "register_metrics"}
    for name, fn in specs:
        signature = f"{name}{inspect.signature(fn)}"
        assert f"## `{signature}`" in text, f"docs/plugins/hooks.md lacks a section for {signature}"

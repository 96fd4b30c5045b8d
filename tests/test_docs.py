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


def _call_form(name, fn):
    """``distill(cls, data, ipc, seed=0, **options)``: the signature as the docs write it, without annotations."""
    parts = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind is p.VAR_KEYWORD:
            parts.append(f"**{p.name}")
        elif p.default is p.empty:
            parts.append(p.name)
        else:
            default = f'"{p.default}"' if isinstance(p.default, str) else repr(p.default)
            parts.append(f"{p.name}={default}")
    return f"{name}({', '.join(parts)})"


def test_every_testing_helper_is_in_the_table_with_its_full_signature():
    from privbench import testing

    text = (DOCS / "plugins" / "testing.md").read_text()
    for name in ("tiny_dataset", "check_plugin", "distill", "attack"):
        form = _call_form(name, getattr(testing, name))
        assert f"| `{form}` |" in text, f"docs/plugins/testing.md lacks the row for {form}"

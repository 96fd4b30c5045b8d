"""docs/api.md, the public API reference, agrees with the code: every name, every signature."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from privbench import docs_api

ROOT = Path(__file__).resolve().parents[1]


def test_the_page_is_what_the_code_generates():
    diff = docs_api.stale()
    assert not diff, (f"docs/api.md disagrees with the code (a public name added, removed or its signature "
                      f"changed); regenerate it with:\n\n    {docs_api.COMMAND}\n\n{diff[:6000]}")


def test_the_page_says_at_its_top_how_it_is_made_and_what_is_stable():
    head = (ROOT / "docs" / "api.md").read_text().splitlines()[:12]
    assert head[0].startswith("<!--") and docs_api.COMMAND in head[0]
    assert any("semantic versioning" in line for line in head) and any("internal" in line for line in head)


def test_every_name_of_the_api_modules_all_is_listed():
    import privbench.api

    page = (ROOT / "docs" / "api.md").read_text()
    for name in privbench.api.__all__:
        assert f"### `privbench.api.{name}" in page, name


def test_a_changed_signature_changes_the_page(monkeypatch):
    import privbench.training

    before = docs_api.render()
    monkeypatch.setattr(privbench.training, "derive_seed", lambda seed, purpose, salt=0: 0)
    after = docs_api.render()
    assert "derive_seed(seed: int, *purpose: object) -> int" in before
    assert "derive_seed(seed, purpose, salt=0)" in after and after != before


def test_a_public_name_that_is_gone_fails_loudly(monkeypatch):
    monkeypatch.setitem(docs_api.PUBLIC, "privbench.utility", ("train_on_release", "train_ensemble_gone"))
    with pytest.raises(AttributeError, match="train_ensemble_gone"):
        docs_api.render()


def test_check_mode_prints_the_command_when_stale(tmp_path, monkeypatch, capsys):
    page = tmp_path / "api.md"
    page.write_text("old page\n")
    monkeypatch.setattr(docs_api, "PAGE", page)
    assert docs_api.main(["--check"]) == 1
    captured = capsys.readouterr()
    assert docs_api.COMMAND in captured.err and "-old page" in captured.out
    assert docs_api.main([]) == 0 and docs_api.main(["--check"]) == 0
    assert page.read_text() == docs_api.render()


def _privbench_imports(root: Path) -> set[str]:
    names = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "privbench":
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_example_third_party_plugin_imports_only_public_names():
    """plugins/privbench-coreset is written exactly as a third party would: all it imports is on the page."""
    imported = _privbench_imports(ROOT / "plugins" / "privbench-coreset")
    public = {f"{m}.{n}" for m in docs_api.PUBLIC for n in docs_api.public_names(m)}
    assert imported and imported <= public, sorted(imported - public)


def test_the_tutorial_and_the_readme_link_the_page():
    assert "(../api.md)" in (ROOT / "docs" / "plugins" / "writing.md").read_text()
    assert "(docs/api.md)" in (ROOT / "README.md").read_text()

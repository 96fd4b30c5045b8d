"""docs/suites.md documents every key the suite parser accepts, and its worked example is a valid suite."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from helpers import ROOT, assert_one_line_error
from privbench.errors import UserError
from privbench.plugins import get_registry
from privbench.suites import SUITE_TABLES, TOP_FIELDS, parse_suite, validate_suite
from privbench.utility import UtilityConfig

PAGE = ROOT / "docs" / "suites.md"


def _sections(text: str) -> dict[str, str]:
    """Heading line -> the text up to the next heading of the same or a higher level."""
    out = {}
    parts = re.split(r"(?m)^(#{2,3} .*)$", text)
    for heading, body in zip(parts[1::2], parts[2::2]):
        out[heading] = body
    return out


def _section(text: str, label: str) -> str:
    sections = _sections(text)
    matches = [body for heading, body in sections.items()
               if heading.startswith("## ") and (f"`{label}`" in heading or heading[3:].lower() == label)]
    assert len(matches) == 1, f"docs/suites.md needs one '## ' section for {label}; headings: {list(sections)}"
    return matches[0]


def _documented_keys(section: str) -> set[str]:
    return set(re.findall(r"(?m)^\| `([a-z_]+)` \|", section))


@pytest.mark.parametrize("label", list(SUITE_TABLES))
def test_every_accepted_key_of_each_table_is_documented(label):
    documented = _documented_keys(_section(PAGE.read_text(), label))
    accepted = {f.name for f in SUITE_TABLES[label]}
    assert accepted <= documented, f"docs/suites.md, {label}: undocumented key(s) {sorted(accepted - documented)}"
    assert documented <= accepted, f"docs/suites.md, {label}: documents key(s) the parser refuses: " \
                                   f"{sorted(documented - accepted)}"


def test_every_table_the_top_level_accepts_has_its_own_key_set():
    tables = {f.name for f in TOP_FIELDS if f.check({}) or f.check([{}])}  # a table, or an array of tables
    assert {"releases", "utility", "audit", "report"} <= tables
    for name in tables:
        assert f"[{name}]" in SUITE_TABLES or f"[[{name}]]" in SUITE_TABLES, name


def test_every_utility_option_is_documented():
    text = PAGE.read_text()
    section = next(body for heading, body in _sections(text).items() if heading == "### Utility options")
    documented = _documented_keys(section)
    options = {f.name for f in dataclasses.fields(UtilityConfig)}
    assert options == documented, (sorted(options - documented), sorted(documented - options))


@pytest.mark.parametrize("table, extra", [
    ("top level", 'colour = "red"\n'),
    ("[[releases]]", '[[releases]]\nmethod = "random"\nipc = 1\ncolour = "red"\n'),
    ("[utility]", '[utility]\ncolour = "red"\n'),
    ("[audit]", '[audit]\ncolour = "red"\n'),
    ("[report]", '[report]\ncolour = "red"\n'),
])
def test_each_table_refuses_an_unknown_key_in_one_line(cli, tmp_path, table, extra):
    suite = tmp_path / "bad.toml"
    base = 'datasets = ["digits"]\n' + ("" if table == "[[releases]]" else '[[releases]]\nmethod = "random"\nipc = 1\n')
    top = extra if table == "top level" else ""
    suite.write_text(top + base + ("" if table == "top level" else extra))
    accepted = ", ".join(sorted(f.name for f in SUITE_TABLES[table]))
    assert_one_line_error(cli("run", suite, "--out", tmp_path / "out"), "unknown key(s) colour",
                          f"valid keys: {accepted}")
    assert not (tmp_path / "out").exists()


def _example(tmp_path: Path) -> Path:
    blocks = re.findall(r"```toml\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert blocks, "docs/suites.md has no worked example"
    path = tmp_path / "my-suite.toml"
    path.write_text(blocks[-1])
    return path


def test_the_worked_example_is_a_valid_suite_using_every_table(tmp_path):
    suite = parse_suite(_example(tmp_path))
    validate_suite(suite, get_registry())
    for table in ("releases", "utility", "audit", "report"):
        assert table in suite.raw, table
    used = {key for entry in suite.raw["releases"] for key in entry}
    assert used == {f.name for f in SUITE_TABLES["[[releases]]"]}
    for table in ("utility", "audit"):
        assert set(suite.raw[table]) == {f.name for f in SUITE_TABLES[f"[{table}]"]}, table
    assert set(suite.raw["report"]) == {"show_private_images"}
    assert '# reproduces = "razi2025"' in suite.source.read_text()  # shown, not set: digits is not in the paper
    assert suite.metrics == ["ssim", "ncc"] and suite.utility_seeds == 2


def test_an_option_the_worked_example_misspells_would_be_refused(tmp_path):
    path = _example(tmp_path)
    path.write_text(path.read_text().replace("max_images = 100", "max_image = 100"))
    with pytest.raises(UserError, match="unknown option max_image"):
        validate_suite(parse_suite(path), get_registry())


def test_the_page_is_linked_from_the_docs_list_and_the_concepts():
    readme = (ROOT / "README.md").read_text()
    docs_list = readme[readme.index("## Documentation"):]
    docs_list = docs_list[:docs_list.index("\n## ", 1)]
    assert "(docs/suites.md)" in docs_list
    quick = readme[readme.index("## Quick start"):]
    quick = quick[:quick.index("\n## ", 1)]
    assert "suites.md" not in quick
    assert "(suites.md)" in (ROOT / "docs" / "concepts.md").read_text()
    assert "(suites.md)" in (ROOT / "docs" / "getting-started.md").read_text()

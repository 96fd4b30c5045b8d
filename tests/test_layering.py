"""The layering rules, read from the source: the core imports neither the command line nor a built-in plugin."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "privbench"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_core_never_imports_the_command_line_or_a_built_in_plugin():
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative.parts[1] == "cli" or relative.name == "__main__.py":
            continue
        for name in _imports(path):
            if name == "privbench.cli" or name.startswith(("privbench.cli.", "privbench_builtins")):
                offenders.append(f"{relative}: {name}")
    assert not offenders, offenders


def test_the_check_reads_imports_inside_functions_too(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from privbench.cli.common import make_run_context\n")
    assert "privbench.cli.common" in _imports(probe)

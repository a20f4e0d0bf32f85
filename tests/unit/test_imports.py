"""The package's layers: the core (``a2r_graph``'s top-level modules, ``nodes``, ``prompts``)
knows nothing of the doors that serve it (``a2r_graph.serving``)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "a2r_graph"
CORE_FOLDERS = {"nodes", "prompts"}


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def core_modules() -> list[Path]:
    return [
        path
        for path in PACKAGE.rglob("*.py")
        if path.parent == PACKAGE or path.relative_to(PACKAGE).parts[0] in CORE_FOLDERS
    ]


def test_the_core_imports_no_door():
    """Catches: a node, the graph or the context reaching into a2r_graph.serving (a core that
    only works behind one door)."""
    edges = [
        f"{path.relative_to(PACKAGE.parent)} imports {module}"
        for path in core_modules()
        if path.name != "cli.py"  # the command line is a door of its own
        for module in imported_modules(path)
        if module == "a2r_graph.serving" or module.startswith("a2r_graph.serving.")
    ]
    assert edges == []


def test_the_walk_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from a2r_graph.serving.guard import Guard\n")
    assert "a2r_graph.serving.guard" in imported_modules(module)

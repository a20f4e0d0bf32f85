"""The package's import graph, read from its source (``ast``): which of its modules each
module imports, deferred imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import a2r_graph

PACKAGE = Path(a2r_graph.__file__).parent
DOORS = "a2r_graph.serving"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool) -> list[str]:
    """The modules an import statement names (``from pkg import sub``: ``pkg.sub``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        anchor = importer.split(".")[: len(importer.split(".")) - node.level + is_package]
        base = ".".join([*anchor, *([base] if base else [])])
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def import_graph() -> dict[str, set[str]]:
    """Each module of the package -> the package's modules it imports, anywhere in its body
    (a deferred import inside a function still closes a loop). The parent packages Python
    imports on the way are not edges: every module would otherwise loop through
    ``a2r_graph/__init__``."""
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges[name] = {
            target
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for target in imported(node, name, is_package)
            if target in files and target != name
        }
    # ``from pkg import sub`` names pkg too; when sub is a module, pkg is only its parent
    for name, targets in edges.items():
        edges[name] = {t for t in targets if not any(o.startswith(f"{t}.") for o in targets)}
    return edges

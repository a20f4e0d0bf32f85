"""The package's layers: its modules import each other without a cycle (deferred imports
included), and the core (``a2r_graph``'s top-level modules, ``nodes``, ``prompts``) knows
nothing of the doors that serve it (``a2r_graph.serving``)."""

from __future__ import annotations

import ast
import graphlib

from tests.package_imports import DOORS, PACKAGE, import_graph, imported

CORE_FOLDERS = ("nodes", "prompts")


def cycle_in(edges: dict[str, set[str]]) -> list[str] | None:
    try:
        graphlib.TopologicalSorter(edges).prepare()
    except graphlib.CycleError as error:
        return list(reversed(error.args[1]))  # importer first: a -> b means a imports b
    return None


def test_no_module_of_the_package_imports_itself_back():
    cycle = cycle_in(import_graph())
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def is_core(module: str) -> bool:
    parts = module.split(".")
    return len(parts) <= 2 or parts[1] in CORE_FOLDERS


def test_the_package_root_holds_only_the_core():
    """Catches: a door (a server, the command line) dropped beside the core modules."""
    doors = {"server", "serve", "webapp", "runners", "openai_api", "mcp_tool", "tool", "cli"}
    assert not {path.stem for path in PACKAGE.glob("*.py")} & doors


def test_the_core_imports_no_door():
    """Catches: a node, the graph or the context reaching into a2r_graph.serving (a core that
    only works behind one door)."""
    edges = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if is_core(module)
        for target in targets
        if target == DOORS or target.startswith(f"{DOORS}.")
    ]
    assert edges == []


def test_a_cycle_is_named_importer_first():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    cycle = cycle_in(edges)
    assert cycle is not None and len(cycle) == 4 and cycle[0] == cycle[-1]
    assert all(cycle[i + 1] in edges[cycle[i]] for i in range(3))
    assert cycle_in({"a": {"b"}, "b": set()}) is None


def test_deferred_and_relative_imports_are_edges():
    tree = ast.parse("def f():\n    from .eval import command\n    import a2r_graph.cli\n")
    found = [
        target
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for target in imported(node, "a2r_graph.serve", False)
    ]
    assert found == ["a2r_graph.eval", "a2r_graph.eval.command", "a2r_graph.cli"]

"""Layers import downward (DESIGN.md rule 11): no import cycle between alignkit's subpackages, counting
imports inside functions too, and the bottom layers import nothing above them."""

from __future__ import annotations

import ast
from itertools import pairwise
from pathlib import Path

import alignkit

ROOT = Path(alignkit.__file__).parent


def _unit(path: Path) -> str:
    """The subpackage (or top-level module: cli, errors) a file belongs to."""
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def import_graph() -> dict[str, dict[str, str]]:
    """unit -> {imported unit: a file that imports it}."""
    graph: dict[str, dict[str, str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        unit = _unit(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "alignkit" and len(parts) > 1 and parts[1] != unit:
                    graph.setdefault(unit, {}).setdefault(parts[1], str(path.relative_to(ROOT)))
    return graph


def find_cycle(graph: dict[str, dict[str, str]]) -> list[str] | None:
    """A cycle of units as a path that starts and ends at the same unit, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished

    def visit(u: str, path: list[str]) -> list[str] | None:
        state[u] = 1
        for v in graph.get(u, {}):
            if state.get(v) == 1:
                return path[path.index(v):] + [v] if v in path else [u, v]
            if v not in state and (found := visit(v, path + [v])):
                return found
        state[u] = 2
        return None

    for u in sorted(graph):
        if u not in state and (found := visit(u, [u])):
            return found
    return None


def test_the_finder_finds_a_cycle():
    assert find_cycle({"a": {"b": ""}, "b": {"c": ""}, "c": {"a": ""}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": ""}, "b": {"c": ""}}) is None


def test_no_import_cycle_between_subpackages():
    graph = import_graph()
    cycle = find_cycle(graph)
    where = [f"{u} -> {v} ({graph[u][v]})" for u, v in pairwise(cycle)] if cycle else []
    assert cycle is None, "import cycle: " + "; ".join(where)


def test_bottom_layers_import_nothing_above_them():
    graph = import_graph()
    assert set(graph.get("algos", {})) == set(), graph.get("algos")  # torch only
    assert set(graph.get("errors", {})) == set()
    assert set(graph.get("config", {})) <= {"errors", "algos"}, graph.get("config")


def test_the_planner_never_imports_the_trainers():
    assert "trainers" not in import_graph()["planner"]

"""The import layering of ``processors`` and ``connectors``, read from the source (no imports).

- ``connectors`` never imports ``processors`` (a connector is usable without the service);
- ``processors.identity`` never imports ``processors.tenants``: a connection's settings carry
  its identity match policy, so tenants depend on identity, never the reverse (the match
  review API that needs both lives in :mod:`processors.tenants.matches`);
- nothing imports :mod:`processors.app` but the CLI (the app imports the agents);
- the packages and top-level modules of ``processors`` import one another without a cycle.

Every ``import`` counts, also one inside a function.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[str]:
    """Every absolute module name ``path`` imports (``from a import b`` yields a and a.b)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _graph(package: str) -> dict[str, set[str]]:
    """Module name -> the names it imports, for every module of ``package``."""
    return {
        _module_name(path): set(_imports(path)) for path in sorted((ROOT / package).rglob("*.py"))
    }


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(f"{package}.")


def _offenders(graph: Mapping[str, set[str]], source: str, target: str) -> list[str]:
    return sorted(
        f"{module} imports {name}"
        for module, names in graph.items()
        if _within(module, source)
        for name in names
        if _within(name, target)
    )


def _unit(module: str) -> str:
    """The package or top-level module of ``processors`` that ``module`` belongs to."""
    return ".".join(module.split(".")[:2])


def _cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _unit_edges(graph: Mapping[str, set[str]]) -> dict[str, set[str]]:
    units = {_unit(module) for module in graph}
    edges: dict[str, set[str]] = {unit: set() for unit in units}
    for module, names in graph.items():
        for name in names:
            target = _unit(name)
            if _within(name, "processors") and target in units and target != _unit(module):
                edges[_unit(module)].add(target)
    return edges


@pytest.fixture(scope="module")
def processors_graph() -> dict[str, set[str]]:
    return _graph("processors")


def test_connectors_never_import_processors() -> None:
    assert _offenders(_graph("connectors"), "connectors", "processors") == []


def test_identity_never_imports_tenants(processors_graph: dict[str, set[str]]) -> None:
    offenders = _offenders(processors_graph, "processors.identity", "processors.tenants")
    assert offenders == []


def test_only_the_cli_imports_the_app(processors_graph: dict[str, set[str]]) -> None:
    importers = {
        module
        for module, names in processors_graph.items()
        if module != "processors.app" and any(_within(n, "processors.app") for n in names)
    }
    assert importers <= {"processors.cli", "processors.__main__"}


def test_processors_packages_import_one_another_without_a_cycle(
    processors_graph: dict[str, set[str]],
) -> None:
    assert _cycles(_unit_edges(processors_graph)) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check above can fail: a two-package loop and a three-package loop are found."""
    graph = {
        "processors.a.x": {"processors.b.y"},
        "processors.b.y": {"processors.a"},
        "processors.c": {"processors.d.z"},
        "processors.d.z": {"processors.e"},
        "processors.e": {"processors.c", "processors.a.x"},
    }
    assert sorted(_cycles(_unit_edges(graph))) == [
        ["processors.a", "processors.b"],
        ["processors.c", "processors.d", "processors.e"],
    ]

"""The ``connectors.hubspot`` package: a pinned public surface, no service imports."""

from __future__ import annotations

import ast
import types
from pathlib import Path

import connectors.hubspot as package


def test_all_is_exactly_the_public_members() -> None:
    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }
    assert set(package.__all__) == public
    assert len(package.__all__) == len(public)


def test_the_package_imports_only_connectors_and_libraries() -> None:
    root = Path(package.__file__).parent
    imported: set[str] = set()
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
    assert "processors" not in imported
    assert "tests" not in imported

"""The pipedrive package's public surface, and its independence from ``processors``."""

from __future__ import annotations

import ast
import types
from pathlib import Path

import connectors.pipedrive as package


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


def test_the_package_never_imports_processors() -> None:
    root = Path(package.__file__).parent
    imported: list[str] = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                imported.append(node.module or "")
    assert imported
    assert not [name for name in imported if name.split(".")[0] == "processors"]


def test_the_package_has_the_fixed_module_names() -> None:
    root = Path(package.__file__).parent
    assert {p.name for p in root.glob("*.py")} == {
        "__init__.py",
        "api.py",
        "auth.py",
        "client.py",
        "config.py",
        "index.py",
        "payloads.py",
        "preview.py",
        "sink.py",
        "webhooks.py",
        "reader.py",
    }

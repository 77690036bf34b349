"""The public surface of each package is pinned by its ``__all__``."""

from __future__ import annotations

import ast
import importlib
import types
from pathlib import Path

import pytest

import connectors

PACKAGES = ["connectors.base", "connectors.webhook", "connectors.hubspot", "connectors.pipedrive"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_exactly_the_public_members(name: str) -> None:
    package = importlib.import_module(name)
    exported = set(package.__all__)
    public = {
        member
        for member, value in vars(package).items()
        if not member.startswith("_")
        and not isinstance(value, types.ModuleType)
        and member != "annotations"
    }
    assert exported == public
    assert len(package.__all__) == len(exported)


def test_connectors_never_import_processors() -> None:
    root = Path(connectors.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            offenders += [
                f"{path.relative_to(root)}: {n}"
                for n in names
                if n == "processors" or n.startswith("processors.")
            ]
    assert offenders == []

"""Nothing inbound can produce a Signal: proved from the source and the models.

The inbound path has two ends. The API's intake (``processors.inbound.intake*``) turns a
partner's request into ``InboundEvent`` records on ``integrations.inbound``, and nothing else;
it finds the connector's adapter through the registry. The consumer side (every other module of
``processors.inbound``, and the inbound agents) turns those records into bookmarks or reviews:

- the consumer modules, and every ``processors``
  module they import, transitively, never import the signal contracts, the routing (mapping
  domain events to exports), the deliveries or the publisher;
- from ``connectors`` they import only the base kit (the inbound records, the match keys),
  never a connector's exporters;
- no name they import is a Signal type;
- the only topics they name are the bookmarks, the match review and the dead letters;
- the bookmark and review models have no signal field.

The hypothesis test of the service (:mod:`tests.unit.inbound.test_service`) checks the same
at run time: whatever an inbound record holds, its only output is a bookmark, a review or a
dead letter.
"""

from __future__ import annotations

import ast
from pathlib import Path

from processors.inbound.models import Bookmark, BookmarkMatch, BookmarkSource, InboundReview
from tests.unit.test_layering import ROOT, _graph, _imports, _module_name, _within

FORBIDDEN = (
    "processors.contracts",
    "processors.routing",
    "processors.deliveries",
    "processors.publishing",
    "processors.samples",
    "processors.operations",
)
READER_MODULES = (
    "connectors.readers",
    "connectors.base.partner_read",
    "connectors.hubspot.reader",
    "connectors.pipedrive.reader",
)
"""The partner company readers: the only connector modules beyond the base records."""
ALLOWED_TOPICS = {"bookmarks", "match_review", "invalid_events", "inbound", "domain_events"}
"""Read: inbound, domain_events (the directory); written: the first three."""


def _intake_files() -> list[Path]:
    return sorted((ROOT / "processors" / "inbound").glob("intake*.py"))


def _inbound_files() -> list[Path]:
    """The consumer side: everything inbound but the intake."""
    return [
        *sorted(set((ROOT / "processors" / "inbound").rglob("*.py")) - set(_intake_files())),
        ROOT / "processors" / "agents" / "inbound.py",
    ]


def _reached(files: list[Path] | None = None) -> set[str]:
    graph = _graph("processors")
    todo = [_module_name(path) for path in (_inbound_files() if files is None else files)]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(name for name in graph.get(module, ()) if name in graph)
    return seen


def test_the_walk_sees_the_inbound_modules() -> None:
    reached = _reached()
    assert "processors.inbound.service" in reached
    assert "processors.agents.inbound" in reached
    assert "processors.identity.matching" in reached


def test_inbound_reaches_no_signal_contract_routing_or_delivery() -> None:
    offenders = sorted(
        module for module in _reached() if any(_within(module, f) for f in FORBIDDEN)
    )
    assert offenders == []


def test_inbound_imports_only_the_connector_base_kit() -> None:
    allowed = {"connectors.base.inbound", "connectors.base.matchkeys", *READER_MODULES}
    for path in _inbound_files():
        for name in _imports(path):
            if _within(name, "connectors"):
                assert any(_within(name, a) for a in allowed), f"{path.name} imports {name}"


def _connector_reach(modules: tuple[str, ...]) -> set[str]:
    """Every ``connectors`` module ``modules`` import, transitively (themselves included)."""
    graph = _graph("connectors")
    todo, seen = list(modules), set[str]()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(name for name in graph.get(module, ()) if name in graph)
    return seen


def _source(module: str) -> Path:
    path = ROOT / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def test_the_reader_modules_reach_no_exporter_mapping_sink_or_signal() -> None:
    """What the readers import, transitively: the connector kit's base records, HTTP, OAuth
    and rate-limit helpers, the connector's configuration and its token sources (``auth``:
    OAuth connections are read with the delivery sink's own token source class); never
    ``processors`` (so no signal contract, routing or delivery), the registry, a sink, an
    exporter or a mapping.

    (Importing a connector's module runs its package's ``__init__``, which names the sink
    class; the inbound side already loads every connector through
    ``processors.tenants.models`` and the registry, and no connector module imports
    ``processors``: loading is not reaching. What this test pins is the readers' own code.)
    """
    reached = _connector_reach(READER_MODULES)
    assert set(READER_MODULES) <= reached, "the walk sees the readers"
    assert "connectors.hubspot.config" in reached
    assert "connectors.base.oauth" in reached
    assert {"connectors.hubspot.auth", "connectors.pipedrive.auth"} <= reached
    for module in reached:
        assert "signal" not in module.lower(), module
        if module.startswith(("connectors.hubspot", "connectors.pipedrive")):
            assert module.rsplit(".", 1)[1] in {"reader", "config", "auth"}, module
        assert module != "connectors.registry", "the registry imports every sink"
        assert module not in {"connectors.base", "connectors.base.sink"}, module
        for name in _imports(_source(module)):
            assert not _within(name, "processors"), f"{module} imports {name}"


def test_inbound_imports_no_signal_type() -> None:
    for path in _inbound_files():
        for name in _imports(path):
            assert "signal" not in name.lower(), f"{path.name} imports {name}"


def test_inbound_names_only_its_own_topics() -> None:
    for path in _inbound_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        prose = {
            id(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Attribute | ast.Name)
                and (getattr(node.value, "attr", None) or getattr(node.value, "id", None))
                in {"_topics", "topics"}
            ):
                assert node.attr in ALLOWED_TOPICS | {"prefix"}, f"{path.name}: {node.attr}"
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in prose
            ):
                assert "integrations.exports" not in node.value
                assert "queast.domain-events" not in node.value


def test_the_bookmark_and_review_models_have_no_signal_field() -> None:
    for model in (Bookmark, BookmarkMatch, BookmarkSource, InboundReview):
        assert not any("signal" in field for field in model.model_fields), model.__name__


def test_the_intake_reaches_no_signal_code_and_writes_only_the_inbound_topic() -> None:
    assert _intake_files(), "the walk sees the intake"
    reached = _reached(_intake_files())
    assert "processors.inbound.intake" in reached
    offenders = sorted(m for m in reached if any(_within(m, f) for f in FORBIDDEN))
    assert offenders == []
    for path in _intake_files():
        for name in _imports(path):
            if _within(name, "connectors"):
                assert _within(name, "connectors.base") or _within(name, "connectors.registry"), (
                    name
                )
            assert "signal" not in name.lower(), f"{path.name} imports {name}"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Attribute | ast.Name)
                and (getattr(node.value, "attr", None) or getattr(node.value, "id", None))
                in {"_topics", "topics"}
            ):
                assert node.attr in {"inbound", "prefix"}, f"{path.name}: {node.attr}"

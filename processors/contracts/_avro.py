"""Small helpers for walking parsed Avro schemas (private to the contract package).

fastavro's parsed form spells every named type by its full name: the first
occurrence is the definition, later occurrences are the name as a string.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from fastavro import parse_schema
from fastavro.schema import SchemaParseException, UnknownType

from processors.contracts.errors import ContractSchemaError

PRIMITIVES: Final = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)
NAMED_KINDS: Final = frozenset({"record", "error", "enum", "fixed"})

NamedTypes = dict[str, Mapping[str, Any]]


def parse(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Parse a raw (or already parsed) record schema with fastavro.

    Raises :class:`ContractSchemaError` when fastavro rejects the schema.
    """
    try:
        parsed = parse_schema(dict(schema))
    except (SchemaParseException, UnknownType, ValueError, TypeError, KeyError) as exc:
        raise ContractSchemaError(f"invalid Avro schema: {exc}") from exc
    if not isinstance(parsed, dict) or parsed.get("type") not in ("record", "error"):
        raise ContractSchemaError("a contract schema must be an Avro record")
    return parsed


def named_types(schema: object) -> NamedTypes:
    """Map the full name of every named type defined in a parsed schema to its definition."""
    table: NamedTypes = {}
    _collect(schema, table)
    return table


def _collect(node: object, table: NamedTypes) -> None:
    if isinstance(node, list):
        for branch in node:
            _collect(branch, table)
        return
    if not isinstance(node, Mapping):
        return
    kind = node.get("type")
    if kind in NAMED_KINDS:
        name = node.get("name")
        if not isinstance(name, str) or name in table:
            return
        table[name] = node
        if kind in ("record", "error"):
            for field in node.get("fields", ()):
                _collect(field.get("type"), table)
    elif kind == "array":
        _collect(node.get("items"), table)
    elif kind == "map":
        _collect(node.get("values"), table)
    elif isinstance(kind, list | Mapping):
        _collect(kind, table)


def resolve(node: object, named: NamedTypes) -> object:
    """Replace a reference to a named type by its definition; other nodes pass through."""
    if isinstance(node, str) and node in named:
        return named[node]
    return node


def kind_of(node: object) -> str:
    """Avro type of a resolved schema node: a primitive name, "union" or a complex kind."""
    if isinstance(node, list):
        return "union"
    if isinstance(node, str):
        return node
    if isinstance(node, Mapping):
        kind = node.get("type")
        if isinstance(kind, str):
            return kind
        return kind_of(kind)
    raise ContractSchemaError(f"not an Avro schema node: {type(node).__name__}")


def describe(node: object, named: NamedTypes) -> str:
    """Short human-readable spelling of a schema node, e.g. "null | string" or "array<string>"."""
    if isinstance(node, str) and node in named:
        return node.rsplit(".", 1)[-1]
    if isinstance(node, list):
        return " | ".join(describe(branch, named) for branch in node)
    kind = kind_of(node)
    if isinstance(node, Mapping):
        if kind == "array":
            return f"array<{describe(node.get('items'), named)}>"
        if kind == "map":
            return f"map<{describe(node.get('values'), named)}>"
        name = node.get("name")
        if kind in NAMED_KINDS and isinstance(name, str):
            return name.rsplit(".", 1)[-1]
    return kind

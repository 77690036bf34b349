"""Representative records generated from a schema.

Called by the compatibility check (and by tests) to exercise fastavro schema
resolution with real data: resolution of unions and enums happens per value,
so the records cover every union branch and every enum symbol.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

from processors.contracts import _avro
from processors.contracts.errors import ContractSchemaError
from processors.contracts.schemas import ContractSchema

__all__ = ["representative_records"]

_PRIMITIVE_SAMPLES: Final[dict[str, object]] = {
    "null": None,
    "int": 7,
    "long": 1_764_133_200_000,
    "float": 1.5,
    "double": 0.25,
    "bytes": b"\x00\x01",
}


def representative_records(
    schema: ContractSchema | Mapping[str, Any],
) -> list[dict[str, object]]:
    """Records that fit ``schema`` (a contract or a raw/parsed record schema).

    Record 0 is minimal: optional fields null, arrays and maps empty, the first
    enum symbol. Record 1 populates everything (one item per array or map, the
    first non-null union branch). Further records walk the remaining union
    branches and enum symbols, so together they use each of them at least once.

    Raises :class:`ContractSchemaError` for an invalid or recursive schema.
    """
    parsed = schema.parsed if isinstance(schema, ContractSchema) else _avro.parse(schema)
    named = _avro.named_types(parsed)
    count = max(2, _widest(parsed, named, set()))
    records = []
    for variant in range(count):
        record = _sample(parsed, named, variant, ())
        if not isinstance(record, dict):  # pragma: no cover - parse() guarantees a record
            raise ContractSchemaError("a contract schema must be an Avro record")
        records.append(record)
    return records


def _widest(node: object, named: _avro.NamedTypes, seen: set[str]) -> int:
    """How many variants are needed to use every union branch and enum symbol."""
    if isinstance(node, str):
        if node not in named or node in seen:
            return 0
        seen.add(node)
        return _widest(named[node], named, seen)
    if isinstance(node, list):
        own = len(node) + 1  # variant 0 is null; variants 1.. walk the other branches
        return max([own, *(_widest(branch, named, seen) for branch in node)])
    if not isinstance(node, Mapping):
        return 0
    name = node.get("name")
    if isinstance(name, str):
        seen.add(name)
    kind = _avro.kind_of(node)
    if kind == "enum":
        return len(node["symbols"])
    children: list[object] = [field["type"] for field in node.get("fields", ())]
    children.extend(node[key] for key in ("items", "values") if key in node)
    return max([0, *(_widest(child, named, seen) for child in children)])


def _sample(node: object, named: _avro.NamedTypes, variant: int, stack: tuple[str, ...]) -> object:
    if isinstance(node, str) and node in named:
        if node in stack:
            raise ContractSchemaError(f"recursive type {node} is not supported")
        return _sample(named[node], named, variant, (*stack, node))
    if isinstance(node, list):
        return _sample(_pick_branch(node, variant), named, variant, stack)
    kind = _avro.kind_of(node)
    if isinstance(node, Mapping):
        logical = node.get("logicalType")
        if logical in _LOGICAL_SAMPLES:
            return _LOGICAL_SAMPLES[logical]
        complex_sampler = _COMPLEX_SAMPLERS.get(kind)
        if complex_sampler is not None:
            return complex_sampler(node, named, variant, stack)
    if kind == "boolean":
        return variant % 2 == 1
    if kind == "string":
        return f"sample-{variant}"
    if kind in _PRIMITIVE_SAMPLES:
        return _PRIMITIVE_SAMPLES[kind]
    raise ContractSchemaError(f"cannot generate a value for Avro type {kind!r}")


def _sample_record(
    node: Mapping[str, Any], named: _avro.NamedTypes, variant: int, stack: tuple[str, ...]
) -> object:
    return {
        field["name"]: _sample(field["type"], named, variant, stack) for field in node["fields"]
    }


def _sample_enum(
    node: Mapping[str, Any], named: _avro.NamedTypes, variant: int, stack: tuple[str, ...]
) -> object:
    symbols = node["symbols"]
    return symbols[variant % len(symbols)]


def _sample_array(
    node: Mapping[str, Any], named: _avro.NamedTypes, variant: int, stack: tuple[str, ...]
) -> object:
    return [] if variant == 0 else [_sample(node["items"], named, variant, stack)]


def _sample_map(
    node: Mapping[str, Any], named: _avro.NamedTypes, variant: int, stack: tuple[str, ...]
) -> object:
    return {} if variant == 0 else {"key": _sample(node["values"], named, variant, stack)}


def _sample_fixed(
    node: Mapping[str, Any], named: _avro.NamedTypes, variant: int, stack: tuple[str, ...]
) -> object:
    return bytes(node["size"])


_Sampler = Callable[[Mapping[str, Any], _avro.NamedTypes, int, tuple[str, ...]], object]
_COMPLEX_SAMPLERS: Final[dict[str, _Sampler]] = {
    "record": _sample_record,
    "error": _sample_record,
    "enum": _sample_enum,
    "array": _sample_array,
    "map": _sample_map,
    "fixed": _sample_fixed,
}
_LOGICAL_SAMPLES: Final[dict[str, object]] = {
    "decimal": Decimal(1),
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def _pick_branch(branches: list[object], variant: int) -> object:
    non_null = [branch for branch in branches if branch != "null"]
    if not non_null or (variant == 0 and len(non_null) < len(branches)):
        return "null"
    if len(non_null) == len(branches):
        return non_null[variant % len(non_null)]
    return non_null[(variant - 1) % len(non_null)]

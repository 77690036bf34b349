"""Path-aware record validation against a parsed contract schema (private).

It exists for its error messages: fastavro's own validation names a field by
its record type only, this names it by path (``reasons[0].code``). Messages name
types, never values, because records carry personal data. Logical types are
left to fastavro's writer, which always runs after this one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeGuard

from processors.contracts import _avro
from processors.contracts.errors import ContractSchemaError

_INT_RANGES: Final = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a record does not fit its schema; ``path`` is ``""`` for the record itself."""

    path: str
    message: str


def find_problem(
    schema: Mapping[str, object], record: object, *, named: _avro.NamedTypes | None = None
) -> Problem | None:
    """Return the first problem of ``record`` against the parsed record ``schema``, if any.

    ``named`` is the schema's named-type table when the caller has it cached.
    """
    return _check(schema, record, "", _avro.named_types(schema) if named is None else named)


def _check(node: object, datum: object, path: str, named: _avro.NamedTypes) -> Problem | None:
    node = _avro.resolve(node, named)
    if isinstance(node, list):
        return _check_union(node, datum, path, named)
    if isinstance(node, Mapping) and "logicalType" in node:
        return None
    kind = _avro.kind_of(node)
    if kind in _avro.PRIMITIVES:
        return None if _fits_primitive(kind, datum) else _mismatch(node, datum, path, named)
    checker = _COMPLEX_CHECKERS.get(kind)
    if checker is None or not isinstance(node, Mapping):
        return Problem(path, f"unsupported schema type {kind!r}")
    return checker(node, datum, path, named)


def _check_union(
    branches: list[object], datum: object, path: str, named: _avro.NamedTypes
) -> Problem | None:
    if any(_check(branch, datum, path, named) is None for branch in branches):
        return None
    non_null = [branch for branch in branches if branch != "null"]
    if datum is not None and len(non_null) == 1:
        # An optional value: report what is wrong inside it, not just "no branch matched".
        return _check(non_null[0], datum, path, named)
    return _mismatch(branches, datum, path, named)


def _check_record(
    node: Mapping[str, Any], datum: object, path: str, named: _avro.NamedTypes
) -> Problem | None:
    if not isinstance(datum, Mapping):
        return _mismatch(node, datum, path, named)
    fields = node["fields"]
    names = {field["name"] for field in fields}
    for key in datum:
        if key not in names:
            return Problem(
                _join(path, str(key)), f"unknown field, not in {_avro.describe(node, named)}"
            )
    for field in fields:
        where = _join(path, field["name"])
        if field["name"] not in datum:
            if "default" in field:
                continue
            return Problem(where, "missing required field")
        problem = _check(field["type"], datum[field["name"]], where, named)
        if problem is not None:
            return problem
    return None


def _check_enum(
    node: Mapping[str, Any], datum: object, path: str, named: _avro.NamedTypes
) -> Problem | None:
    symbols = node["symbols"]
    if isinstance(datum, str) and datum in symbols:
        return None
    got = "null" if datum is None else type(datum).__name__
    if isinstance(datum, str):
        got = "another string"
    return Problem(path, f"expected a {_avro.describe(node, named)} symbol {symbols}, got {got}")


def _check_array(
    node: Mapping[str, Any], datum: object, path: str, named: _avro.NamedTypes
) -> Problem | None:
    if not _is_sequence(datum):
        return _mismatch(node, datum, path, named)
    for index, item in enumerate(datum):
        problem = _check(node["items"], item, f"{path}[{index}]", named)
        if problem is not None:
            return problem
    return None


def _check_map(
    node: Mapping[str, Any], datum: object, path: str, named: _avro.NamedTypes
) -> Problem | None:
    if not isinstance(datum, Mapping):
        return _mismatch(node, datum, path, named)
    for key, value in datum.items():
        if not isinstance(key, str):
            return Problem(path, f"map keys must be strings, got {type(key).__name__}")
        problem = _check(node["values"], value, f"{path}[{key!r}]", named)
        if problem is not None:
            return problem
    return None


def _check_fixed(
    node: Mapping[str, Any], datum: object, path: str, named: _avro.NamedTypes
) -> Problem | None:
    if isinstance(datum, bytes | bytearray) and len(datum) == node["size"]:
        return None
    return Problem(path, f"expected {node['size']} bytes for {_avro.describe(node, named)}")


_Checker = Callable[[Mapping[str, Any], object, str, _avro.NamedTypes], Problem | None]
_COMPLEX_CHECKERS: Final[dict[str, _Checker]] = {
    "record": _check_record,
    "error": _check_record,
    "enum": _check_enum,
    "array": _check_array,
    "map": _check_map,
    "fixed": _check_fixed,
}


def _is_int_in(kind: str, datum: object) -> bool:
    low, high = _INT_RANGES[kind]
    return isinstance(datum, int) and not isinstance(datum, bool) and low <= datum <= high


_PRIMITIVE_CHECKS: Final[dict[str, Callable[[object], bool]]] = {
    "null": lambda datum: datum is None,
    "boolean": lambda datum: isinstance(datum, bool),
    "int": lambda datum: _is_int_in("int", datum),
    "long": lambda datum: _is_int_in("long", datum),
    "float": lambda datum: isinstance(datum, int | float) and not isinstance(datum, bool),
    "double": lambda datum: isinstance(datum, int | float) and not isinstance(datum, bool),
    "string": lambda datum: isinstance(datum, str),
    "bytes": lambda datum: isinstance(datum, bytes | bytearray),
}


def _fits_primitive(kind: str, datum: object) -> bool:
    return _PRIMITIVE_CHECKS[kind](datum)


def _is_sequence(datum: object) -> TypeGuard[Sequence[object]]:
    return isinstance(datum, Sequence) and not isinstance(datum, str | bytes | bytearray)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _mismatch(node: object, datum: object, path: str, named: _avro.NamedTypes) -> Problem:
    got = "null" if datum is None else type(datum).__name__
    if (
        isinstance(datum, int)
        and not isinstance(datum, bool)
        and _avro.kind_of(node) in _INT_RANGES
    ):
        got = f"{got} out of range"
    return Problem(path, f"expected {_avro.describe(node, named)}, got {got}")


Fits = Callable[[object], bool]
"""Whether a datum fits a schema node: :func:`find_problem`'s verdict without its message."""


def compile_fits(schema: Mapping[str, object], *, named: _avro.NamedTypes | None = None) -> Fits:
    """A check of whole records against ``schema``, built once: ``fits(record)`` is true
    exactly when ``find_problem(schema, record)`` is ``None``.

    Encoding runs it on every record and asks :func:`find_problem` for the message only when
    it says no: the tree walk interprets the schema per record, this walks closures built for
    it. Each node kind follows the rule of its ``_check_*`` function above. ``schema`` is a
    parsed schema (:func:`processors.contracts._avro.parse`); a node no parsed schema has (a
    ``type`` that is itself a schema) raises :class:`ContractSchemaError`.
    """
    table = _avro.named_types(schema) if named is None else named
    compiled: dict[str, Fits] = {}

    def build(node: object) -> Fits:
        if isinstance(node, str) and node in table:
            return by_name(node)
        if isinstance(node, list):
            branches = [build(branch) for branch in node]
            return lambda datum: any(fits(datum) for fits in branches)
        if isinstance(node, Mapping) and "logicalType" in node:
            return lambda _datum: True
        kind = node.get("type") if isinstance(node, Mapping) else node
        if not isinstance(kind, str):
            msg = f"not a node of a parsed schema: type {type(kind).__name__}"
            raise ContractSchemaError(msg)
        primitive = _PRIMITIVE_CHECKS.get(kind)
        if primitive is not None:
            return primitive
        if not isinstance(node, Mapping):
            return lambda _datum: False  # an unknown type name: find_problem says unsupported
        if kind in ("record", "error"):
            return record(node)
        if kind == "enum":
            symbols = frozenset(node["symbols"])
            return lambda datum: isinstance(datum, str) and datum in symbols
        if kind == "array":
            items = build(node["items"])
            return lambda datum: _is_sequence(datum) and all(items(item) for item in datum)
        if kind == "map":
            values = build(node["values"])
            return lambda datum: (
                isinstance(datum, Mapping)
                and all(isinstance(key, str) and values(value) for key, value in datum.items())
            )
        if kind == "fixed":
            size = node["size"]
            return lambda datum: isinstance(datum, bytes | bytearray) and len(datum) == size
        return lambda _datum: False

    def by_name(name: str) -> Fits:
        # late-bound, so a record that refers to itself compiles once
        if name not in compiled:

            def late(datum: object) -> bool:
                return compiled[name](datum)

            compiled[name] = late
            compiled[name] = build(table[name])
        return compiled[name]

    def record(node: Mapping[str, Any]) -> Fits:
        names = frozenset(field["name"] for field in node["fields"])
        fields = [
            (field["name"], "default" in field, build(field["type"])) for field in node["fields"]
        ]

        def fits(datum: object) -> bool:
            if not isinstance(datum, Mapping) or not names.issuperset(datum):
                return False
            for name, optional, check in fields:
                if name in datum:
                    if not check(datum[name]):
                        return False
                elif not optional:
                    return False
            return True

        return fits

    return build(schema)

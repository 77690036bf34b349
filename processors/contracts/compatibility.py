"""Schema compatibility checks, by exercising fastavro schema resolution.

Rather than re-implementing the Avro resolution rules, the check writes
representative records with the writer schema and reads them back with the
reader schema; whatever fastavro refuses to resolve is incompatible. Called by
the contract tests for every bundled family, and usable before adding a new
schema version.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from itertools import combinations
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from processors.contracts import _avro
from processors.contracts.errors import IncompatibleSchemaError
from processors.contracts.samples import representative_records
from processors.contracts.schemas import ContractRegistry, ContractSchema

__all__ = ["check_additive", "check_compatible", "check_family_compatibility"]

SchemaLike = ContractSchema | Mapping[str, Any]


def check_compatible(writer: SchemaLike, reader: SchemaLike) -> None:
    """Check that data written with ``writer`` can be read with ``reader``.

    Both may be a :class:`ContractSchema` or a raw/parsed Avro record schema.
    Returns ``None`` when every representative record resolves; raises
    :class:`IncompatibleSchemaError` naming both schemas and fastavro's reason
    otherwise (``ContractSchemaError`` if either schema is invalid).
    """
    writer_parsed, writer_label = _parsed(writer)
    reader_parsed, reader_label = _parsed(reader)
    for index, record in enumerate(representative_records(writer_parsed)):
        buffer = io.BytesIO()
        schemaless_writer(buffer, writer_parsed, record)
        buffer.seek(0)
        try:
            schemaless_reader(buffer, writer_parsed, reader_parsed)
        except Exception as exc:
            sample = "minimal" if index == 0 else f"populated #{index}"
            raise IncompatibleSchemaError(
                f"data written with {writer_label} cannot be read with {reader_label}: "
                f"{str(exc) or type(exc).__name__} ({sample} sample record)"
            ) from exc


def check_additive(older: SchemaLike, newer: SchemaLike) -> None:
    """Check that ``newer`` keeps every named type, field and enum symbol of ``older``.

    Resolution alone accepts removing a field that has a default; the contract
    rule within a major version does not. Raises :class:`IncompatibleSchemaError`
    listing everything that was removed.
    """
    older_parsed, older_label = _parsed(older)
    newer_parsed, newer_label = _parsed(newer)
    old_types = _avro.named_types(older_parsed)
    new_types = _avro.named_types(newer_parsed)
    removed: list[str] = []
    for name, old in old_types.items():
        new = new_types.get(name)
        short = name.rsplit(".", 1)[-1]
        if new is None or new.get("type") != old.get("type"):
            removed.append(f"type {short}")
            continue
        new_fields = {field["name"] for field in new.get("fields", ())}
        removed.extend(
            f"field {short}.{field['name']}"
            for field in old.get("fields", ())
            if field["name"] not in new_fields
        )
        new_symbols = set(new.get("symbols", ()))
        removed.extend(
            f"symbol {short}.{symbol}"
            for symbol in old.get("symbols", ())
            if symbol not in new_symbols
        )
    if removed:
        raise IncompatibleSchemaError(
            f"{newer_label} removes what {older_label} has: {', '.join(removed)}"
        )


def check_family_compatibility(registry: ContractRegistry) -> None:
    """Check every pair of versions within the same major of every family.

    Each pair must be compatible both ways and the newer version must be
    additive. Raises one :class:`IncompatibleSchemaError` listing every failure.
    """
    failures: list[str] = []
    for family in registry.families():
        majors = sorted({contract.major for contract in registry.versions(family)})
        for major in majors:
            for older, newer in combinations(registry.versions(family, major=major), 2):
                for check, first, second in (
                    (check_compatible, older, newer),
                    (check_compatible, newer, older),
                    (check_additive, older, newer),
                ):
                    try:
                        check(first, second)
                    except IncompatibleSchemaError as exc:
                        failures.append(str(exc))
    if failures:
        raise IncompatibleSchemaError(
            f"{len(failures)} compatibility failure(s):\n" + "\n".join(failures)
        )


def _parsed(schema: SchemaLike) -> tuple[dict[str, Any], str]:
    if isinstance(schema, ContractSchema):
        return schema.parsed, schema.label
    parsed = _avro.parse(schema)
    return parsed, str(parsed.get("name", "schema"))

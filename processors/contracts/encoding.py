"""Avro single-object encoding of contract records.

Wire format (Avro specification, "Single object encoding"): the marker
``C3 01``, the 8-byte little-endian CRC-64-AVRO fingerprint of the writer
schema's Parsing Canonical Form, then the Avro binary encoding of the record.
Producers call :func:`encode` right before a record leaves the process;
consumers call :func:`decode` on every message they read.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any, Final

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError

from processors.contracts import _avro
from processors.contracts._validation import Fits, compile_fits, find_problem
from processors.contracts.errors import (
    ContractDecodingError,
    ContractEncodingError,
    UnknownContractError,
)
from processors.contracts.schemas import ContractRegistry, ContractSchema

__all__ = ["HEADER_SIZE", "MAGIC", "decode", "encode", "peek_fingerprint", "to_json_dict"]

MAGIC: Final = b"\xc3\x01"
HEADER_SIZE: Final = len(MAGIC) + 8


_NAMED_TYPES: dict[bytes, _avro.NamedTypes] = {}
_FITS: dict[bytes, Fits] = {}


def _named(schema: ContractSchema) -> _avro.NamedTypes:
    named = _NAMED_TYPES.get(schema.fingerprint)
    if named is None:
        named = _NAMED_TYPES[schema.fingerprint] = _avro.named_types(schema.parsed)
    return named


def _check(schema: ContractSchema, record: Mapping[str, object]) -> None:
    """Raise :class:`ContractEncodingError` if ``record`` does not fit ``schema``.

    The check built once per schema (:func:`compile_fits`) decides; the path-aware walk runs
    only for a record it refuses, to say where and why.
    """
    fits = _FITS.get(schema.fingerprint)
    if fits is None:
        fits = _FITS[schema.fingerprint] = compile_fits(schema.parsed, named=_named(schema))
    if fits(record):
        return
    problem = find_problem(schema.parsed, record, named=_named(schema))
    if problem is not None:
        where = f"field {problem.path!r}" if problem.path else "record"
        raise ContractEncodingError(
            f"{schema.label}: {where}: {problem.message}", field=problem.path or None
        )


def encode(schema: ContractSchema, record: Mapping[str, object]) -> bytes:
    """Validate ``record`` against ``schema`` and return its single-object encoding.

    Fields that have a default may be left out and are written with it. The
    record's ``schema_version`` must be ``schema.schema_version``. Unknown keys
    are rejected rather than silently dropped.

    Raises :class:`ContractEncodingError` (with ``field`` set to the field path
    where known) when the record does not fit the contract; nothing is written.
    """
    version = record.get("schema_version")
    if version != schema.schema_version:
        raise ContractEncodingError(
            f"{schema.label}: field 'schema_version' must be {schema.schema_version!r} "
            f"for this schema, got {version!r}",
            field="schema_version",
        )
    buffer = io.BytesIO()
    buffer.write(MAGIC)
    buffer.write(schema.fingerprint)
    # fastavro's writer lets some mismatches through (a bool or float into a long, a string
    # into an array of strings), so the schema check runs first, for every record.
    _check(schema, record)
    try:
        schemaless_writer(buffer, schema.parsed, record, strict_allow_default=True)
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ContractEncodingError(
            f"{schema.label}: Avro writer failed: {type(exc).__name__}"
        ) from None
    return buffer.getvalue()


def peek_fingerprint(data: bytes) -> bytes:
    """Return the 8-byte writer fingerprint of a single-object encoded message.

    Called to route or log a message without decoding it. Raises
    :class:`ContractDecodingError` when the header is missing or wrong.
    """
    if len(data) < HEADER_SIZE:
        raise ContractDecodingError(
            f"truncated single-object header: {len(data)} bytes, "
            f"need at least {HEADER_SIZE} (marker C3 01 + 8-byte fingerprint)"
        )
    if data[: len(MAGIC)] != MAGIC:
        raise ContractDecodingError(
            f"not Avro single-object encoded: marker is {data[: len(MAGIC)].hex(' ')}, "
            "expected c3 01"
        )
    return bytes(data[len(MAGIC) : HEADER_SIZE])


def decode(
    data: bytes, *, registry: ContractRegistry, reader: ContractSchema | None = None
) -> tuple[ContractSchema, dict[str, object]]:
    """Decode a single-object encoded record; returns ``(writer schema, record)``.

    The writer schema is looked up in ``registry`` by the fingerprint in the
    header; the record is resolved to ``reader`` (default: the latest version
    of the writer's family within the writer's major), so it has the reader's
    fields, with defaults for fields the writer did not know. Enum values come
    back as plain ``str``.

    Raises :class:`ContractDecodingError` for a bad marker, an unknown
    fingerprint, truncated or trailing bytes, a corrupt body, a reader of another
    family, or a writer/reader pair that fastavro cannot resolve.
    """
    fingerprint = peek_fingerprint(data)
    try:
        writer = registry.by_fingerprint(fingerprint)
    except UnknownContractError:
        raise ContractDecodingError(
            f"unknown schema fingerprint {fingerprint.hex()}: no loaded contract has it "
            "(written with a schema this service does not bundle, or not a Queast contract)"
        ) from None
    if reader is None:
        reader = registry.latest(writer.family, major=writer.major)
    elif reader.family != writer.family:
        raise ContractDecodingError(
            f"{writer.label} data cannot be read as {reader.label}: different families"
        )
    buffer = io.BytesIO(data)
    buffer.seek(HEADER_SIZE)
    try:
        datum = schemaless_reader(buffer, writer.parsed, reader.parsed)
    except SchemaResolutionError as exc:
        raise ContractDecodingError(
            f"{writer.label} data cannot be read as {reader.label}: {exc}"
        ) from exc
    except EOFError as exc:
        raise ContractDecodingError(
            f"truncated {writer.label} record: the body ends early ({len(data)} bytes in all)"
        ) from exc
    except Exception as exc:
        raise ContractDecodingError(
            f"corrupt {writer.label} record body: {type(exc).__name__}"
        ) from exc
    trailing = len(data) - buffer.tell()
    if trailing:
        raise ContractDecodingError(
            f"corrupt {writer.label} record: {trailing} trailing bytes after the record"
        )
    if not isinstance(datum, dict):
        raise ContractDecodingError(f"corrupt {writer.label} record: body is not a record")
    return writer, datum


def to_json_dict(record: Mapping[str, object]) -> dict[str, object]:
    """Return ``record`` as plain JSON data (dict, list, str, int, float, bool, None).

    Called before a record goes into a JSON webhook body. Enum members become
    their values, tuples become lists. Raises :class:`ContractEncodingError` for
    values JSON cannot carry faithfully (bytes, NaN, infinities, non-str keys).
    """
    return _object_to_json(record, "")


def _object_to_json(value: Mapping[Any, object], path: str) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise ContractEncodingError(
                f"field {path!r}: JSON object keys must be strings, got {type(key).__name__}",
                field=path,
            )
        result[key] = _to_json(item, f"{path}.{key}" if path else key)
    return result


def _to_json(value: object, path: str) -> object:
    if isinstance(value, Enum):
        return _to_json(value.value, path)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ContractEncodingError(
                f"field {path!r}: non-finite float has no JSON form", field=path
            )
        return value
    if isinstance(value, Mapping):
        return _object_to_json(value, path)
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [_to_json(item, f"{path}[{index}]") for index, item in enumerate(value)]
    raise ContractEncodingError(
        f"field {path!r}: {type(value).__name__} has no JSON form", field=path
    )

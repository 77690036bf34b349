"""HubSpot request bodies for batch writes, notes, archives and associations, and the
exact bytes sent for a body (:func:`encode_json`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

__all__ = [
    "COMPANY_ASSOCIATION_TYPE_NOTE",
    "CONTACT_ASSOCIATION_TYPE_NOTE",
    "archive_body",
    "associate_default_body",
    "batch_update_body",
    "batch_upsert_body",
    "encode_json",
    "notes_create_body",
]

COMPANY_ASSOCIATION_TYPE_NOTE: Final[int] = 190
"""HUBSPOT_DEFINED association type note -> company."""
CONTACT_ASSOCIATION_TYPE_NOTE: Final[int] = 202
"""HUBSPOT_DEFINED association type note -> contact."""


def batch_upsert_body(
    inputs: Sequence[tuple[str, str, Mapping[str, str]]], *, id_property: str
) -> dict[str, Any]:
    """``POST .../batch/upsert``: ``(trace id, id value, properties)`` per input."""
    return {
        "inputs": [
            {
                "id": id_value,
                "idProperty": id_property,
                "objectWriteTraceId": trace_id,
                "properties": dict(properties),
            }
            for trace_id, id_value, properties in inputs
        ]
    }


def batch_update_body(inputs: Sequence[tuple[str, str, Mapping[str, str]]]) -> dict[str, Any]:
    """``POST .../batch/update`` by record id: ``(trace id, object id, properties)``."""
    return {
        "inputs": [
            {"id": object_id, "objectWriteTraceId": trace_id, "properties": dict(properties)}
            for trace_id, object_id, properties in inputs
        ]
    }


def _note_associations(company_id: str, contact_ids: Sequence[str]) -> list[dict[str, Any]]:
    targets = [(company_id, COMPANY_ASSOCIATION_TYPE_NOTE)]
    targets += [(contact_id, CONTACT_ASSOCIATION_TYPE_NOTE) for contact_id in contact_ids]
    return [
        {
            "to": {"id": target},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
        }
        for target, type_id in targets
    ]


def notes_create_body(
    inputs: Sequence[tuple[str, Mapping[str, str], str, Sequence[str]]],
) -> dict[str, Any]:
    """``POST /crm/v3/objects/notes/batch/create``: ``(trace id, properties, company id,
    contact ids)`` per input; each note is associated to its company (type 190) and
    contacts (type 202)."""
    return {
        "inputs": [
            {
                "objectWriteTraceId": trace_id,
                "properties": dict(properties),
                "associations": _note_associations(company_id, contact_ids),
            }
            for trace_id, properties, company_id, contact_ids in inputs
        ]
    }


def archive_body(object_ids: Sequence[str]) -> dict[str, Any]:
    """``POST .../batch/archive`` by record id."""
    return {"inputs": [{"id": object_id} for object_id in object_ids]}


def associate_default_body(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """``POST /crm/v4/associations/{from}/{to}/batch/associate/default``."""
    return {"inputs": [{"from": {"id": a}, "to": {"id": b}} for a, b in pairs]}


def encode_json(body: Mapping[str, Any]) -> bytes:
    """The exact bytes sent for ``body``: compact JSON, UTF-8 (its length bounds HubSpot's
    character count from above)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()

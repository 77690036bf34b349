"""The record a sink receives for one delivery item, and the sink's refusal of a bad one.

The delivery engine and the preview (:mod:`processors.operations.preview`) build the sink's
:class:`~connectors.base.sink.OutboundRecord` the same way, here: the item's envelope, its
contract as a JSON-able payload, and that payload parsed once into the family's typed contract
record (:mod:`connectors.base.contract`). A payload that fails its model is handed to the
sink's :meth:`~connectors.base.sink.BaseSink.contract_error`, which says whether the sink
refuses it (the error to record) or sends it as it is (``None``).
"""

from __future__ import annotations

from typing import Any

from connectors.base.contract import (
    ContractRecord,
    ContractViolation,
    model_for_family,
    parse_record,
)
from connectors.base.errors import ConnectorError
from connectors.base.sink import BaseSink, OutboundRecord
from processors.deliveries.envelope import DeliveryItem

__all__ = ["Refusal", "outbound_record"]

Refusal = tuple[ContractViolation, ConnectorError]
"""A payload's contract violation and the sink's error for it."""


def outbound_record(
    item: DeliveryItem,
    *,
    connector: str,
    family: str,
    payload: dict[str, Any],
    sink: BaseSink[Any],
) -> tuple[OutboundRecord, Refusal | None]:
    """``item`` as ``sink`` receives it, and the sink's refusal of it (``None``: send it)."""
    model = model_for_family(family)
    typed: ContractRecord | None = None
    violation: ContractViolation | None = None
    if model is not None:
        try:
            typed = parse_record(model, payload)
        except ContractViolation as exc:
            violation = exc
    record = OutboundRecord(
        delivery_id=item.delivery_id,
        tenant_id=item.tenant_id,
        connection_id=item.connection_id,
        connector=connector,
        event_type=item.headers["qi.event_type"],
        event_id=item.headers["qi.event_id"],
        idempotency_key=item.idempotency_key,
        correlation_id=item.headers["qi.correlation_id"],
        entity_id=item.headers["qi.entity_id"],
        entity_version=item.entity_version,
        occurred_at=str(payload.get("occurred_at", "")),
        schema_version=item.headers["qi.schema_version"],
        payload=payload,
        attempt=item.attempts_made + 1,
        record=typed,
        replay_id=item.replay_id,
    )
    if violation is None:
        return record, None
    refusal = sink.contract_error(record, violation)
    return record, None if refusal is None else (violation, refusal)

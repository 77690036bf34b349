"""Queast domain events as they arrive on ``queast.domain-events``."""

from __future__ import annotations

from processors.domain.events import (
    EVENT_ENTITY_MODELS,
    CompanyData,
    ContractMode,
    DomainEvent,
    DomainEventEnvelope,
    Entity,
    EntityData,
    EventType,
    JobAdData,
    PersonData,
    SignalData,
    SignalDecorations,
    SignalEvidence,
    SignalReason,
)

__all__ = [
    "EVENT_ENTITY_MODELS",
    "CompanyData",
    "ContractMode",
    "DomainEvent",
    "DomainEventEnvelope",
    "Entity",
    "EntityData",
    "EventType",
    "JobAdData",
    "PersonData",
    "SignalData",
    "SignalDecorations",
    "SignalEvidence",
    "SignalReason",
]

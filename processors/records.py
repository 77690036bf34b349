"""The records the stream services read and write, as plain bytes.

A neutral module (it imports nothing of the project): the routing service
(:mod:`processors.routing.service`, ``IncomingRecord``/``OutgoingRecord``) and the inbound
service (:mod:`processors.inbound.service`, ``InboundRecord``/``Output``) each take a
:class:`ConsumedRecord`, which their agents make from Faust's events
(:func:`processors.agents.streams.consumed`), and answer :class:`ProducedRecord`\\ s for their
agents to produce. Keys and values stay bytes: encoding, decoding and validating them is each
service's business.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConsumedRecord", "Headers", "ProducedRecord"]

Headers = tuple[tuple[str, bytes], ...]
"""Kafka record headers, in order."""


@dataclass(frozen=True, slots=True)
class ConsumedRecord:
    """One consumed record with its coordinates."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class ProducedRecord:
    """One record to produce."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = ()

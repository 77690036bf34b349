"""The records the stream services read, as plain bytes with their coordinates.

A neutral module (it imports nothing of the project): the routing service
(:mod:`processors.routing.service`, ``IncomingRecord``) and the inbound service
(:mod:`processors.inbound.service`, ``InboundRecord``) each take a :class:`ConsumedRecord`,
which their agents make from Faust's events (:func:`processors.agents.streams.consumed`). Keys
and values stay bytes: decoding and validating them is each service's business.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConsumedRecord", "Headers"]

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

"""A test-only connector with an inbound adapter, for the intake's tests and benchmark.

``hmactest`` signs a request with ``X-Test-Signature``: hex HMAC-SHA256, keyed by the
connection's inbound ``secret``, over ``method + " " + url + "\\n" + body`` (the URL as the
partner called it, so the public base URL matters). Its body is
``{"events": [{"id": "...", "domain": "..."}, ...]}``: one interest highlight per event.
Register it with ``connectors.registry.extended(SPEC)``. ``PLAIN_SPEC`` (``plaintest``) is a
connector without an inbound adapter (``extended(SPEC, PLAIN_SPEC)``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import SecretStr

from connectors.base import BaseSink, BatchOutcome, OutboundRecord
from connectors.base.api import ConnectionOptions
from connectors.base.config import ConnectionConfig
from connectors.base.inbound import (
    InboundAuthError,
    InboundCompany,
    InboundHighlight,
    InboundPayloadError,
    InboundRequest,
    InboundSettings,
)
from connectors.registry import ConnectorSpec

__all__ = [
    "NAME",
    "PLAIN_NAME",
    "PLAIN_SPEC",
    "SPEC",
    "HmacInbound",
    "HmacTestAdapter",
    "events_body",
    "sign",
]

NAME = "hmactest"
PLAIN_NAME = "plaintest"
SIGNATURE_HEADER = "X-Test-Signature"


class HmacInbound(InboundSettings):
    """The test connector's inbound block: its signing secret."""

    secret: SecretStr


class HmacConfig(ConnectionConfig):
    """The test connector's connection settings: only its inbound block."""

    inbound: HmacInbound | None = None


def sign(secret: str, method: str, url: str, body: bytes) -> str:
    message = f"{method} {url}\n".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def events_body(*ids: str) -> bytes:
    events = [{"id": event_id, "domain": f"{event_id}.example.com"} for event_id in ids]
    return json.dumps({"events": events}).encode()


class HmacOptions(ConnectionOptions):
    """The test connector's part of a connection body: nothing (its block is stored as is)."""


class HmacTestAdapter:
    """Verifies ``X-Test-Signature``; parses ``{"events": [...]}``."""

    def verify(self, request: InboundRequest, config: HmacInbound) -> None:
        given = request.headers.get(SIGNATURE_HEADER.lower())
        if not given:
            raise InboundAuthError("missing_signature", "no signature")
        expected = sign(config.secret.get_secret_value(), request.method, request.url, request.body)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise InboundAuthError("bad_signature", "the signature does not match")

    def highlights(self, request: InboundRequest, config: HmacInbound) -> list[InboundHighlight]:
        try:
            document: Any = json.loads(request.body)
            events = document["events"]
            if not isinstance(events, list):
                raise TypeError
            return [
                InboundHighlight(
                    partner_event_id=str(event["id"]),
                    company=InboundCompany(domain=str(event["domain"])),
                )
                for event in events
            ]
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            msg = "not an events document"
            raise InboundPayloadError(msg) from exc


class HmacTestSink(BaseSink[HmacConfig]):
    """Delivers nothing: the connector exists for its inbound side."""

    name: ClassVar[str] = NAME
    config_class: ClassVar[type[ConnectionConfig]] = HmacConfig
    max_batch_size: ClassVar[int] = 1

    async def write(self, batch: Sequence[OutboundRecord]) -> BatchOutcome:
        return BatchOutcome()


SPEC = ConnectorSpec.of(HmacTestSink, HmacOptions, title="hmac-test", inbound=HmacTestAdapter())


class PlainConfig(ConnectionConfig):
    """A connector's settings without an inbound block."""


class PlainSink(BaseSink[PlainConfig]):
    """Delivers nothing and receives no webhooks."""

    name: ClassVar[str] = PLAIN_NAME
    config_class: ClassVar[type[ConnectionConfig]] = PlainConfig
    max_batch_size: ClassVar[int] = 1

    async def write(self, batch: Sequence[OutboundRecord]) -> BatchOutcome:
        return BatchOutcome()


PLAIN_SPEC = ConnectorSpec.of(PlainSink, HmacOptions, title="plain-test")

"""Reading one Pipedrive organization for an inbound highlight: :class:`PipedriveCompanyReader`.

``GET /api/v2/organizations/{id}`` (cost 1 token) with the connection's API token in the
``x-api-token`` header, answering an :class:`~connectors.base.inbound.InboundCompany` from the
organization's ``name``, ``website`` (its registrable domain: Pipedrive has no domain field)
and ``linkedin``. ``None`` on 404; otherwise the outcomes of
:func:`connectors.base.partner_read.read_json` (bounded retries, ``PartnerReadError``). A
``{"success": false}`` body, or one without a ``data`` object, is a failed read.

This module imports the connector kit's base and this connector's configuration only (see
:mod:`connectors.hubspot.reader` for why, and for the same two decisions): an OAuth connection
is not read (its rotating refresh token belongs to the delivery side's grant store), and the
reader paces itself with its own bucket of :data:`READ_RATE_PER_SECOND` requests per second,
a tenth of the smallest burst limit Pipedrive documents for API tokens (20 per 2 s).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import httpx

from connectors.base.inbound import InboundCompany, PartnerReadError
from connectors.base.matchkeys import normalize_domain
from connectors.base.oauth import StaticToken, TokenSource
from connectors.base.partner_read import (
    DEFAULT_ATTEMPTS,
    DEFAULT_MAX_WAIT_SECONDS,
    read_json,
)
from connectors.base.ratelimit import RatePolicy, TokenBucket
from connectors.pipedrive.config import PipedriveApiTokenAuth, PipedriveConnectionConfig

__all__ = ["READ_RATE_PER_SECOND", "PipedriveCompanyReader", "reader_for"]

READ_RATE_PER_SECOND: Final[float] = 1.0
_READ_BURST: Final[float] = 2.0
_MAX_ID_LENGTH: Final[int] = 20


def _text(data: dict[str, Any], name: str, limit: int) -> str | None:
    value = data.get(name)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value[:limit] if value else None


class PipedriveCompanyReader:
    """Reads Pipedrive organizations with one connection's token (see the module docstring)."""

    partner: Final[str] = "pipedrive"

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api_root: str,
        tokens: TokenSource,
        rate: RatePolicy | None = None,
        attempts: int = DEFAULT_ATTEMPTS,
        max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._api_root = api_root.rstrip("/")
        self._tokens = tokens
        self._rate = rate or _bucket(None, clock)
        self._attempts = attempts
        self._max_wait = max_wait_seconds
        self._sleep = sleep

    async def company(self, partner_object_id: str) -> InboundCompany | None:
        object_id = partner_object_id.strip()
        if not object_id.isdigit() or len(object_id) > _MAX_ID_LENGTH:
            return None  # Pipedrive ids are integers: anything else names no organization
        body = await read_json(
            self._client,
            f"{self._api_root}/api/v2/organizations/{object_id}",
            partner=self.partner,
            tokens=self._tokens,
            rate=self._rate,
            attempts=self._attempts,
            max_wait_seconds=self._max_wait,
            sleep=self._sleep,
        )
        if body is None:
            return None
        data = body.get("data")
        if body.get("success") is False or not isinstance(data, dict):
            raise PartnerReadError("failed", "the organization answer has no data object")
        return InboundCompany(
            partner_object_id=object_id,
            name=_text(data, "name", 500),
            domain=normalize_domain(_text(data, "website", 2000)),
            linkedin_url=_text(data, "linkedin", 500),
        )


def _bucket(connection_rate: float | None, clock: Callable[[], float]) -> TokenBucket:
    """The reader's bucket: :data:`READ_RATE_PER_SECOND`, or the connection's own
    ``rate_limit_per_second`` when that is lower."""
    rate = (
        READ_RATE_PER_SECOND
        if connection_rate is None
        else min(connection_rate, READ_RATE_PER_SECOND)
    )
    return TokenBucket(rate=rate, per_seconds=1.0, burst=_READ_BURST, clock=clock)


def reader_for(
    settings: Mapping[str, Any],
    client: httpx.AsyncClient,
    *,
    allow_private_networks: bool = False,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> PipedriveCompanyReader | None:
    """The reader for a connection's opened ``settings`` (its connector block: ``auth``,
    ``base_url``...), or ``None`` for an OAuth connection.

    Raises ``pydantic.ValidationError`` (no input echoed) if the settings are not valid.
    """
    config = PipedriveConnectionConfig.validate_for_connection(
        dict(settings), allow_private_networks=allow_private_networks
    )
    if not isinstance(config.auth, PipedriveApiTokenAuth):
        return None
    token = StaticToken(config.auth.token, header="x-api-token", prefix="")
    return PipedriveCompanyReader(
        client,
        api_root=config.api_base_url(),
        tokens=token,
        rate=_bucket(config.rate_limit_per_second, clock),
        sleep=sleep,
        clock=clock,
    )

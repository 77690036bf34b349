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
from connectors.base.oauth import StaticToken
from connectors.base.partner_read import (
    READ_RATE_PER_SECOND,
    PacedReader,
    reader_bucket,
    text_field,
)
from connectors.pipedrive.config import PipedriveApiTokenAuth, PipedriveConnectionConfig

__all__ = ["READ_RATE_PER_SECOND", "PipedriveCompanyReader", "reader_for"]

_MAX_ID_LENGTH: Final[int] = 20


class PipedriveCompanyReader(PacedReader):
    """Reads Pipedrive organizations with one connection's token (see the module docstring)."""

    partner = "pipedrive"

    async def company(self, partner_object_id: str) -> InboundCompany | None:
        object_id = partner_object_id.strip()
        if not object_id.isdigit() or len(object_id) > _MAX_ID_LENGTH:
            return None  # Pipedrive ids are integers: anything else names no organization
        body = await self._get(f"/api/v2/organizations/{object_id}")
        if body is None:
            return None
        data = body.get("data")
        if body.get("success") is False or not isinstance(data, dict):
            raise PartnerReadError("failed", "the organization answer has no data object")
        return InboundCompany(
            partner_object_id=object_id,
            name=text_field(data, "name", 500),
            domain=normalize_domain(text_field(data, "website", 2000)),
            linkedin_url=text_field(data, "linkedin", 500),
        )


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
        rate=reader_bucket(config.rate_limit_per_second, clock),
        sleep=sleep,
        clock=clock,
    )

"""Reading one HubSpot company for an inbound highlight: :class:`HubSpotCompanyReader`.

``GET /crm/v3/objects/companies/{companyId}?properties=name,domain,website,linkedin_company_page``
with the connection's token, answering an :class:`~connectors.base.inbound.InboundCompany`:
``name``, ``domain`` (or, when the record has none, the registrable domain of ``website``) and
``linkedin_company_page`` as the LinkedIn URL. ``None`` on 404; otherwise the outcomes of
:func:`connectors.base.partner_read.read_json` (bounded retries, ``PartnerReadError``).

This module imports the connector kit's base and this connector's configuration only, never
an exporter, a payload mapping or the sink: the inbound agent imports it, and the inbound
side must not reach any code that writes to a partner or produces a Signal.

Decisions:

- **Auth.** :func:`reader_for` builds the reader from the connection's validated settings.
  A private app token is used as is. An OAuth installation is **not** read (``None``): its
  refresh token may rotate on renewal, and renewals must be saved through the connection's
  grant store, which lives with the deliveries; a reader renewing on its own could strand the
  delivery sink's grant. Such highlights stay in review (``partner_read_unavailable``).
- **Limits.** The reader does not share the delivery sink's bucket (that lives in the
  delivery agent's sink, in another agent's memory). It has its own conservative bucket:
  :data:`READ_RATE_PER_SECOND` requests per second, a tenth of the smallest tier's burst
  limit (100 per 10 s), burst 2, or the connection's ``rate_limit_per_second`` when
  lower. Reads are rare (one per unlinked highlight) and count
  against the same HubSpot daily budget; 429 answers are retried a bounded number of times.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final
from urllib.parse import quote

import httpx

from connectors.base.inbound import InboundCompany
from connectors.base.matchkeys import normalize_domain
from connectors.base.oauth import StaticToken
from connectors.base.partner_read import (
    READ_RATE_PER_SECOND,
    PacedReader,
    reader_bucket,
    text_field,
)
from connectors.hubspot.config import HubSpotConnectionConfig, HubSpotPrivateApp

__all__ = ["READ_PROPERTIES", "READ_RATE_PER_SECOND", "HubSpotCompanyReader", "reader_for"]

READ_PROPERTIES: Final[tuple[str, ...]] = ("name", "domain", "website", "linkedin_company_page")
_MAX_ID_LENGTH: Final[int] = 128


class HubSpotCompanyReader(PacedReader):
    """Reads HubSpot companies with one connection's token (see the module docstring)."""

    partner = "hubspot"

    async def company(self, partner_object_id: str) -> InboundCompany | None:
        object_id = partner_object_id.strip()
        if not object_id or len(object_id) > _MAX_ID_LENGTH:
            return None
        body = await self._get(
            f"/crm/v3/objects/companies/{quote(object_id, safe='')}",
            {"properties": ",".join(READ_PROPERTIES)},
        )
        if body is None:
            return None
        raw = body.get("properties")
        properties: dict[str, Any] = raw if isinstance(raw, dict) else {}
        domain = normalize_domain(text_field(properties, "domain", 253)) or normalize_domain(
            text_field(properties, "website", 2000)
        )
        return InboundCompany(
            partner_object_id=object_id,
            name=text_field(properties, "name", 500),
            domain=domain,
            linkedin_url=text_field(properties, "linkedin_company_page", 500),
        )


def reader_for(
    settings: Mapping[str, Any],
    client: httpx.AsyncClient,
    *,
    allow_private_networks: bool = False,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> HubSpotCompanyReader | None:
    """The reader for a connection's opened ``settings`` (its connector block: ``auth``,
    ``base_url``...), or ``None`` for an OAuth connection.

    Raises ``pydantic.ValidationError`` (no input echoed) if the settings are not valid.
    """
    config = HubSpotConnectionConfig.validate_for_connection(
        dict(settings), allow_private_networks=allow_private_networks
    )
    if not isinstance(config.auth, HubSpotPrivateApp):
        return None
    token = StaticToken(config.auth.token)
    return HubSpotCompanyReader(
        client,
        api_root=config.api_root,
        tokens=token,
        rate=reader_bucket(config.rate_limit_per_second, clock),
        sleep=sleep,
        clock=clock,
    )

"""Reading one HubSpot company for an inbound highlight: :class:`HubSpotCompanyReader`.

``GET /crm/v3/objects/companies/{companyId}?properties=name,domain,website,linkedin_company_page``
with the connection's token, answering an :class:`~connectors.base.inbound.InboundCompany`:
``name``, ``domain`` (or, when the record has none, the registrable domain of ``website``) and
``linkedin_company_page`` as the LinkedIn URL. ``None`` on 404; otherwise the outcomes of
:func:`connectors.base.partner_read.read_json` (bounded retries, ``PartnerReadError``).

This module imports the connector kit's base and this connector's configuration and token
sources only, never an exporter, a payload mapping or the sink: the inbound agent imports it,
and the inbound side must not reach any code that writes to a partner or produces a Signal.

Decisions:

- **Auth.** :func:`reader_for` builds the reader from the connection's validated settings.
  A private app token is used as is. An OAuth installation is read with
  :class:`~connectors.hubspot.auth.HubSpotOAuthSource`, the token source its delivery sink
  uses, handed the connection's grant store (``setup.grants``): renewals are saved where the
  sink finds them and a refused refresh reloads the sink's latest grant once (see
  :mod:`connectors.base.partner_read`). Without a grant store an OAuth connection has no
  reader (``None``), and its highlights wait for review (``partner_read_unavailable``).
- **Limits.** The reader does not share the delivery sink's bucket (that lives in the
  delivery agent's sink, in another agent's memory). It has its own conservative bucket:
  :data:`READ_RATE_PER_SECOND` requests per second, a tenth of the smallest tier's burst
  limit (100 per 10 s), burst 2, or the connection's ``rate_limit_per_second`` when
  lower. Reads are rare (one per unlinked highlight) and count
  against the same HubSpot daily budget; 429 answers are retried a bounded number of times.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

from connectors.base.inbound import InboundCompany
from connectors.base.matchkeys import normalize_domain
from connectors.base.oauth import StaticToken
from connectors.base.partner_read import (
    READ_RATE_PER_SECOND,
    PacedReader,
    ReaderSetup,
    text_field,
)
from connectors.hubspot.auth import oauth_source
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


def reader_for(settings: Mapping[str, Any], setup: ReaderSetup) -> HubSpotCompanyReader | None:
    """The connection's reader (see :mod:`connectors.base.partner_read`, "Building a reader")."""
    config = setup.config(HubSpotConnectionConfig, settings)
    auth = config.auth
    tokens = (
        StaticToken(auth.token)
        if isinstance(auth, HubSpotPrivateApp)
        else setup.oauth(
            HubSpotCompanyReader.partner,
            lambda options: oauth_source(config, auth, http_client=setup.client, options=options),
        )
    )
    return HubSpotCompanyReader.paced(
        setup, tokens, api_root=config.api_root, connection_rate=config.rate_limit_per_second
    )

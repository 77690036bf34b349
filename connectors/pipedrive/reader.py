"""Reading one Pipedrive organization for an inbound highlight: :class:`PipedriveCompanyReader`.

``GET /api/v2/organizations/{id}`` (cost 1 token) with the connection's API token in the
``x-api-token`` header, answering an :class:`~connectors.base.inbound.InboundCompany` from the
organization's ``name``, ``website`` (its registrable domain: Pipedrive has no domain field)
and ``linkedin``. ``None`` on 404; otherwise the outcomes of
:func:`connectors.base.partner_read.read_json` (bounded retries, ``PartnerReadError``). A
``{"success": false}`` body, or one without a ``data`` object, is a failed read.

This module imports the connector kit's base and this connector's configuration and token
sources only (see :mod:`connectors.hubspot.reader` for why, and for the same two decisions):
an OAuth connection is read with :class:`~connectors.pipedrive.auth.PipedriveOAuthSource`, the
delivery sink's token source, handed the connection's grant store (none: no reader), and the
reader paces itself with its own bucket of :data:`READ_RATE_PER_SECOND` requests per second,
a tenth of the smallest burst limit Pipedrive documents for API tokens (20 per 2 s). Pipedrive
rotates refresh tokens on every renewal, which is why the grant store is shared. As for the
sink, an OAuth connection's API host is the ``api_domain`` of its latest grant unless the
connection sets ``base_url``, asked again before each read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from connectors.base.inbound import InboundCompany, PartnerReadError
from connectors.base.matchkeys import normalize_domain
from connectors.base.oauth import TokenSource
from connectors.base.partner_read import (
    READ_RATE_PER_SECOND,
    PacedReader,
    ReaderSetup,
    text_field,
)
from connectors.pipedrive.auth import ApiTokenAuth, PipedriveOAuthSource
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


def reader_for(settings: Mapping[str, Any], setup: ReaderSetup) -> PipedriveCompanyReader | None:
    """The connection's reader (see :mod:`connectors.base.partner_read`, "Building a reader")."""
    config = setup.config(PipedriveConnectionConfig, settings)
    auth = config.auth
    tokens: TokenSource | None = (
        ApiTokenAuth(auth.token)
        if isinstance(auth, PipedriveApiTokenAuth)
        else setup.oauth(
            PipedriveCompanyReader.partner,
            lambda options: PipedriveOAuthSource(
                auth,
                http_client=setup.client,
                allow_private_networks=setup.allow_private_networks,
                **options,
            ),
        )
    )

    def api_root() -> str:  # an OAuth renewal may move the account's API host
        return config.api_base_url(oauth_api_domain=None if tokens is None else tokens.api_domain)

    return PipedriveCompanyReader.paced(
        setup, tokens, api_root=api_root, connection_rate=config.rate_limit_per_second
    )

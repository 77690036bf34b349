"""The partner company readers of tenants' connections, for the inbound agent.

:class:`ConnectionReaders` answers :meth:`ConnectionReaders.reader` for a stored connection:
the connector's :class:`~connectors.base.inbound.PartnerCompanyReader`
(found by connector name in :mod:`connectors.readers`) built from the
connection's opened settings, or ``None`` (no reader for that connector, settings that do not
validate or a secret that no longer opens: logged, and the highlight waits for review as
``partner_read_unavailable``).

The settings given to a reader are the connection's partner block, built exactly as the
delivery side builds it (:mod:`processors.partner_blocks`): every key but the service's own,
``base_url`` from ``QI_<CONNECTOR>_BASE_URL`` unless the connection sets one, and private and
plain-HTTP addresses allowed only when that ``base_url`` is a local sandbox.

OAuth connections (decision). They are read with the same grant as their delivery sinks: the
reader is given the connection's grant store (Redis ``oauth:{connection_id}``,
:meth:`processors.oauthgrants.OAuthTokenStore.for_connection`) and starts from the latest
grant saved there
(:func:`~processors.partner_blocks.resume_block`), like a new sink. Its token source is the
connector's own (the sink's class), so one refresh-and-persist path serves both sides: a
renewal by the reader is saved for the sink, one by the sink is reloaded by the reader when the
partner refuses the reader's older refresh token, and a refusal that stands is a review
(``partner_auth_failed``). The reader never parks the connection; the delivery side does that.
Without a token store (``tokens=None``) OAuth connections have no reader.

Parked connections: with a health store, a connection the delivery side parked as
``needs_reauth`` and not saved since is not read (no request that would be refused anyway, no
refresh with a refused refresh token); its highlights wait for review as
``partner_needs_reauth``. The health is read for every read, since parking does not change the
connection's ``updated_at``.

Readers are kept per connection and rebuilt when the connection's ``updated_at`` changes (new
credentials), so each connection's reader keeps its own pacing bucket and its token source
(the grant it holds) for the worker's life. All readers share one HTTP client, closed by
:meth:`ConnectionReaders.aclose`. Redis errors (grant store, health) are raised: the agent
retries the record.

Only the reader modules are imported from ``connectors``: nothing here reaches an exporter, a
payload mapping or a sink (``tests/unit/inbound/test_never_a_signal.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

import httpx
from pydantic import ValidationError

from connectors.base.inbound import InboundCompany, PartnerCompanyReader, PartnerReadError
from connectors.base.partner_read import Clock, ReaderSetup, SystemClock, reader_http_client
from connectors.readers import ReaderFor, reader_builder
from processors.connection_health import Breaker, ConnectionHealth, ConnectionState
from processors.oauthgrants import ConnectionGrants, OAuthTokenStore, credentials_fingerprint
from processors.partner_blocks import (
    is_sandbox_url,
    opened_settings,
    partner_block,
    resume_block,
)
from processors.secrets import SecretBox, SecretDecryptionError
from processors.tenants.models import ConnectionRecord

__all__ = ["ConnectionReaders", "Health"]

logger = logging.getLogger(__name__)


class Health(Protocol):
    """:class:`~processors.connection_health.HealthStore`, or a fake in unit tests."""

    async def read(self, destination: str) -> tuple[ConnectionState | None, Breaker]: ...


class _ParkedConnection:
    """The reader of a connection parked as ``needs_reauth``: it reads nothing."""

    async def company(self, partner_object_id: str) -> InboundCompany | None:
        raise PartnerReadError("needs_reauth", "the connection waits to be authorised again")


_PARKED = _ParkedConnection()


class ConnectionReaders:
    """Builds and keeps the readers of connections (see the module docstring).

    ``tokens`` is the OAuth grant store shared with the delivery sinks (``None``: OAuth
    connections are not read); ``health`` the delivery side's connection health (``None``:
    parked connections are read like others); ``clock`` paces reads and times tokens.
    """

    def __init__(
        self,
        *,
        box: SecretBox,
        base_urls: Mapping[str, str],
        client: httpx.AsyncClient | None = None,
        tokens: OAuthTokenStore | None = None,
        health: Health | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._box = box
        self._base_urls = dict(base_urls)
        self._client = client or reader_http_client()
        self._tokens = tokens
        self._health = health
        self._clock = clock or SystemClock()
        self._readers: dict[str, tuple[datetime, PartnerCompanyReader | None]] = {}

    async def reader(self, connection: ConnectionRecord) -> PartnerCompanyReader | None:
        builder = reader_builder(str(connection.connector))
        if builder is None:
            return None
        if await self._parked(connection):
            return _PARKED
        kept = self._readers.get(connection.connection_id)
        if kept is not None and kept[0] == connection.updated_at:
            return kept[1]
        built = await self._build(connection, builder)
        self._readers[connection.connection_id] = (connection.updated_at, built)
        return built

    async def _parked(self, connection: ConnectionRecord) -> bool:
        """Whether the delivery side parked the connection as ``needs_reauth`` since its
        last save."""
        if self._health is None:
            return False
        state, _breaker = await self._health.read(connection.connection_id)
        return (
            state is not None
            and state.health is ConnectionHealth.NEEDS_REAUTH
            and state.since >= connection.updated_at.timestamp()
        )

    async def _build(
        self, connection: ConnectionRecord, builder: ReaderFor
    ) -> PartnerCompanyReader | None:
        log = {
            "tenant_id": connection.tenant_id,
            "connection_id": connection.connection_id,
            "connector": str(connection.connector),
        }
        try:
            opened = opened_settings(connection, self._box)
        except SecretDecryptionError:
            logger.warning("inbound.reader.secret_unreadable", extra=log)
            return None
        block = partner_block(opened, base_url=self._base_urls.get(str(connection.connector)))
        grants = self._grants(connection, block)
        setup = ReaderSetup(
            client=self._client,
            allow_private_networks=is_sandbox_url(block.get("base_url")),
            grants=grants,
            clock=self._clock,
            log_fields=log,
        )
        try:
            if grants is not None:
                block = await resume_block(grants, block, lambda resumed: builder(resumed, setup))
            built = builder(block, setup)
        except ValidationError as exc:
            fields = [".".join(str(p) for p in e["loc"]) for e in exc.errors()[:5]]
            logger.warning("inbound.reader.invalid_settings", extra={**log, "fields": fields})
            return None
        if built is None:
            logger.info("inbound.reader.unavailable", extra=log)
        return built

    def _grants(
        self, connection: ConnectionRecord, block: Mapping[str, Any]
    ) -> ConnectionGrants | None:
        """The connection's grant store, for an OAuth block when the worker has a store."""
        credentials = credentials_fingerprint(block.get("auth"))
        if self._tokens is None or credentials is None:
            return None
        return self._tokens.for_connection(
            tenant_id=connection.tenant_id,
            connection_id=connection.connection_id,
            credentials=credentials,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

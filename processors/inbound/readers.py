"""The partner company readers of tenants' connections, for the inbound agent.

:class:`ConnectionReaders` answers :meth:`ConnectionReaders.reader` for a stored connection:
the connector's :class:`~connectors.base.inbound.PartnerCompanyReader`
(:mod:`connectors.hubspot.reader`, :mod:`connectors.pipedrive.reader`) built from the
connection's opened settings, or ``None`` (no reader for that connector, an OAuth connection,
settings that do not validate or a secret that no longer opens: logged, and the highlight waits
for review as ``partner_read_unavailable``).

The settings given to a reader are the connection's partner block, as the delivery side
builds it: every key but the service's own (``webhook``, ``match_policy``),
with ``base_url`` from ``QI_<CONNECTOR>_BASE_URL`` unless the connection sets one. As on the
delivery side, private and plain-HTTP addresses are allowed only when that ``base_url`` is
a local sandbox (plain HTTP, or a loopback or private host).

Readers are kept per connection and rebuilt when the connection's ``updated_at`` changes (a new
token), so each connection's reader keeps its own pacing bucket for the worker's life. All
readers share one HTTP client, closed by :meth:`ConnectionReaders.aclose`.

Only the reader modules are imported from ``connectors``: nothing here reaches an exporter, a
payload mapping or a sink (``tests/unit/inbound/test_never_a_signal.py``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import httpx
from pydantic import ValidationError

from connectors.base.inbound import PartnerCompanyReader
from connectors.base.partner_read import reader_http_client
from connectors.hubspot.reader import reader_for as hubspot_reader_for
from connectors.pipedrive.reader import reader_for as pipedrive_reader_for
from processors.secrets import SecretBox, SecretDecryptionError
from processors.tenants.models import SERVICE_KEYS, ConnectionRecord
from processors.tenants.secret_fields import open_settings

__all__ = ["ConnectionReaders"]

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


def _hubspot(
    settings: Mapping[str, Any], client: httpx.AsyncClient, private: bool, sleep: Sleep
) -> PartnerCompanyReader | None:
    return hubspot_reader_for(settings, client, allow_private_networks=private, sleep=sleep)


def _pipedrive(
    settings: Mapping[str, Any], client: httpx.AsyncClient, private: bool, sleep: Sleep
) -> PartnerCompanyReader | None:
    return pipedrive_reader_for(settings, client, allow_private_networks=private, sleep=sleep)


_BUILDERS: dict[
    str,
    Callable[[Mapping[str, Any], httpx.AsyncClient, bool, Sleep], PartnerCompanyReader | None],
] = {"hubspot": _hubspot, "pipedrive": _pipedrive}


def _is_sandbox_url(url: object) -> bool:
    """Whether ``url`` is a local sandbox: plain HTTP, or a loopback or private host."""
    if not isinstance(url, str):
        return False
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return False
    if parsed.scheme != "https":
        return True
    host = parsed.host.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return False


class ConnectionReaders:
    """Builds and keeps the readers of connections (see the module docstring)."""

    def __init__(
        self,
        *,
        box: SecretBox,
        base_urls: Mapping[str, str],
        client: httpx.AsyncClient | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._box = box
        self._base_urls = dict(base_urls)
        self._client = client or reader_http_client()
        self._sleep = sleep
        self._readers: dict[str, tuple[datetime, PartnerCompanyReader | None]] = {}

    async def reader(self, connection: ConnectionRecord) -> PartnerCompanyReader | None:
        kept = self._readers.get(connection.connection_id)
        if kept is not None and kept[0] == connection.updated_at:
            return kept[1]
        built = self._build(connection)
        self._readers[connection.connection_id] = (connection.updated_at, built)
        return built

    def _build(self, connection: ConnectionRecord) -> PartnerCompanyReader | None:
        connector = str(connection.connector)
        builder = _BUILDERS.get(connector)
        if builder is None:
            return None
        log = {
            "tenant_id": connection.tenant_id,
            "connection_id": connection.connection_id,
            "connector": connector,
        }
        try:
            opened = open_settings(
                connection.settings,
                box=self._box,
                tenant_id=connection.tenant_id,
                connection_id=connection.connection_id,
            )
        except SecretDecryptionError:
            logger.warning("inbound.reader.secret_unreadable", extra=log)
            return None
        block = {k: v for k, v in opened.items() if k not in SERVICE_KEYS and v is not None}
        base_url = self._base_urls.get(connector)
        if base_url is not None:
            block.setdefault("base_url", base_url)
        try:
            built = builder(
                block, self._client, _is_sandbox_url(block.get("base_url")), self._sleep
            )
        except ValidationError as exc:
            fields = [".".join(str(p) for p in e["loc"]) for e in exc.errors()[:5]]
            logger.warning("inbound.reader.invalid_settings", extra={**log, "fields": fields})
            return None
        if built is None:
            logger.info("inbound.reader.unavailable", extra=log)
        return built

    async def aclose(self) -> None:
        await self._client.aclose()

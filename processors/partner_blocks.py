"""A connection's partner block as its connector validates it, for sinks and readers alike.

The delivery side (:mod:`processors.deliveries.sinks`) and the inbound readers
(:mod:`processors.inbound.readers`) build a connector's configuration from a stored
connection the same way, with the functions here:

- :func:`opened_settings`: the connection's stored settings with their secrets opened (raises
  :class:`~processors.secrets.SecretDecryptionError` when one no longer opens);
- :func:`partner_block`: the connection's opened settings without the service's own keys
  (``webhook``, ``match_policy``) and without ``None`` values, with ``base_url`` from
  ``QI_<CONNECTOR>_BASE_URL`` unless the connection sets one;
- :func:`is_sandbox_url`: whether that ``base_url`` is a local sandbox (plain HTTP, or a
  loopback or private host), the only case in which a partner connector's host pin is relaxed;
- :func:`resume_block`: for an OAuth block, the block continuing from the connection's latest
  grant in the grant store (:mod:`processors.oauthgrants`) when there is a usable one, so a
  sink or a reader starts from the refresh token the partner rotated last, whoever renewed it.

A neutral module: it imports no sink, reader, exporter or delivery code.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from pydantic import ValidationError

from connectors.base.oauth import OAuthGrant
from processors.oauthgrants import ConnectionGrants
from processors.secrets import SecretBox
from processors.tenants.models import SERVICE_KEYS, ConnectionRecord
from processors.tenants.secret_fields import open_settings

__all__ = ["is_sandbox_url", "opened_settings", "partner_block", "resume_block", "with_grant"]

logger = logging.getLogger(__name__)


def is_sandbox_url(url: object) -> bool:
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


def opened_settings(connection: ConnectionRecord, box: SecretBox) -> dict[str, Any]:
    """``connection``'s settings with the secrets sealed for it opened (see the module
    docstring)."""
    return open_settings(
        connection.settings,
        box=box,
        tenant_id=connection.tenant_id,
        connection_id=connection.connection_id,
    )


def partner_block(opened: Mapping[str, Any], *, base_url: str | None) -> dict[str, Any]:
    """The partner connector's block of a connection's opened settings (module docstring)."""
    block = {k: v for k, v in opened.items() if k not in SERVICE_KEYS and v is not None}
    if base_url is not None:
        block.setdefault("base_url", base_url)
    return block


def with_grant(block: Mapping[str, Any], grant: OAuthGrant) -> dict[str, Any]:
    """``block`` with its OAuth ``auth`` continuing from ``grant``."""
    auth = dict(block["auth"])
    auth["access_token"] = grant.access_token.get_secret_value()
    auth["refresh_token"] = grant.refresh_token.get_secret_value()
    auth["expires_at"] = grant.expires_at
    if grant.api_domain is not None:
        auth["api_domain"] = grant.api_domain
    return {**block, "auth": auth}


async def resume_block(
    grants: ConnectionGrants,
    block: dict[str, Any],
    validate: Callable[[dict[str, Any]], object],
) -> dict[str, Any]:
    """``block`` continuing from the connection's stored grant, if it has a usable one.

    ``validate`` is the connector's validation (it raises ``ValidationError``); a stored grant
    that does not validate with the block (e.g. an ``api_domain`` the network policy now
    refuses) is ignored and logged. Redis errors are raised.
    """
    grant = await grants.reload()
    if grant is None:
        return block
    resumed = with_grant(block, grant)
    try:
        validate(resumed)
    except ValidationError:
        logger.warning(
            "oauth.grant.ignored",
            extra={
                "tenant_id": grants.tenant_id,
                "connection_id": grants.connection_id,
                "reason": "invalid",
            },
        )
        return block
    return resumed

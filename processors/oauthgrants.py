"""Renewed OAuth grants of partner connections, kept in Redis between their token sources.

An OAuth connection's token source (the connector kit's
:class:`~connectors.base.oauth.OAuthTokenSource`) renews its access token in memory, and the
partner may hand out a new refresh token with it. Two kinds of token source use one
connection's grant: its delivery sink (one per worker) and its inbound company reader (the
inbound agent's, :mod:`processors.inbound.readers`). Without this store a renewal dies with
its holder: after a connection update (the sink or reader is rebuilt), on another worker after
a rebalance, or when the worker restarts, the next one would start again from the refresh
token stored on the connection, which a rotating partner has already invalidated; and a
renewal by the reader would strand the sink, or the other way round. So both start from the
latest grant here (:func:`processors.partner_blocks.resume_block`) and are handed
:meth:`OAuthTokenStore.for_connection`, the kit's :class:`~connectors.base.oauth.GrantStore`
of that connection: each token source saves every renewal through it, and reloads the latest
grant when the partner refuses a refresh (another holder rotated it meanwhile).

This module is neutral (it imports the connector kit's OAuth types and the secret box only,
no sink, exporter or delivery code) so the inbound side may import it.

The connection record itself is never rewritten: that bumps ``updated_at``, which makes the
engine rebuild the connection's sinks and clears its health.

Key (under ``QI_REDIS_KEY_PREFIX``): ``oauth:{connection_id}``, a JSON string
``{"v": 1, "refreshed_at": <Unix s>, "grant": "<sealed>"}`` that expires
:data:`GRANT_TTL_SECONDS` after the last renewal. ``grant`` is sealed with the connection's
:class:`~processors.secrets.SecretBox` (bound to tenant, connection and the purpose
:data:`GRANT_PURPOSE`) and opens to ``{"access_token", "refresh_token", "expires_at",
"api_domain", "credentials"}`` (the fields of :class:`~connectors.base.oauth.OAuthGrant`,
``api_domain`` ``null`` for a partner that assigns no API host). Grants stored before the
kit existed have exactly this form and load unchanged.

``credentials`` is a fingerprint of the OAuth credentials stored on the connection that the
grant descends from (:func:`credentials_fingerprint`: auth type, client id and refresh
token, in plaintext, hashed). A grant whose fingerprint differs from the connection's
current one was issued for credentials an admin has since replaced: :meth:`load` ignores it
and the next renewal overwrites it. Saving a connection with its secrets carried over, and
``keys rotate`` (which re-seals the same plaintext), keep the fingerprint and so the grant.
A grant that no longer opens (its key left the ring) is ignored the same way.

``keys rotate`` re-seals each stored grant under the active key (:meth:`OAuthTokenStore.rewrap`,
a compare-and-set that keeps the key's expiry), and deleting a connection deletes its grant
(:meth:`OAuthTokenStore.delete`).

Writes are last-write-wins. A connection has one sink per worker, and its tenant's
partition one worker at a time, plus the inbound agent's reader, which renews only when a
highlight needs a read and the grant it holds has expired. Two holders renew the same grant at
once only when both find it expired together; ordering the writes would not help then (the
partner has already invalidated the loser's refresh token). The loser recovers through the
kit's reload-once step: its refused refresh reloads the winner's saved grant and continues
from it. Only if the loser's reload comes before the winner's save (the few milliseconds
between the partner's answer and the ``SET``) does the loser fail: a sink parks the connection
as ``needs_reauth``, a reader sends its highlight to review, and neither overwrites the
winner's grant.

Logs (``oauth.grant.stored``, ``oauth.grant.ignored``) carry the connection's coordinates,
never a token.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import SecretStr
from redis.asyncio import Redis

from connectors.base.oauth import OAuthGrant
from processors.secrets import SecretBox, SecretDecryptionError, SecretsError

__all__ = [
    "GRANT_PURPOSE",
    "GRANT_TTL_SECONDS",
    "ConnectionGrants",
    "GrantRewrap",
    "OAuthTokenStore",
    "credentials_fingerprint",
]

logger = logging.getLogger(__name__)

GRANT_PURPOSE: Final[str] = "oauth_grant"
"""The secret box purpose of a stored grant (distinct from any settings field path)."""
GRANT_TTL_SECONDS: Final[int] = 90 * 86_400
"""Longer than partners keep an unused refresh token (60 days is the shortest we know of);
a grant that expired costs, at worst, one renewal from the connection's own refresh token."""
_FORMAT_VERSION: Final[int] = 1
_REWRAP_ATTEMPTS: Final[int] = 5

# Replace the grant only if it is still the value that was read; keep its expiry.
_COMPARE_AND_SET: Final[str] = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0
"""

GrantRewrap = Literal["missing", "current", "rewrapped"]
"""What :meth:`OAuthTokenStore.rewrap` did: no grant stored, already under the active key, or
re-sealed."""


def credentials_fingerprint(auth: object) -> str | None:
    """A fingerprint of an opened OAuth ``auth`` block (``None`` if it is not one).

    Covers what a grant descends from: the auth type, the client id and the refresh token.
    """
    if not isinstance(auth, Mapping) or auth.get("type") != "oauth":
        return None
    client_id, refresh_token = auth.get("client_id"), auth.get("refresh_token")
    if not isinstance(client_id, str) or not isinstance(refresh_token, str) or not refresh_token:
        return None
    digest = hashlib.sha256()
    for part in ("oauth", client_id, refresh_token):
        encoded = part.encode()
        digest.update(len(encoded).to_bytes(4, "big") + encoded)
    return digest.hexdigest()


class OAuthTokenStore:
    """Saves and loads the latest :class:`OAuthGrant` of each connection."""

    def __init__(
        self,
        redis: Redis,
        *,
        box: SecretBox,
        key_prefix: str = "qi:",
        ttl_seconds: int = GRANT_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._box = box
        self._prefix = key_prefix
        self._ttl = ttl_seconds
        self._clock = clock

    def _key(self, connection_id: str) -> str:
        return f"{self._prefix}oauth:{connection_id}"

    async def save(
        self, grant: OAuthGrant, *, tenant_id: str, connection_id: str, credentials: str
    ) -> None:
        """Store ``grant`` as the connection's latest, descending from ``credentials``.

        Called by a sink's token-refreshed hook after each renewal; raises Redis errors (the
        token source logs them and goes on with the grant in memory).
        """
        document = {
            "access_token": grant.access_token.get_secret_value(),
            "refresh_token": grant.refresh_token.get_secret_value(),
            "expires_at": grant.expires_at,
            "api_domain": grant.api_domain,
            "credentials": credentials,
        }
        sealed = self._box.encrypt(
            json.dumps(document, separators=(",", ":")),
            tenant_id=tenant_id,
            connection_id=connection_id,
            purpose=GRANT_PURPOSE,
        )
        now = self._clock()
        value = json.dumps({"v": _FORMAT_VERSION, "refreshed_at": now, "grant": sealed})
        await self._redis.set(self._key(connection_id), value, ex=self._ttl)
        logger.info(
            "oauth.grant.stored",
            extra={
                "tenant_id": tenant_id,
                "connection_id": connection_id,
                "expires_in": round(grant.expires_at - now, 1),
            },
        )

    async def load(
        self, *, tenant_id: str, connection_id: str, credentials: str
    ) -> OAuthGrant | None:
        """The connection's latest grant if it descends from ``credentials``, else ``None``.

        Called when a sink is built. An unreadable grant, or one issued for other
        credentials, is ignored (and logged); Redis errors are raised.
        """
        raw = await self._redis.get(self._key(connection_id))
        if raw is None:
            return None
        fields = {"tenant_id": tenant_id, "connection_id": connection_id}
        document = self._open(raw, tenant_id=tenant_id, connection_id=connection_id)
        if document is None:
            logger.warning("oauth.grant.ignored", extra={**fields, "reason": "unreadable"})
            return None
        if document.get("credentials") != credentials:
            logger.info("oauth.grant.ignored", extra={**fields, "reason": "credentials_changed"})
            return None
        grant = _grant_from(document)
        if grant is None:
            logger.warning("oauth.grant.ignored", extra={**fields, "reason": "unreadable"})
        return grant

    def for_connection(
        self, *, tenant_id: str, connection_id: str, credentials: str
    ) -> ConnectionGrants:
        """The grant store of one connection whose OAuth credentials have ``credentials``
        as fingerprint, for its sink's token source."""
        return ConnectionGrants(
            self, tenant_id=tenant_id, connection_id=connection_id, credentials=credentials
        )

    async def delete(self, connection_id: str) -> None:
        """Forget the connection's grant (its next sink starts from the stored credentials)."""
        await self._redis.delete(self._key(connection_id))

    async def rewrap(self, *, tenant_id: str, connection_id: str) -> GrantRewrap:
        """Re-seal the connection's stored grant under the box's active key (``keys rotate``).

        The write is a compare-and-set that keeps the key's expiry: a renewal saved meanwhile
        is read again, never overwritten. Raises
        :class:`~processors.secrets.SecretsError` when the stored grant does not open (its
        key left the ring, or it is malformed): it is left as it is. Redis errors are raised.
        """
        key = self._key(connection_id)
        for _attempt in range(_REWRAP_ATTEMPTS):
            raw = await self._redis.get(key)
            if raw is None:
                return "missing"
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            envelope = _envelope(text)
            if envelope is None:
                raise SecretDecryptionError("stored grant is malformed")
            sealed = envelope["grant"]
            resealed = self._box.rewrap(
                sealed, tenant_id=tenant_id, connection_id=connection_id, purpose=GRANT_PURPOSE
            )
            if resealed == sealed:
                return "current"
            value = json.dumps({**envelope, "grant": resealed})
            written = await self._redis.eval(_COMPARE_AND_SET, 1, key, text, value)
            if written:
                return "rewrapped"
        raise SecretsError("stored grant kept changing during the rotation; run it again")

    def _open(
        self, raw: bytes | str, *, tenant_id: str, connection_id: str
    ) -> dict[str, Any] | None:
        try:
            envelope = json.loads(raw)
            if not isinstance(envelope, dict) or envelope.get("v") != _FORMAT_VERSION:
                return None
            sealed = envelope.get("grant")
            if not isinstance(sealed, str):
                return None
            opened = self._box.decrypt(
                sealed, tenant_id=tenant_id, connection_id=connection_id, purpose=GRANT_PURPOSE
            )
            document = json.loads(opened)
        except (ValueError, SecretDecryptionError):  # JSONDecodeError is a ValueError
            return None
        return document if isinstance(document, dict) else None


@dataclass(frozen=True, slots=True)
class ConnectionGrants:
    """One connection's grants in an :class:`OAuthTokenStore`: the kit's ``GrantStore``."""

    store: OAuthTokenStore
    tenant_id: str
    connection_id: str
    credentials: str

    async def save(self, grant: OAuthGrant) -> None:
        """Store ``grant`` as the connection's latest (Redis errors are raised)."""
        await self.store.save(
            grant,
            tenant_id=self.tenant_id,
            connection_id=self.connection_id,
            credentials=self.credentials,
        )

    async def reload(self) -> OAuthGrant | None:
        """The connection's latest grant, if it descends from its credentials."""
        return await self.store.load(
            tenant_id=self.tenant_id, connection_id=self.connection_id, credentials=self.credentials
        )


def _envelope(text: str) -> dict[str, Any] | None:
    """The stored JSON envelope around a sealed grant, or ``None`` if it is not one."""
    try:
        envelope = json.loads(text)
    except ValueError:
        return None
    if (
        not isinstance(envelope, dict)
        or envelope.get("v") != _FORMAT_VERSION
        or not isinstance(envelope.get("grant"), str)
    ):
        return None
    return envelope


def _grant_from(document: Mapping[str, Any]) -> OAuthGrant | None:
    access, refresh = document.get("access_token"), document.get("refresh_token")
    expires_at, api_domain = document.get("expires_at"), document.get("api_domain")
    if not isinstance(access, str) or not access or not isinstance(refresh, str) or not refresh:
        return None
    if isinstance(expires_at, bool) or not isinstance(expires_at, int | float):
        return None
    if not math.isfinite(expires_at) or (
        api_domain is not None and not isinstance(api_domain, str)
    ):
        return None
    return OAuthGrant(
        access_token=SecretStr(access),
        refresh_token=SecretStr(refresh),
        expires_at=float(expires_at),
        api_domain=api_domain,
    )

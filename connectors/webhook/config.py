"""Settings of a generic signed-webhook connection (Standard Webhooks).

- ``url``: where to POST. HTTPS is required; plain HTTP only when the connection is
  validated with ``allow_private_networks`` (local development and tests). User info in the
  URL (``https://user:pass@host``) is refused: credentials belong in secrets, and the URL is
  shown in API responses. The URL may still carry a token in its path or query, so logs
  and errors only ever show its host.
- ``secret``: the Standard Webhooks signing secret, ``whsec_`` + base64 of 24 to 64 random
  bytes. Validation errors never echo it.
- ``timeout_seconds``: per request, 15 s by default, at most 30 s (the spec recommends
  15 to 30 s): a total deadline from sending the request to reading its answer, however
  slowly the receiver sends it (see ``connectors.base.http.http_client_factory``).
- ``rate_limit_per_second`` / ``max_concurrency``: optional caps; unset means the
  connector's defaults.
- ``inbound``: optional :class:`WebhookInbound`, the tenant's partner calling *us* with
  Standard Webhooks signed requests (``enabled``, ``ip_allowlist`` and its own ``whsec_``
  ``secret``, checked like the outbound one; see :mod:`connectors.webhook.webhooks`). The
  sink never reads it.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from pydantic import Field, HttpUrl, SecretStr, ValidationInfo, field_validator

from connectors.base.config import (
    ConnectionConfig,
    allows_private_networks,
    check_url,
    reveal_secret,
)
from connectors.base.inbound import InboundSettings

__all__ = ["WebhookConnectionConfig", "WebhookInbound", "decode_signing_secret"]

_WHSEC_PREFIX: Final[str] = "whsec_"
_MIN_SECRET_BYTES: Final[int] = 24
_MAX_SECRET_BYTES: Final[int] = 64


def decode_signing_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; raises ``ValueError`` without echoing it.

    Padding is optional (the reference Python library accepts unpadded secrets too).
    """
    if not secret.startswith(_WHSEC_PREFIX):
        msg = f"signing secret must start with {_WHSEC_PREFIX!r}"
        raise ValueError(msg)
    encoded = secret.removeprefix(_WHSEC_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        msg = f"signing secret must be {_WHSEC_PREFIX!r} followed by base64"
        raise ValueError(msg) from None
    if not _MIN_SECRET_BYTES <= len(key) <= _MAX_SECRET_BYTES:
        msg = (
            f"signing secret must decode to {_MIN_SECRET_BYTES} to {_MAX_SECRET_BYTES} bytes, "
            f"got {len(key)}"
        )
        raise ValueError(msg)
    return key


class WebhookInbound(InboundSettings):
    """The inbound block of a webhook connection: requests signed with ``secret``.

    ``secret`` is a ``whsec_`` secret as for outbound (24 to 64 bytes once decoded); it is the
    partner's signing secret, distinct from the outbound one. Errors never echo it.
    """

    secret: SecretStr

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, secret: SecretStr) -> SecretStr:
        decode_signing_secret(reveal_secret(secret))
        return secret


class WebhookConnectionConfig(ConnectionConfig):
    """A tenant's signed webhook endpoint."""

    url: HttpUrl
    secret: SecretStr
    timeout_seconds: float = Field(default=15.0, gt=0, le=30)
    rate_limit_per_second: float | None = Field(default=None, gt=0, le=1000)
    max_concurrency: int | None = Field(default=None, ge=1, le=100)
    inbound: WebhookInbound | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: HttpUrl, info: ValidationInfo) -> HttpUrl:
        return check_url(
            url,
            what="webhook URL",
            allow_private_networks=allows_private_networks(info),
            allow_query=True,
        )

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, secret: SecretStr) -> SecretStr:
        decode_signing_secret(reveal_secret(secret))
        return secret

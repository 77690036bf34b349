"""Verification of the API's bearer JWTs.

Two ways to sign, chosen by configuration (:class:`~processors.settings.AuthSettings`):

- ``HS256`` with ``QI_AUTH_JWT_SECRET``: for local use and tests;
- ``RS256`` with public keys from ``QI_AUTH_JWKS_URL`` (PyJWT's ``PyJWKClient``, keys chosen by
  the token's ``kid``): for production.

The algorithm a token may use is decided by what is configured, never by the token alone:
a token's ``alg`` header is only accepted if it is exactly one of the configured
algorithms, and ``jwt.decode`` is then told to accept that one algorithm and no other. So
``alg: none``, other algorithms, and the HS/RS confusion (an ``HS256`` token "signed" with
the RSA public key) all fail. ``exp`` is required; ``iss`` and ``aud`` are required and
checked when configured (a token that carries ``aud`` while no audience is configured is
refused, as PyJWT does). With a JWKS URL both must be configured: an identity provider signs
tokens for other services too, and only its issuer and our audience make one ours
(:class:`~processors.settings.AuthSettings` refuses a JWKS URL without them). A short HS256
secret is logged here and refused at start outside development (:mod:`processors.startup`).
Clock skew is tolerated up to ``QI_AUTH_LEEWAY_SECONDS``.

Claims: ``sub`` (a non-empty string), ``roles`` (a list of strings; unknown roles are dropped),
``tenant_id`` (required when ``roles`` holds ``tenant_admin``; a tenant id when present).

With neither a secret nor a JWKS URL configured, every token is refused.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Final, Protocol

import jwt
from jwt import PyJWK, PyJWKClient

from processors.auth.principal import TENANT_ID_PATTERN, Principal, Role
from processors.settings import AuthSettings

__all__ = [
    "InvalidTokenError",
    "SigningKeySource",
    "SigningKeysUnavailableError",
    "TokenVerifier",
]

_log = logging.getLogger(__name__)

_HS256: Final = "HS256"
_RS256: Final = "RS256"
_TENANT_ID: Final = re.compile(TENANT_ID_PATTERN)
_MAX_SUB_CHARS: Final = 256
_MAX_TOKEN_CHARS: Final = 16 * 1024
_MIN_SECRET_BYTES: Final = 32
_JWKS_TIMEOUT_SECONDS: Final = 5.0


class InvalidTokenError(Exception):
    """The token cannot be trusted: malformed, expired, badly signed, or with bad claims.

    ``reason`` is a fixed, short description for logs; it never contains the token or claims.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SigningKeysUnavailableError(Exception):
    """The JWKS endpoint does not answer; the token can be neither accepted nor refused."""


class SigningKeySource(Protocol):
    """Where RS256 public keys come from (``jwt.PyJWKClient`` in production)."""

    def get_signing_key_from_jwt(self, token: str) -> PyJWK: ...


class TokenVerifier:
    """Turns a bearer token into a :class:`Principal`, or refuses it."""

    def __init__(
        self,
        *,
        hs256_secret: bytes | None = None,
        signing_keys: SigningKeySource | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        leeway_seconds: float = 30,
    ) -> None:
        self._secret = hs256_secret
        self._signing_keys = signing_keys
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_seconds

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> TokenVerifier:
        """The verifier ``QI_AUTH_*`` describes (logs a warning when nothing is configured)."""
        secret = None
        if settings.jwt_secret is not None and settings.jwt_secret.get_secret_value():
            secret = settings.jwt_secret.get_secret_value().encode("utf-8")
            if len(secret) < _MIN_SECRET_BYTES:
                _log.warning("auth.secret.short", extra={"min_bytes": _MIN_SECRET_BYTES})
        signing_keys = None
        if settings.jwks_url:
            signing_keys = PyJWKClient(
                settings.jwks_url, cache_keys=True, timeout=_JWKS_TIMEOUT_SECONDS
            )
        if secret is None and signing_keys is None:
            _log.warning("auth.unconfigured")
        return cls(
            hs256_secret=secret,
            signing_keys=signing_keys,
            issuer=settings.issuer,
            audience=settings.audience,
            leeway_seconds=settings.leeway_seconds,
        )

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithms accepted, by configuration."""
        accepted: list[str] = []
        if self._secret is not None:
            accepted.append(_HS256)
        if self._signing_keys is not None:
            accepted.append(_RS256)
        return tuple(accepted)

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token.

        Raises:
            InvalidTokenError: the token is malformed, uses an algorithm not configured
                (``none`` included), has a bad signature, is expired or not yet valid, has
                the wrong issuer or audience, or its claims are missing or of the wrong type.
            SigningKeysUnavailableError: RS256 keys are needed and the JWKS endpoint does
                not answer.
        """
        if not token or len(token) > _MAX_TOKEN_CHARS:
            raise InvalidTokenError("malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidTokenError("malformed") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            raise InvalidTokenError("algorithm not accepted")
        key = self._secret if algorithm == _HS256 else await self._public_key(token)
        claims = self._decode(token, key, algorithm)
        return _principal(claims)

    async def _public_key(self, token: str) -> PyJWK:
        source = self._signing_keys
        if source is None:  # pragma: no cover - excluded by the algorithm check
            raise InvalidTokenError("algorithm not accepted")
        try:
            # PyJWKClient fetches over blocking HTTP (cached); keep it off the event loop.
            return await asyncio.to_thread(source.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError as exc:
            raise SigningKeysUnavailableError("JWKS endpoint unavailable") from exc
        except jwt.PyJWTError:
            raise InvalidTokenError("no matching signing key") from None

    def _decode(self, token: str, key: PyJWK | bytes | None, algorithm: str) -> dict[str, Any]:
        if key is None:  # pragma: no cover - excluded by the algorithm check
            raise InvalidTokenError("algorithm not accepted")
        required = ["exp", "sub"]
        if self._issuer is not None:
            required.append("iss")
        if self._audience is not None:
            required.append("aud")
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                options={"require": required},
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
            )
        except jwt.ExpiredSignatureError:
            raise InvalidTokenError("expired") from None
        except jwt.InvalidSignatureError:
            raise InvalidTokenError("bad signature") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidTokenError(f"missing claim {exc.claim}") from None
        except jwt.PyJWTError as exc:
            raise InvalidTokenError(type(exc).__name__) from None


def _principal(claims: dict[str, Any]) -> Principal:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > _MAX_SUB_CHARS:
        raise InvalidTokenError("bad claim sub")
    raw_roles = claims.get("roles")
    if not isinstance(raw_roles, list) or not all(isinstance(r, str) for r in raw_roles):
        raise InvalidTokenError("bad claim roles")
    known = {role.value for role in Role}
    roles = frozenset(Role(r) for r in raw_roles if r in known)
    tenant_id = claims.get("tenant_id")
    if tenant_id is not None and (
        not isinstance(tenant_id, str) or _TENANT_ID.fullmatch(tenant_id) is None
    ):
        raise InvalidTokenError("bad claim tenant_id")
    if Role.TENANT_ADMIN in roles and tenant_id is None:
        raise InvalidTokenError("missing claim tenant_id")
    return Principal(sub=sub, tenant_id=tenant_id, roles=roles)

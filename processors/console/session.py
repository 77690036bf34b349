"""The console's session: sign-in with the API's bearer JWT, a cookie, and CSRF tokens.

What the cookie holds. The session cookie (:data:`SESSION_COOKIE`) holds the bearer JWT
itself, nothing else: the token is already a signed, expiring credential, and every console
request verifies it again with the API's own :class:`~processors.auth.TokenVerifier` (the
app's ``token_verifier``), so expiry, signature, issuer, audience and roles are judged exactly
as for ``Authorization: Bearer``. No server-side session store and no extra server key are
needed, and a console behind several API replicas works without sticky sessions. The cookie
is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page sends it),
``Secure`` when the request came over HTTPS (``request.url.scheme``: run uvicorn with
``--proxy-headers`` behind a TLS-terminating proxy), limited to ``Path=/console`` and
expires with the token (``Max-Age`` up to its ``exp``). The token is never logged and never
rendered into a page.

CSRF. Every form that changes state carries ``csrf_token``, bound to the session:
``HMAC-SHA256(key=the session's token, "qi-console-csrf")`` (:func:`csrf_token`). Only a page
of this session knows it; it reveals nothing of the token (HMAC is one-way); it changes when
the user signs in again. Every console POST checks it (:func:`check_csrf`), after the caller is
authenticated, before anything changes; a POST without it, or with another session's, is
403 ``csrf_failed``. The sign-in form has no session yet: its POST needs a valid token in the
body, and, like every console POST, is refused (403 ``cross_origin``) when the browser says it
comes from another site's page (``Origin``, :func:`processors.console.pages.check_origin`), so
another site cannot sign a browser in with the attacker's token.

OIDC seam. Sign-in is one call: :func:`start_session` (verify a bearer token, set the cookie).
A later OIDC login adds two routes (redirect to the identity provider; a callback that trades
the code for an access token the API's verifier accepts, i.e. issued for our audience) and
ends the callback with :func:`start_session`, exactly as ``POST /console/login`` does now.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Final

import jwt
from fastapi import Request, Response

from processors.auth import InvalidTokenError, Principal, SigningKeysUnavailableError
from processors.auth.dependencies import get_token_verifier
from processors.errors import Forbidden, ServiceUnavailable, Unauthorized

__all__ = [
    "CSRF_FIELD",
    "SESSION_COOKIE",
    "check_csrf",
    "csrf_token",
    "end_session",
    "session_principal",
    "session_token",
    "start_session",
]

_log = logging.getLogger(__name__)

SESSION_COOKIE: Final = "qi_console_session"
CSRF_FIELD: Final = "csrf_token"
COOKIE_PATH: Final = "/console"
_CSRF_CONTEXT: Final = b"qi-console-csrf"


def session_token(request: Request) -> str | None:
    """The bearer token of the request's session cookie (``None``: no session). Its length is
    the verifier's to judge, as for a bearer header (an over-long one is refused there)."""
    return request.cookies.get(SESSION_COOKIE) or None


async def _verify(request: Request, token: str) -> Principal:
    try:
        return await get_token_verifier(request).verify(token)
    except InvalidTokenError as exc:
        _log.info(
            "console.session.rejected",
            extra={"reason": exc.reason, "path": request.url.path, "method": request.method},
        )
        raise Unauthorized(
            "the session's token is invalid or expired; sign in again", code="invalid_token"
        ) from None
    except SigningKeysUnavailableError:
        _log.warning("auth.jwks.unavailable")
        raise ServiceUnavailable("cannot verify tokens right now") from None


async def session_principal(request: Request) -> Principal:
    """The signed-in caller, verified as the API verifies a bearer token; 401 without a
    session or with one whose token no longer verifies."""
    token = session_token(request)
    if token is None:
        raise Unauthorized("sign in to use the console", code="missing_token")
    return await _verify(request, token)


def _expires_in(token: str) -> int:
    """Seconds until the (already verified) token's ``exp``; at least 1."""
    claims = jwt.decode(token, options={"verify_signature": False})
    exp = claims.get("exp")
    remaining = int(exp) - int(time.time()) if isinstance(exp, int | float) else 0
    return max(remaining, 1)


async def start_session(request: Request, response: Response, token: str) -> Principal:
    """Verify ``token`` as the API does and set the session cookie on ``response``; 401 for a
    token the API would refuse. The one entry point of every sign-in (see the OIDC seam)."""
    if not token:
        raise Unauthorized("paste a bearer token", code="missing_token")
    principal = await _verify(request, token)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=_expires_in(token),
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    _log.info("console.session.started", extra={"sub": principal.sub})
    return principal


def end_session(request: Request, response: Response) -> None:
    """Clear the session cookie (with the attributes it was set with)."""
    response.delete_cookie(
        SESSION_COOKIE,
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def csrf_token(token: str) -> str:
    """The CSRF token of the session whose bearer token is ``token``."""
    return hmac.new(token.encode(), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


def check_csrf(request: Request, submitted: str | None) -> None:
    """403 ``csrf_failed`` unless ``submitted`` is this session's CSRF token."""
    token = session_token(request)
    if token is None or not submitted or not hmac.compare_digest(csrf_token(token), submitted):
        _log.info("console.csrf.refused", extra={"path": request.url.path})
        raise Forbidden("the form is stale or forged; reload the page", code="csrf_failed")

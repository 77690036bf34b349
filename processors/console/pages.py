"""The console's routes: sign-in, the home page, and the pages of one tenant.

::

    GET  /console/                                   home: the caller's tenants (switcher)
    GET  /console/switch?tenant_id=T                 303 to T's connections (no state)
    GET  /console/login                              the sign-in form
    POST /console/login            token=JWT         verify, set the session, 303 home
    POST /console/logout           csrf_token        clear the session, 303 to the form
    GET  /console/t/{tenant_id}/connections
    POST /console/t/{tenant_id}/connections/{connector}/event-types
    GET  /console/t/{tenant_id}/matches?connector=&cursor=
    POST /console/t/{tenant_id}/matches/{connector}/{kind}/{queast_id}/{action}
         action: confirm | relink (partner_object_id) | unlink
    GET  /console/t/{tenant_id}/deliveries?connector=&status=&event_type=&entity_id=
                                          &event_id=&since=&until=&cursor=

Same services, same rules. Every page builds the services the JSON API builds, from the same
dependencies (:func:`~processors.tenants.endpoints.get_connection_service`,
:func:`~processors.deliveries.endpoints.get_delivery_record_index`, the match-review service
of :mod:`processors.tenants.matches`), and every action calls the API's endpoint function (a
match decision: ``confirm_match``, ``link_match``, ``unlink_match``, which also answer 503
``release_failed`` as the API does) or the method it calls, with the caller as the actor.
Access is the API's: the session's principal
(:func:`~processors.console.session.session_principal`, 401 without one) must pass
:func:`~processors.auth.check_tenant_access` for the path's tenant (403 with the API's fixed
message), checked before anything is read, the form body included. Errors a service raises
keep their status and code and are shown as an HTML page (:class:`ConsoleRoute`).

Editing event-type switches is a connection save (:meth:`ConnectionService.save_connection`,
what ``PUT /connections/{connector}`` calls): the body is the stored connection as the API
shows it, with every secret field left out (the service keeps the stored secret, as for any
PUT that omits one) and the new ``event_types``; it is validated by that connector's body
model, and the service applies the allowlist and every other rule.

Forms. POST bodies are ``application/x-www-form-urlencoded``, at most :data:`MAX_FORM_BYTES`
(413); parsed here with the standard library. Every POST but the sign-in checks the CSRF token
after the access check and before any change. Actions answer 303 to the page they came from
(post/redirect/get); the outcome (for a match decision: how many held records it released and
the release id, from the service's answer) travels in the query string and is shown at the top.

The operations pages (dead letters, replays and backfills, preview, inbound reviews, the
allowlist) are in :mod:`processors.console.operations`, registered on this :data:`router`.
Extension points for the next pages: add a
``@router.get("/t/{tenant_id}/<page>")`` handler that starts with
``principal = await tenant_principal(request, tenant_id)``, builds the service its API router
builds, and renders a template extending ``base.html``; add ``(<page>, "Title")`` to
:data:`TENANT_PAGES` for the navigation. Actions: ``@router.post(...)`` calling
``await action_form(request, tenant_id)`` (access, bounded body, CSRF), then the service, then
``redirect(...)``. Buttons carry ``data-action`` and their row ``data-id``
(``templates/README.md`` lists the page conventions).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from pydantic import AwareDatetime, TypeAdapter, ValidationError

from processors.auth import TENANT_ID_PATTERN, Principal
from processors.auth.dependencies import check_tenant_access
from processors.console.session import (
    CSRF_FIELD,
    check_csrf,
    csrf_token,
    end_session,
    session_principal,
    session_token,
    start_session,
)
from processors.deliveries.endpoints import delivery_page, get_delivery_record_index
from processors.deliveries.models import DeliveryRecord, DeliveryStatus
from processors.domain.events import EventType
from processors.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ServiceError,
    UnsupportedMediaType,
    ValidationFailed,
)
from processors.tenants import matches as matches_api
from processors.tenants.endpoints import get_connection_service
from processors.tenants.models import Connector
from processors.tenants.schemas import ConnectionOut, connection_body
from processors.tenants.secret_fields import secret_field_names

__all__ = ["MAX_FORM_BYTES", "TENANT_PAGES", "ConsoleRoute", "router"]

_log = logging.getLogger(__name__)

MAX_FORM_BYTES: Final = 16 * 1024
"""Largest form body a console POST accepts."""

TENANT_PAGES: Final[tuple[tuple[str, str], ...]] = (
    ("connections", "Connections"),
    ("matches", "Matches"),
    ("deliveries", "Deliveries"),
    ("dead-letters", "Dead letters"),
    ("replays", "Replays"),
    ("preview", "Preview"),
    ("inbound-reviews", "Inbound reviews"),
)
"""The pages of a tenant, in navigation order: (path segment, title)."""

_TEMPLATES: Final = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
_TENANT_ID: Final = re.compile(TENANT_ID_PATTERN)
_STATIC: Final = Path(__file__).parent / "static"
_TIME: Final = TypeAdapter(AwareDatetime)
_KINDS: Final = ("company", "person")
_ACTIONS: Final = ("confirm", "relink", "unlink")
_MAX_FORM_FIELDS: Final = 100
_MATCH_PAGE_SIZE: Final = 100
_DELIVERY_PAGE_SIZE: Final = 50
_RECENT_DELIVERIES: Final = 200
"""How many of the tenant's newest delivery records the Connections page looks through for
each connection's last delivery."""

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def render(
    request: Request, template: str, context: Mapping[str, Any], *, status_code: int = 200
) -> HTMLResponse:
    """``template`` with ``context`` and what every page needs (``csrf_token``, the pages)."""
    token = session_token(request)
    full = {
        "csrf_token": csrf_token(token) if token else "",
        "csrf_field": CSRF_FIELD,
        "tenant_pages": TENANT_PAGES,
        **context,
    }
    response = _TEMPLATES.TemplateResponse(request, template, full, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    )
    return response


class ConsoleRoute(APIRoute):
    """A route whose errors are HTML pages with the status and code the API would answer
    (a :class:`ServiceError`, or a path or query that does not validate: 422)."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def html_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except ServiceError as exc:
                return _error_page(request, exc)
            except RequestValidationError as exc:
                details = [
                    {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))}
                    for e in exc.errors()
                ]
                return _error_page(request, ValidationFailed(details=details))

        return html_errors


def _error_page(request: Request, exc: ServiceError) -> Response:
    response = render(
        request,
        "error.html",
        {
            "title": HTTPStatus(exc.status_code).phrase,
            "status": exc.status_code,
            "code": exc.code,
            "message": exc.message,
            "error": exc,
        },
        status_code=exc.status_code,
    )
    for name, value in exc.headers.items():
        response.headers[name] = value
    return response


router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


def redirect(url: str) -> RedirectResponse:
    """303 to ``url`` (after a POST: the browser GETs it)."""
    return RedirectResponse(url, status_code=303)


async def tenant_principal(request: Request, tenant_id: str) -> Principal:
    """The signed-in caller, if allowed on ``tenant_id``: 401, then 403, then 422 for a path
    that is not a tenant id, in the API's order (access before anything else is judged)."""
    principal = await session_principal(request)
    check_tenant_access(principal, tenant_id)
    check_tenant_id(tenant_id)
    return principal


def check_origin(request: Request) -> None:
    """403 ``cross_origin`` for a POST whose ``Origin`` is another site's (browsers send it
    with every form POST): with ``SameSite=Strict`` and the CSRF token, a third guard, and
    the one that keeps another site from signing a browser in with the attacker's token."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    # the host only: behind a TLS-terminating proxy the app may see http for an https origin
    if urlsplit(origin).netloc != request.url.netloc:
        _log.info("console.origin.refused", extra={"path": request.url.path})
        raise Forbidden("the form was sent from another site", code="cross_origin")


async def read_form(request: Request) -> dict[str, str]:
    """The request's urlencoded form (first value of each field), sent from this site; 403
    from another origin, 413 past :data:`MAX_FORM_BYTES`, 415 for another media type."""
    check_origin(request)
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise PayloadTooLarge(f"request body is over {MAX_FORM_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_FORM_BYTES:
            raise PayloadTooLarge(f"request body is over {MAX_FORM_BYTES} bytes")
    if not body:
        return {}
    if media_type != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the form is not UTF-8", code="malformed_form") from None
    try:
        fields = parse_qs(text, max_num_fields=_MAX_FORM_FIELDS)
    except ValueError:  # more fields than that
        raise PayloadTooLarge(f"the form has more than {_MAX_FORM_FIELDS} fields") from None
    return {name: values[0] for name, values in fields.items()}


async def action_form(request: Request, tenant_id: str) -> tuple[Principal, dict[str, str]]:
    """What every tenant action starts with: access (401/403), the bounded form, CSRF (403)."""
    principal = await tenant_principal(request, tenant_id)
    form = await read_form(request)
    check_csrf(request, form.get(CSRF_FIELD))
    return principal, form


def check_tenant_id(tenant_id: str) -> str:
    """``tenant_id`` if it is a tenant id (else 422, as the API's path check answers)."""
    if not _TENANT_ID.fullmatch(tenant_id):
        raise ValidationFailed(details=[{"loc": ["path", "tenant_id"], "msg": "not a tenant id"}])
    return tenant_id


def _connector(name: str) -> Connector:
    """The path's connector (422 for a name that is not one), judged after the access check,
    as the API judges its path."""
    try:
        return Connector(name)
    except ValueError:
        raise ValidationFailed(
            details=[{"loc": ["path", "connector"], "msg": "not a registered connector"}]
        ) from None


@router.get("/static/console.css")
async def stylesheet() -> Response:
    """The console's stylesheet (its only static file: the pages use no script)."""
    return FileResponse(_STATIC / "console.css", media_type="text/css")


# --- sign-in ---------------------------------------------------------------------------------


@router.get("/login")
async def login_form(request: Request) -> Response:
    return render(request, "login.html", {"title": "Sign in"})


@router.post("/login")
async def login(request: Request) -> Response:
    form = await read_form(request)
    response = redirect("/console/")
    try:
        await start_session(request, response, form.get("token", "").strip())
    except ServiceError as exc:
        return render(
            request,
            "login.html",
            {"title": "Sign in", "error": exc.message},
            status_code=exc.status_code,
        )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    await session_principal(request)
    form = await read_form(request)
    check_csrf(request, form.get(CSRF_FIELD))
    response = redirect("/console/login?signed_out=1")
    end_session(request, response)
    return response


# --- home ------------------------------------------------------------------------------------


@router.get("/")
async def home(request: Request) -> Response:
    principal = await session_principal(request)
    own = principal.tenant_id
    tenants = [own] if own is not None and principal.can_access_tenant(own) else []
    return render(
        request,
        "home.html",
        {"title": "Home", "principal": principal, "tenants": tenants},
    )


@router.get("/switch")
async def switch_tenant(request: Request, tenant_id: str = "") -> Response:
    """The tenant switcher's target: a plain redirect, nothing changes."""
    principal = await session_principal(request)
    tenant = tenant_id.strip()
    check_tenant_access(principal, tenant)
    return redirect(f"/console/t/{check_tenant_id(tenant)}/connections")


# --- connections -----------------------------------------------------------------------------


@router.get("/t/{tenant_id}/connections")
async def connections_page(request: Request, tenant_id: str) -> Response:
    principal = await tenant_principal(request, tenant_id)
    service = get_connection_service(request)
    shown = [
        ConnectionOut.from_record(c, await service.status(c))
        for c in await service.list_connections(tenant_id)
    ]
    recent = await get_delivery_record_index(request).query(tenant_id, limit=_RECENT_DELIVERIES)
    last: dict[str, DeliveryRecord] = {}
    for record in recent.items:  # newest first: the first seen is the connection's last
        last.setdefault(record.connection_id, record)
    return render(
        request,
        "connections.html",
        {
            "title": "Connections",
            "page": "connections",
            "tenant_id": tenant_id,
            "principal": principal,
            "connections": shown,
            "last_delivery": last,
            "recent_deliveries": _RECENT_DELIVERIES,
            "event_types": [e.value for e in EventType],
            "saved": request.query_params.get("saved"),
        },
    )


def _without_secrets(block: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
    """``block`` without its secret fields, at any depth."""
    return {
        key: _without_secrets(value, names) if isinstance(value, dict) else value
        for key, value in block.items()
        if key not in names
    }


@router.post("/t/{tenant_id}/connections/{connector_name}/event-types")
async def save_event_types(request: Request, tenant_id: str, connector_name: str) -> Response:
    principal, form = await action_form(request, tenant_id)
    connector = _connector(connector_name)
    service = get_connection_service(request)
    record = await service.get_connection(tenant_id, connector)
    switches = {e.value: form.get(f"event_type.{e.value}") == "on" for e in EventType}
    shown = ConnectionOut.from_record(record)
    body: dict[str, Any] = {
        **_without_secrets(shown.settings, secret_field_names()),
        "enabled": record.enabled,
        "delivery_mode": record.delivery_mode.value,
        "event_types": switches,
        "export_non_strict_signals": record.export_non_strict_signals,
    }
    try:
        parsed = connection_body(connector).model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed.from_pydantic(exc, loc_prefix=("body",)) from None
    await service.save_connection(tenant_id, connector, parsed, actor=principal)
    return redirect(f"/console/t/{tenant_id}/connections?saved={connector.value}")


# --- matches ---------------------------------------------------------------------------------


@router.get("/t/{tenant_id}/matches")
async def matches_page(
    request: Request, tenant_id: str, connector: str = "", cursor: str = ""
) -> Response:
    principal = await tenant_principal(request, tenant_id)
    connections = get_connection_service(request)
    resolving = await connections.list_connections(tenant_id)
    chosen = next((c for c in resolving if c.connector.value == connector), None)
    if chosen is None and connector:
        raise NotFound("no connection for this connector", code="connection_not_found")
    if chosen is None and resolving:
        chosen = resolving[0]
    links: list[Any] = []
    reviews: list[Any] = []
    next_cursor: str | None = None
    if chosen is not None:
        page = await matches_api._review_service(request).page(  # the API's own builder
            chosen.connection_id, limit=_MATCH_PAGE_SIZE, cursor=cursor or None
        )
        links, reviews, next_cursor = page.links, page.reviews, page.next_cursor
    return render(
        request,
        "matches.html",
        {
            "title": "Matches",
            "page": "matches",
            "tenant_id": tenant_id,
            "principal": principal,
            "connections": resolving,
            "chosen": chosen,
            "links": links,
            "reviews": reviews,
            "next_cursor": next_cursor,
            "outcome": _decision_outcome(request),
        },
    )


def _decision_outcome(request: Request) -> dict[str, str] | None:
    query = request.query_params
    action = query.get("decided")
    if action not in _ACTIONS:
        return None
    return {
        "action": action,
        "queast_id": query.get("queast_id", ""),
        "released": query.get("released", "0"),
        "release_id": query.get("release_id", ""),
    }


@router.post("/t/{tenant_id}/matches/{connector}/{kind}/{queast_id}/{action}")
async def decide_match(
    request: Request,
    tenant_id: str,
    connector: Connector,
    *,
    kind: str,
    queast_id: str,
    action: str,
) -> Response:
    principal, form = await action_form(request, tenant_id)
    if kind not in _KINDS or action not in _ACTIONS or not 1 <= len(queast_id) <= 128:
        raise ValidationFailed(details=[{"loc": ["path"], "msg": "unknown kind or action"}])
    # the API's endpoints: the connection's lookup, the decision, 503 if the release failed
    match: dict[str, Any] = {
        "tenant_id": tenant_id,
        "connector": connector,
        "kind": kind,
        "queast_id": queast_id,
        "connections": get_connection_service(request),
        "reviews": matches_api._review_service(request),
    }
    if action == "confirm":
        decided = await matches_api.confirm_match(**match, actor=principal)
        released, release_id = decided.released, decided.release_id
    elif action == "relink":
        try:
            body = matches_api.LinkIn.model_validate(
                {"partner_object_id": form.get("partner_object_id", "").strip()}
            )
        except ValidationError as exc:
            raise ValidationFailed.from_pydantic(exc, loc_prefix=("body",)) from None
        decided = await matches_api.link_match(**match, body=body, actor=principal)
        released, release_id = decided.released, decided.release_id
    else:
        answer = await matches_api.unlink_match(**match, _actor=principal)
        released = int(answer.headers["Qi-Released"])
        release_id = answer.headers.get("Qi-Release-Id")
    _log.info(
        "console.match.decided",
        extra={
            "tenant_id": tenant_id,
            "connector": connector.value,
            "action": action,
            "released": released,
            "actor_sub": principal.sub,
        },
    )
    outcome = {
        "connector": connector.value,
        "decided": action,
        "queast_id": queast_id,
        "released": str(released),
        "release_id": release_id or "",
    }
    return redirect(f"/console/t/{tenant_id}/matches?{urlencode(outcome)}")


# --- deliveries ------------------------------------------------------------------------------


def optional_time(name: str, value: str) -> datetime | None:
    if not value:
        return None
    try:
        return _TIME.validate_python(value)
    except ValidationError:
        raise ValidationFailed(
            details=[{"loc": ["query", name], "msg": "an ISO 8601 time with a timezone"}]
        ) from None


@router.get("/t/{tenant_id}/deliveries")
async def deliveries_page(request: Request, tenant_id: str) -> Response:
    principal = await tenant_principal(request, tenant_id)
    query = request.query_params
    filters = {
        name: query.get(name, "").strip()
        for name in ("connector", "status", "event_type", "entity_id", "event_id", "since", "until")
    }
    status: DeliveryStatus | None = None
    if filters["status"]:
        try:
            status = DeliveryStatus(filters["status"])
        except ValueError:
            raise ValidationFailed(
                details=[{"loc": ["query", "status"], "msg": "not a delivery status"}]
            ) from None
    since = optional_time("since", filters["since"])
    until = optional_time("until", filters["until"])
    for name in ("event_type", "event_id", "entity_id"):
        if len(filters[name]) > 128:
            raise ValidationFailed(details=[{"loc": ["query", name], "msg": "too long"}])
    page = await delivery_page(
        get_delivery_record_index(request),
        tenant_id,
        status=status,
        event_type=filters["event_type"] or None,
        event_id=filters["event_id"] or None,
        since=since,
        until=until,
        limit=_DELIVERY_PAGE_SIZE,
        cursor=query.get("cursor") or None,
    )
    items: list[DeliveryRecord] = [
        r
        for r in page.items
        if (not filters["connector"] or r.connector == filters["connector"])
        and (not filters["entity_id"] or r.entity_id == filters["entity_id"])
    ]
    next_query = urlencode({**{k: v for k, v in filters.items() if v}, "cursor": page.next_cursor})
    return render(
        request,
        "deliveries.html",
        {
            "title": "Deliveries",
            "page": "deliveries",
            "tenant_id": tenant_id,
            "principal": principal,
            "items": items,
            "filters": filters,
            "statuses": [s.value for s in DeliveryStatus],
            "connectors": [c.value for c in Connector],
            "event_types": [e.value for e in EventType],
            "next_query": next_query if page.next_cursor else None,
        },
    )

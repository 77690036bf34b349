"""A real local HubSpot sandbox: CRM objects, search, associations, OAuth and rate limits.

One sandbox stands in for ``https://api.hubapi.com``; each *portal* in it is one HubSpot
account with its own objects, limits and counters. Requests are authenticated by bearer
token (private app tokens and OAuth access tokens both map to a portal), in memory:

- ``POST /crm/v3/objects/{companies|contacts|notes}/batch/{upsert|update|create|read|archive}``
  and ``POST .../search``, ``GET .../{id}``: HubSpot's request and response shapes
  (``results``, ``status: COMPLETE``, upsert's ``new``); per-input failures answer **207**
  with ``numErrors`` and ``errors[]`` whose ``context.objectWriteTraceId`` names the input
  (unknown property -> ``PROPERTY_DOESNT_EXIST``; unique-value clash -> ``CONFLICT``;
  missing record -> ``OBJECT_NOT_FOUND``). Malformed bodies and more than 100 inputs
  answer 400 with HubSpot's error body, nothing written;
- ``POST .../search`` like HubSpot's: filter groups ORed, filters ANDed; ``EQ``/``NEQ``
  compare case-insensitively, ``IN``/``NOT_IN`` take a ``values`` list whose string values
  must be lower case (an upper-case value matches nothing), ``CONTAINS_TOKEN`` matches a
  word; pages of ``limit`` (at most 200) with ``paging.next.after``. Answered 400 with
  HubSpot's error body: a body over 3,000 characters, more than 5 filter groups, 6 filters
  in a group or 18 in all, ``IN`` without ``values`` (or ``EQ`` without ``value``), an
  unknown property. Objects appear in results ``search_delay_seconds`` after creation;
- ``POST /crm/v4/associations/{from}/{to}/batch/associate/default`` (HUBSPOT_DEFINED
  types: 279/280 contact-company, 190/189 note-company, 202/201 note-contact) and notes
  created with ``associations``; ``GET /crm/v4/objects/{type}/{id}/associations/{to}``;
- ``POST /oauth/v1/token``: the refresh-token grant; access tokens expire for real after
  the OAuth app's ``expires_in``; an expired or unknown token gets 401;
- rate limits like HubSpot's: a rolling window per portal (``burst_max`` requests per
  ``interval_ms``, search excluded) reported in ``X-HubSpot-RateLimit-Max``,
  ``-Remaining`` and ``-Interval-Milliseconds`` (and ``-Daily``/``-Daily-Remaining`` for
  private apps), 429 ``{"status": "error", "message": "You have reached your
  ten_secondly_rolling limit.", "errorType": "RATE_LIMIT", "correlationId": ...,
  "policyName": "TEN_SECONDLY_ROLLING"}``; search ``search_per_second`` in a rolling
  second (policy ``SECONDLY``, no headers); a daily budget (policy ``DAILY``). Rejected
  requests do not count against the window.

Controls, from Python (:class:`SandboxState`, :class:`HubSpotSandbox`) or over HTTP
(bodies in the ``_PortalIn``, :class:`PortalLimits`, ``_Failure``, ``_SeedIn``,
``_OAuthAppIn`` and ``_RefreshTokenIn`` models):

- ``POST   /_control/portals``                         create a portal (token, limits)
- ``PUT    /_control/portals/{portal}/limits``          set its limits
- ``POST   /_control/portals/{portal}/fail``            fail the next N requests with a status
- ``POST   /_control/portals/{portal}/expire-tokens``   expire every access token now
- ``POST   /_control/portals/{portal}/objects/{type}``  seed ``{"properties": {...}}``
- ``GET    /_control/portals/{portal}/objects/{type}``  everything stored (archived too)
- ``GET    /_control/portals/{portal}/associations``    every association
- ``GET    /_control/portals/{portal}/stats``           request, status and 429 counts
- ``POST   /_control/oauth-apps``                       register a public app
- ``POST   /_control/portals/{portal}/refresh-tokens``  install it with a refresh token
- ``DELETE /_control``                                  forget everything

Time comes from ``SandboxState(clock=..., monotonic=...)`` (default: real wall and monotonic
time): the sandbox's own unit tests inject a clock they move by hand, so rolling windows and
token expiry never depend on how fast a loaded machine runs the requests.

In tests ``with HubSpotSandbox() as sandbox:`` serves it on loopback in a daemon thread;
for local runs, ``python -m tests.sandboxes.hubspot --port 8910 --token pat-local``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal
from urllib.parse import parse_qs

import uvicorn
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.sandboxes._server import (
    ThreadedServer,
    base_url,
    listen,
    serve_until_interrupted,
    uvicorn_server,
)

__all__ = [
    "ASSOCIATION_TYPES",
    "DEFAULT_PROPERTIES",
    "DEFAULT_UNIQUE_PROPERTIES",
    "ApiResponse",
    "HubSpotSandbox",
    "PortalLimits",
    "PortalStats",
    "RequestEntry",
    "SandboxApp",
    "SandboxState",
    "main",
]

ObjectType = Literal["companies", "contacts", "notes"]

_TYPE_ALIASES: Final[dict[str, ObjectType]] = {
    "companies": "companies",
    "company": "companies",
    "0-2": "companies",
    "contacts": "contacts",
    "contact": "contacts",
    "0-1": "contacts",
    "notes": "notes",
    "note": "notes",
    "0-46": "notes",
}
_TYPE_IDS: Final[dict[ObjectType, str]] = {"companies": "0-2", "contacts": "0-1", "notes": "0-46"}

DEFAULT_PROPERTIES: Final[Mapping[ObjectType, frozenset[str]]] = {
    "companies": frozenset(
        {
            "name",
            "domain",
            "hs_additional_domains",
            "website",
            "linkedin_company_page",
            "industry",
            "numberofemployees",
            "country",
            "city",
            "phone",
            "description",
            "queast_id",
            "queast_industry",
        }
    ),
    "contacts": frozenset(
        {
            "email",
            "hs_additional_emails",
            "firstname",
            "lastname",
            "jobtitle",
            "phone",
            "company",
            "hs_linkedin_url",
            "queast_id",
            "queast_linkedin_url",
        }
    ),
    "notes": frozenset({"hs_timestamp", "hs_note_body", "queast_note_id"}),
}
"""Writable properties per object type: HubSpot defaults plus the Queast custom ones."""

DEFAULT_UNIQUE_PROPERTIES: Final[Mapping[ObjectType, frozenset[str]]] = {
    "companies": frozenset({"queast_id"}),
    "contacts": frozenset({"email", "queast_id"}),
    "notes": frozenset({"queast_note_id"}),
}
_READ_ONLY: Final[frozenset[str]] = frozenset(
    {"hs_object_id", "createdate", "hs_createdate", "hs_lastmodifieddate", "lastmodifieddate"}
)
_SEARCH_DEFAULTS: Final[Mapping[ObjectType, tuple[str, ...]]] = {
    "companies": ("name", "domain", "createdate", "hs_lastmodifieddate", "hs_object_id"),
    "contacts": (
        "email",
        "firstname",
        "lastname",
        "createdate",
        "lastmodifieddate",
        "hs_object_id",
    ),
    "notes": ("hs_timestamp", "hs_createdate", "hs_lastmodifieddate", "hs_object_id"),
}
ASSOCIATION_TYPES: Final[Mapping[tuple[ObjectType, ObjectType], int]] = {
    ("contacts", "companies"): 279,
    ("companies", "contacts"): 280,
    ("notes", "companies"): 190,
    ("companies", "notes"): 189,
    ("notes", "contacts"): 202,
    ("contacts", "notes"): 201,
}
_MAX_BATCH_INPUTS: Final[int] = 100
_MAX_ASSOCIATION_INPUTS: Final[int] = 2000
_MAX_FILTER_GROUPS: Final[int] = 5
_MAX_FILTERS_PER_GROUP: Final[int] = 6
_MAX_FILTERS: Final[int] = 18
_MAX_SEARCH_LIMIT: Final[int] = 200
_MAX_SEARCH_BODY_CHARS: Final[int] = 3000
_SEARCH_WINDOW_SECONDS: Final[float] = 1.0


# -- public models -----------------------------------------------------------------------------


class PortalLimits(BaseModel):
    """A portal's limits: ``burst_max`` per rolling ``interval_ms`` (search excluded),
    ``search_per_second`` per rolling second, ``daily`` requests (``None``: unlimited)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    burst_max: int = Field(default=100, ge=1)
    interval_ms: int = Field(default=10_000, ge=1)
    search_per_second: int = Field(default=5, ge=1)
    daily: int | None = Field(default=250_000, ge=0)


class RequestEntry(BaseModel):
    """One API request a portal answered (control and token requests are not listed)."""

    model_config = ConfigDict(frozen=True)

    at: float
    method: str
    path: str
    status: int
    policy: str | None = None
    inputs: int = 0
    search_values: int = 0
    """Values in the filters of a search request (an ``IN`` filter counts each value)."""


class PortalStats(BaseModel):
    """Counters of one portal."""

    model_config = ConfigDict(frozen=True)

    requests: int
    by_status: dict[int, int]
    by_route: dict[str, int]
    rate_limited: dict[str, int]
    token_requests: int
    max_burst_in_window: int

    @property
    def throttled(self) -> int:
        """Requests answered 429, any policy."""
        return sum(self.rate_limited.values())


@dataclass(frozen=True, slots=True)
class ApiResponse:
    """An answer of the sandbox: status, JSON body (``None``: empty) and headers."""

    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


class _Failure(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1)
    status: int = Field(ge=400, le=599)
    retry_after: float | None = Field(default=None, ge=0)
    path_contains: str | None = None
    body: dict[str, Any] | None = None


class _PortalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    portal_id: int | None = None
    private_app_token: str | None = None
    limits: PortalLimits | None = None
    search_delay_seconds: float = Field(default=0.0, ge=0)


class _OAuthAppIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: str
    client_secret: str
    expires_in: int = Field(default=1800, ge=1)


class _RefreshTokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: str
    refresh_token: str


class _SeedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    properties: dict[str, str]


# -- request bodies (HubSpot's shapes) ------------------------------------------------------------

Value = str | int | float | bool | None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Id(_Body):
    id: str | int


class _AssociationType(_Body):
    associationCategory: str
    associationTypeId: int


class _AssociationIn(_Body):
    to: _Id
    types: list[_AssociationType] = Field(min_length=1)


class _UpsertInput(_Body):
    id: str = Field(min_length=1)
    idProperty: str
    properties: dict[str, Value]
    objectWriteTraceId: str | None = None


class _UpdateInput(_Body):
    id: str = Field(min_length=1)
    idProperty: str | None = None
    properties: dict[str, Value]
    objectWriteTraceId: str | None = None


class _CreateInput(_Body):
    properties: dict[str, Value]
    associations: list[_AssociationIn] = Field(default_factory=list)
    objectWriteTraceId: str | None = None


class _UpsertBody(_Body):
    inputs: list[_UpsertInput]


class _UpdateBody(_Body):
    inputs: list[_UpdateInput]


class _CreateBody(_Body):
    inputs: list[_CreateInput]


class _ReadBody(_Body):
    inputs: list[_Id]
    properties: list[str] = Field(default_factory=list)
    propertiesWithHistory: list[str] = Field(default_factory=list)
    idProperty: str | None = None


class _ArchiveBody(_Body):
    inputs: list[_Id]


class _Filter(_Body):
    propertyName: str
    operator: Literal[
        "EQ", "NEQ", "IN", "NOT_IN", "HAS_PROPERTY", "NOT_HAS_PROPERTY", "CONTAINS_TOKEN"
    ]
    value: Value = None
    values: list[Value] | None = None


class _FilterGroup(_Body):
    filters: list[_Filter]


class _SearchBody(_Body):
    filterGroups: list[_FilterGroup] = Field(default_factory=list)
    properties: list[str] = Field(default_factory=list)
    sorts: list[Any] = Field(default_factory=list)
    query: str | None = None
    limit: int = Field(default=10, ge=1)
    after: str | int | None = None


class _Pair(_Body):
    from_: _Id = Field(alias="from")
    to: _Id


class _AssociateBody(_Body):
    inputs: list[_Pair]


# -- state ----------------------------------------------------------------------------------------


def _iso(at: float) -> str:
    return (
        datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _error(
    message: str,
    *,
    category: str = "VALIDATION_ERROR",
    errors: Sequence[Mapping[str, Any]] | None = None,
    context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
    }
    if errors:
        body["errors"] = list(errors)
    if context:
        body["context"] = dict(context)
    return body


def _rate_limit_body(policy: str, message: str) -> dict[str, Any]:
    return {
        "status": "error",
        "message": message,
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()),
        "policyName": policy,
        "requestId": str(uuid.uuid4()),
    }


def _as_text(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _same(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()


@dataclass(slots=True)
class _Object:
    id: str
    properties: dict[str, str]
    created_at: float
    updated_at: float
    archived: bool = False
    archived_at: float | None = None

    def view(self, names: Iterable[str] | None = None) -> dict[str, Any]:
        if names is None:
            props: dict[str, str | None] = dict(self.properties)
        else:
            props = {name: self.properties.get(name) for name in names}
        body: dict[str, Any] = {
            "id": self.id,
            "properties": props,
            "createdAt": _iso(self.created_at),
            "updatedAt": _iso(self.updated_at),
            "archived": self.archived,
        }
        if self.archived_at is not None:
            body["archivedAt"] = _iso(self.archived_at)
        return body


@dataclass(slots=True)
class _Token:
    portal_id: int
    kind: Literal["private_app", "oauth"]
    expires_at: float | None = None


@dataclass(slots=True)
class _OAuthApp:
    client_id: str
    client_secret: str
    expires_in: int


@dataclass(slots=True)
class _Portal:
    portal_id: int
    limits: PortalLimits
    search_delay: float
    properties: dict[ObjectType, set[str]]
    unique: dict[ObjectType, set[str]]
    objects: dict[ObjectType, dict[str, _Object]] = field(
        default_factory=lambda: {"companies": {}, "contacts": {}, "notes": {}}
    )
    associations: set[tuple[ObjectType, str, ObjectType, str, int]] = field(default_factory=set)
    index: dict[tuple[ObjectType, str, str], str] = field(default_factory=dict)
    """(type, unique property, case-folded value) -> id of the live object holding it."""
    burst_log: deque[float] = field(default_factory=deque)
    search_log: deque[float] = field(default_factory=deque)
    daily_used: int = 0
    failures: list[_Failure] = field(default_factory=list)
    log: list[RequestEntry] = field(default_factory=list)
    token_requests: int = 0
    max_burst_in_window: int = 0


class SandboxState:
    """Every portal, token and object of the sandbox; thread-safe (one lock).

    ``clock`` (wall seconds) stamps objects and expires access tokens; ``monotonic`` drives
    the rate-limit windows and stamps :class:`RequestEntry`. Both default to real time;
    tests of the sandbox itself inject a clock they move by hand.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._ids = itertools.count(10_000_001)
        self._portals: dict[int, _Portal] = {}
        self._tokens: dict[str, _Token] = {}
        self._apps: dict[str, _OAuthApp] = {}
        self._refresh_tokens: dict[str, tuple[str, int]] = {}

    # -- configuration ----------------------------------------------------------------------

    def add_portal(
        self,
        portal_id: int | None = None,
        *,
        private_app_token: str | None = None,
        limits: PortalLimits | None = None,
        search_delay_seconds: float = 0.0,
        extra_properties: Mapping[ObjectType, Iterable[str]] | None = None,
    ) -> int:
        """Create a portal (one HubSpot account) and return its id."""
        with self._lock:
            pid = portal_id if portal_id is not None else 100 + len(self._portals) + 1
            if pid in self._portals:
                raise ValueError(f"portal {pid} exists")
            properties = {t: set(names) for t, names in DEFAULT_PROPERTIES.items()}
            for object_type, names in (extra_properties or {}).items():
                properties[object_type].update(names)
            self._portals[pid] = _Portal(
                portal_id=pid,
                limits=limits or PortalLimits(),
                search_delay=search_delay_seconds,
                properties=properties,
                unique={t: set(names) for t, names in DEFAULT_UNIQUE_PROPERTIES.items()},
            )
            if private_app_token is not None:
                self._tokens[private_app_token] = _Token(pid, "private_app")
            return pid

    def add_private_app_token(self, portal_id: int, token: str) -> None:
        with self._lock:
            self._portal(portal_id)
            self._tokens[token] = _Token(portal_id, "private_app")

    def add_oauth_app(self, client_id: str, client_secret: str, *, expires_in: int = 1800) -> None:
        """Register a public app; its access tokens live ``expires_in`` seconds."""
        with self._lock:
            self._apps[client_id] = _OAuthApp(client_id, client_secret, expires_in)

    def set_token_lifetime(self, client_id: str, expires_in: int) -> None:
        with self._lock:
            self._apps[client_id].expires_in = expires_in

    def add_refresh_token(self, portal_id: int, client_id: str, refresh_token: str) -> None:
        """An installation of ``client_id`` in the portal, redeemable with ``refresh_token``."""
        with self._lock:
            self._portal(portal_id)
            if client_id not in self._apps:
                raise ValueError(f"unknown OAuth app {client_id!r}")
            self._refresh_tokens[refresh_token] = (client_id, portal_id)

    def issue_access_token(self, portal_id: int, *, expires_in: float) -> str:
        """An OAuth access token for the portal, without the token endpoint."""
        token = "sbx-at-" + secrets.token_urlsafe(24)
        with self._lock:
            self._portal(portal_id)
            self._tokens[token] = _Token(portal_id, "oauth", self._clock() + expires_in)
        return token

    def set_limits(self, portal_id: int, limits: PortalLimits) -> None:
        """New limits; the windows keep their history."""
        with self._lock:
            self._portal(portal_id).limits = limits

    def fail_next(
        self,
        portal_id: int,
        count: int,
        status: int,
        *,
        retry_after: float | None = None,
        path_contains: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        """Answer the portal's next ``count`` admitted API requests (whose path contains
        ``path_contains``, if given) with ``status``."""
        failure = _Failure(
            count=count,
            status=status,
            retry_after=retry_after,
            path_contains=path_contains,
            body=body,
        )
        with self._lock:
            self._portal(portal_id).failures.append(failure)

    def expire_tokens(self, portal_id: int) -> int:
        """Expire the portal's OAuth access tokens now; returns how many."""
        now = self._clock()
        expired = 0
        with self._lock:
            for token in self._tokens.values():
                if token.portal_id == portal_id and token.kind == "oauth":
                    token.expires_at = now - 1
                    expired += 1
        return expired

    def seed(self, portal_id: int, object_type: ObjectType, properties: Mapping[str, str]) -> str:
        """Store a pre-existing object (as if the partner made it); returns its id."""
        with self._lock:
            portal = self._portal(portal_id)
            obj = self._new_object(properties)
            self._store(portal, object_type, obj)
            return obj.id

    def reset(self) -> None:
        """Forget every portal, token, app and object."""
        with self._lock:
            self._portals.clear()
            self._tokens.clear()
            self._apps.clear()
            self._refresh_tokens.clear()

    # -- inspection -------------------------------------------------------------------------

    def objects(
        self, portal_id: int, object_type: ObjectType, *, include_archived: bool = False
    ) -> list[dict[str, Any]]:
        """Stored objects in id order, as HubSpot shows them."""
        with self._lock:
            found = self._portal(portal_id).objects[object_type].values()
            return [o.view() for o in found if include_archived or not o.archived]

    def get(self, portal_id: int, object_type: ObjectType, object_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._portal(portal_id).objects[object_type].get(object_id)
            return None if found is None else found.view()

    def associations(
        self, portal_id: int, from_type: ObjectType, from_id: str, to_type: ObjectType
    ) -> list[tuple[str, int]]:
        """``(to id, type id)`` of every association of one object to a type."""
        with self._lock:
            return sorted(
                (b_id, type_id)
                for a_type, a_id, b_type, b_id, type_id in self._portal(portal_id).associations
                if a_type == from_type and a_id == from_id and b_type == to_type
            )

    def all_associations(self, portal_id: int) -> list[tuple[str, str, str, str, int]]:
        with self._lock:
            return sorted(self._portal(portal_id).associations)

    def requests(self, portal_id: int) -> list[RequestEntry]:
        with self._lock:
            return list(self._portal(portal_id).log)

    def stats(self, portal_id: int) -> PortalStats:
        with self._lock:
            portal = self._portal(portal_id)
            statuses = Counter(entry.status for entry in portal.log)
            routes = Counter(f"{entry.method} {entry.path}" for entry in portal.log)
            policies = Counter(entry.policy for entry in portal.log if entry.policy)
            return PortalStats(
                requests=len(portal.log),
                by_status=dict(statuses),
                by_route=dict(routes),
                rate_limited=dict(policies),
                token_requests=portal.token_requests,
                max_burst_in_window=portal.max_burst_in_window,
            )

    # -- the API ----------------------------------------------------------------------------

    def token_grant(self, form: Mapping[str, str]) -> ApiResponse:
        """``POST /oauth/v1/token``: the refresh-token grant."""

        def refused(status: str, message: str) -> ApiResponse:
            body = {
                "status": status,
                "message": message,
                "correlationId": str(uuid.uuid4()),
                "requestId": str(uuid.uuid4()),
            }
            return ApiResponse(400, body)

        with self._lock:
            if form.get("grant_type") != "refresh_token":
                return refused("BAD_GRANT_TYPE", "grant_type must be refresh_token")
            app = self._apps.get(form.get("client_id", ""))
            if app is None:
                return refused("BAD_CLIENT_ID", "missing or unknown client_id")
            if not secrets.compare_digest(app.client_secret, form.get("client_secret", "")):
                return refused("BAD_CLIENT_SECRET", "missing or invalid client_secret")
            refresh = form.get("refresh_token", "")
            installation = self._refresh_tokens.get(refresh)
            if installation is None or installation[0] != app.client_id:
                return refused("BAD_REFRESH_TOKEN", "missing or unknown refresh token")
            portal = self._portal(installation[1])
            portal.token_requests += 1
            access = "sbx-at-" + secrets.token_urlsafe(24)
            self._tokens[access] = _Token(portal.portal_id, "oauth", self._clock() + app.expires_in)
            return ApiResponse(
                200,
                {
                    "token_type": "bearer",
                    "refresh_token": refresh,
                    "access_token": access,
                    "expires_in": app.expires_in,
                },
            )

    def handle(
        self,
        method: str,
        path: str,
        *,
        authorization: str | None,
        body: bytes,
        route: Callable[[_Portal, Any], ApiResponse],
        parse: type[BaseModel] | None,
        scope: Literal["burst", "search"] = "burst",
    ) -> ApiResponse:
        """One authenticated API request: auth, limits, scripted failures, then ``route``."""
        now_wall = self._clock()
        with self._lock:
            token = self._authenticate(authorization)
            if isinstance(token, ApiResponse):
                return token
            if token.expires_at is not None and now_wall >= token.expires_at:
                portal = self._portal(token.portal_id)
                portal.log.append(
                    RequestEntry(at=self._monotonic(), method=method, path=path, status=401)
                )
                return self._expired(now_wall - token.expires_at)
            portal = self._portal(token.portal_id)
            now = self._monotonic()
            limited = self._admit(portal, scope, now, token)
            if limited is not None:
                portal.log.append(
                    RequestEntry(
                        at=now,
                        method=method,
                        path=path,
                        status=limited.status,
                        policy=limited.body.get("policyName"),
                    )
                )
                return limited
            headers = self._rate_headers(portal, token) if scope == "burst" else {}
            answer = self._scripted(portal, path)
            if answer is None:
                parsed = self._parse(body, parse, scope)
                answer = parsed if isinstance(parsed, ApiResponse) else route(portal, parsed)
            portal.log.append(
                RequestEntry(
                    at=now,
                    method=method,
                    path=path,
                    status=answer.status,
                    inputs=_count_inputs(body),
                    search_values=_count_search_values(body) if scope == "search" else 0,
                )
            )
            return ApiResponse(answer.status, answer.body, {**headers, **answer.headers})

    def _authenticate(self, authorization: str | None) -> _Token | ApiResponse:
        scheme, _, value = (authorization or "").partition(" ")
        token = self._tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if token is None:
            return ApiResponse(
                401,
                _error(
                    "Authentication credentials not found. This API supports OAuth 2.0 "
                    "authentication and private app access tokens.",
                    category="INVALID_AUTHENTICATION",
                ),
            )
        return token

    @staticmethod
    def _expired(seconds: float) -> ApiResponse:
        return ApiResponse(
            401,
            _error(
                f"The OAuth token used to make this call expired {int(seconds)} second(s) ago.",
                category="EXPIRED_AUTHENTICATION",
            ),
        )

    def _admit(self, portal: _Portal, scope: str, now: float, token: _Token) -> ApiResponse | None:
        limits = portal.limits
        if limits.daily is not None and portal.daily_used >= limits.daily:
            headers = self._rate_headers(portal, token)
            body = _rate_limit_body("DAILY", "You have reached your daily limit.")
            return ApiResponse(429, body, headers)
        if scope == "search":
            while portal.search_log and portal.search_log[0] <= now - _SEARCH_WINDOW_SECONDS:
                portal.search_log.popleft()
            if len(portal.search_log) >= limits.search_per_second:
                body = _rate_limit_body("SECONDLY", "You have reached your secondly limit.")
                return ApiResponse(429, body)
            portal.search_log.append(now)
        else:
            self._purge_burst(portal, now)
            if len(portal.burst_log) >= limits.burst_max:
                body = _rate_limit_body(
                    "TEN_SECONDLY_ROLLING", "You have reached your ten_secondly_rolling limit."
                )
                return ApiResponse(429, body, self._rate_headers(portal, token))
            portal.burst_log.append(now)
            portal.max_burst_in_window = max(portal.max_burst_in_window, len(portal.burst_log))
        portal.daily_used += 1
        return None

    @staticmethod
    def _purge_burst(portal: _Portal, now: float) -> None:
        horizon = now - portal.limits.interval_ms / 1000
        while portal.burst_log and portal.burst_log[0] <= horizon:
            portal.burst_log.popleft()

    @staticmethod
    def _rate_headers(portal: _Portal, token: _Token) -> dict[str, str]:
        limits = portal.limits
        headers = {
            "X-HubSpot-RateLimit-Max": str(limits.burst_max),
            "X-HubSpot-RateLimit-Remaining": str(max(0, limits.burst_max - len(portal.burst_log))),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(limits.interval_ms),
        }
        if token.kind == "private_app" and limits.daily is not None:
            headers["X-HubSpot-RateLimit-Daily"] = str(limits.daily)
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(
                max(0, limits.daily - portal.daily_used)
            )
        return headers

    @staticmethod
    def _scripted(portal: _Portal, path: str) -> ApiResponse | None:
        for failure in portal.failures:
            if failure.path_contains is None or failure.path_contains in path:
                failure.count -= 1
                if failure.count <= 0:
                    portal.failures.remove(failure)
                headers = {}
                if failure.retry_after is not None:
                    headers["Retry-After"] = f"{failure.retry_after:g}"
                category = {423: "LOCKED", 500: "INTERNAL_ERROR", 503: "SERVICE_UNAVAILABLE"}
                body = failure.body or _error(
                    f"scripted failure {failure.status}",
                    category=category.get(failure.status, "ERROR"),
                )
                return ApiResponse(failure.status, body, headers)
        return None

    @staticmethod
    def _parse(
        body: bytes, model: type[BaseModel] | None, scope: str
    ) -> BaseModel | ApiResponse | None:
        if model is None:
            return None
        if scope == "search" and len(body.decode("utf-8", "replace")) > _MAX_SEARCH_BODY_CHARS:
            return ApiResponse(
                400,
                _error(
                    f"The request body exceeds the maximum of {_MAX_SEARCH_BODY_CHARS} characters",
                    context={"limit": [str(_MAX_SEARCH_BODY_CHARS)]},
                ),
            )
        try:
            return model.model_validate_json(body or b"{}")
        except ValidationError as exc:
            problems = [
                {
                    "message": str(e["msg"]),
                    "in": ".".join(str(p) for p in e["loc"]),
                    "code": "INVALID_INPUT",
                }
                for e in exc.errors(include_input=False)[:20]
            ]
            return ApiResponse(400, _error("Invalid input JSON", errors=problems))

    # -- routes (lock held) -----------------------------------------------------------------

    def _new_object(self, properties: Mapping[str, str]) -> _Object:
        now = self._clock()
        object_id = str(next(self._ids))
        props = dict(properties)
        props.update(
            {
                "hs_object_id": object_id,
                "createdate": _iso(now),
                "hs_lastmodifieddate": _iso(now),
            }
        )
        return _Object(object_id, props, now, now)

    @staticmethod
    def _find(portal: _Portal, object_type: ObjectType, name: str, value: str) -> _Object | None:
        if name in portal.unique[object_type]:
            found = portal.index.get((object_type, name, value.casefold()))
            return None if found is None else portal.objects[object_type][found]
        for obj in portal.objects[object_type].values():
            stored = obj.properties.get(name)
            if not obj.archived and stored is not None and stored != "" and _same(stored, value):
                return obj
        return None

    def _property_problems(
        self, portal: _Portal, object_type: ObjectType, properties: Mapping[str, Value]
    ) -> list[dict[str, Any]]:
        known = portal.properties[object_type]
        problems: list[dict[str, Any]] = []
        for name in properties:
            if name in _READ_ONLY:
                problems.append(
                    {
                        "message": f'Property "{name}" is read-only',
                        "code": "READ_ONLY_VALUE",
                        "context": {"propertyName": [name]},
                    }
                )
            elif name not in known:
                problems.append(
                    {
                        "message": f'Property "{name}" does not exist',
                        "code": "PROPERTY_DOESNT_EXIST",
                        "context": {"propertyName": [name]},
                    }
                )
        email = properties.get("email")
        if object_type == "contacts" and email not in (None, "") and "@" not in _as_text(email):
            problems.append(
                {
                    "message": "Email address is invalid",
                    "code": "INVALID_EMAIL",
                    "context": {"propertyName": ["email"]},
                }
            )
        return problems

    def _invalid_properties(
        self,
        portal: _Portal,
        object_type: ObjectType,
        properties: Mapping[str, Value],
        trace: str | None,
    ) -> dict[str, Any] | None:
        """The input's error when a property is unknown, read-only or badly typed."""
        problems = self._property_problems(portal, object_type, properties)
        if not problems:
            return None
        return self._input_error(_error("Property values were not valid", errors=problems), trace)

    @staticmethod
    def _traced_view(obj: _Object, trace: str | None, **extra: bool) -> dict[str, Any]:
        """An object as a batch result: ``extra`` fields, then the input's write trace id."""
        view = obj.view()
        view.update(extra)
        if trace is not None:
            view["objectWriteTraceId"] = trace
        return view

    def _conflict(
        self,
        portal: _Portal,
        object_type: ObjectType,
        properties: Mapping[str, str],
        *,
        own_id: str | None,
    ) -> dict[str, Any] | None:
        for name in portal.unique[object_type]:
            value = properties.get(name)
            if not value:
                continue
            other = self._find(portal, object_type, name, value)
            if other is not None and other.id != own_id:
                label = object_type.rstrip("s").capitalize()
                return _error(
                    f"{label} already exists. Existing ID: {other.id}",
                    category="CONFLICT",
                    context={"propertyName": [name], "existingId": [other.id]},
                )
        return None

    @staticmethod
    def _index(portal: _Portal, object_type: ObjectType, obj: _Object) -> None:
        for name in portal.unique[object_type]:
            value = obj.properties.get(name)
            if value:
                portal.index.setdefault((object_type, name, value.casefold()), obj.id)

    @staticmethod
    def _unindex(portal: _Portal, object_type: ObjectType, obj: _Object) -> None:
        for name in portal.unique[object_type]:
            value = obj.properties.get(name)
            key = (object_type, name, (value or "").casefold())
            if value and portal.index.get(key) == obj.id:
                del portal.index[key]

    def _store(self, portal: _Portal, object_type: ObjectType, obj: _Object) -> None:
        portal.objects[object_type][obj.id] = obj
        self._index(portal, object_type, obj)

    def _write(
        self,
        portal: _Portal,
        object_type: ObjectType,
        obj: _Object,
        properties: Mapping[str, Value],
    ) -> None:
        now = self._clock()
        self._unindex(portal, object_type, obj)
        for name, value in properties.items():
            obj.properties[name] = _as_text(value)
        obj.properties["hs_lastmodifieddate"] = _iso(now)
        obj.updated_at = now
        self._index(portal, object_type, obj)

    @staticmethod
    def _input_error(
        entry: dict[str, Any], trace_id: str | None, ids: Sequence[str] = ()
    ) -> dict[str, Any]:
        context = dict(entry.get("context") or {})
        if trace_id is not None:
            context["objectWriteTraceId"] = [trace_id]
        if ids:
            context["ids"] = list(ids)
        entry = {**entry, "context": context}
        entry.pop("correlationId", None)
        return entry

    def _batch_answer(
        self,
        results: list[dict[str, Any]],
        errors: list[dict[str, Any]],
        *,
        ok: int,
        started: float,
    ) -> ApiResponse:
        body: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": _iso(started),
            "completedAt": _iso(self._clock()),
        }
        if errors:
            body["numErrors"] = len(errors)
            body["errors"] = errors
            return ApiResponse(207, body)
        return ApiResponse(ok, body)

    @staticmethod
    def _too_many(count: int, limit: int) -> ApiResponse | None:
        if count <= limit:
            return None
        return ApiResponse(
            400,
            _error(
                f"Batch input limit exceeded: {count} inputs, at most {limit} allowed",
                context={"inputs": [str(count)]},
            ),
        )

    def route_upsert(self, object_type: ObjectType) -> Callable[[_Portal, Any], ApiResponse]:
        def run(portal: _Portal, body: _UpsertBody) -> ApiResponse:
            started = self._clock()
            too_many = self._too_many(len(body.inputs), _MAX_BATCH_INPUTS)
            if too_many is not None:
                return too_many
            keys = [(i.idProperty, i.id.casefold()) for i in body.inputs]
            if len(set(keys)) != len(keys):
                return ApiResponse(400, _error("Duplicate IDs found in batch input"))
            results: list[dict[str, Any]] = []
            errors: list[dict[str, Any]] = []
            for item in body.inputs:
                trace = item.objectWriteTraceId
                if item.idProperty not in portal.unique[object_type]:
                    errors.append(
                        self._input_error(
                            _error(f"{item.idProperty} is not a unique identifier property"),
                            trace,
                        )
                    )
                    continue
                invalid = self._invalid_properties(portal, object_type, item.properties, trace)
                if invalid is not None:
                    errors.append(invalid)
                    continue
                written = {k: _as_text(v) for k, v in item.properties.items()}
                written[item.idProperty] = item.id
                existing = self._find(portal, object_type, item.idProperty, item.id)
                conflict = self._conflict(
                    portal, object_type, written, own_id=existing.id if existing else None
                )
                if conflict is not None:
                    errors.append(self._input_error(conflict, trace))
                    continue
                if existing is None:
                    existing = self._new_object(written)
                    self._store(portal, object_type, existing)
                    new = True
                else:
                    self._write(portal, object_type, existing, written)
                    new = False
                results.append(self._traced_view(existing, trace, new=new))
            return self._batch_answer(results, errors, ok=200, started=started)

        return run

    def route_update(self, object_type: ObjectType) -> Callable[[_Portal, Any], ApiResponse]:
        def run(portal: _Portal, body: _UpdateBody) -> ApiResponse:
            started = self._clock()
            too_many = self._too_many(len(body.inputs), _MAX_BATCH_INPUTS)
            if too_many is not None:
                return too_many
            keys = [(i.idProperty or "hs_object_id", i.id) for i in body.inputs]
            if len(set(keys)) != len(keys):
                return ApiResponse(400, _error("Duplicate IDs found in batch input"))
            results: list[dict[str, Any]] = []
            errors: list[dict[str, Any]] = []
            for item in body.inputs:
                trace = item.objectWriteTraceId
                if item.idProperty is None:
                    found = portal.objects[object_type].get(item.id)
                    obj = found if found is not None and not found.archived else None
                else:
                    obj = self._find(portal, object_type, item.idProperty, item.id)
                if obj is None:
                    label = object_type.rstrip("s").upper()
                    errors.append(
                        self._input_error(
                            _error(
                                f"Could not get some {label} objects, they may be deleted or "
                                "not exist. Check that ids are valid.",
                                category="OBJECT_NOT_FOUND",
                            ),
                            trace,
                            ids=[item.id],
                        )
                    )
                    continue
                invalid = self._invalid_properties(portal, object_type, item.properties, trace)
                if invalid is not None:
                    errors.append(invalid)
                    continue
                written = {k: _as_text(v) for k, v in item.properties.items()}
                conflict = self._conflict(portal, object_type, written, own_id=obj.id)
                if conflict is not None:
                    errors.append(self._input_error(conflict, trace))
                    continue
                self._write(portal, object_type, obj, written)
                results.append(self._traced_view(obj, trace))
            return self._batch_answer(results, errors, ok=200, started=started)

        return run

    def route_create(self, object_type: ObjectType) -> Callable[[_Portal, Any], ApiResponse]:
        def run(portal: _Portal, body: _CreateBody) -> ApiResponse:
            started = self._clock()
            too_many = self._too_many(len(body.inputs), _MAX_BATCH_INPUTS)
            if too_many is not None:
                return too_many
            results: list[dict[str, Any]] = []
            errors: list[dict[str, Any]] = []
            for item in body.inputs:
                trace = item.objectWriteTraceId
                problems = self._property_problems(portal, object_type, item.properties)
                if object_type == "notes" and not item.properties.get("hs_timestamp"):
                    problems.append(
                        {
                            "message": "hs_timestamp is required",
                            "code": "REQUIRED_PROPERTY",
                            "context": {"propertyName": ["hs_timestamp"]},
                        }
                    )
                targets, association_problems = self._association_targets(
                    portal, object_type, item.associations
                )
                if problems or association_problems:
                    errors.append(
                        self._input_error(
                            _error(
                                "Property values were not valid"
                                if problems
                                else "One or more associations are invalid",
                                errors=problems + association_problems,
                            ),
                            trace,
                        )
                    )
                    continue
                written = {k: _as_text(v) for k, v in item.properties.items()}
                conflict = self._conflict(portal, object_type, written, own_id=None)
                if conflict is not None:
                    errors.append(self._input_error(conflict, trace))
                    continue
                obj = self._new_object(written)
                self._store(portal, object_type, obj)
                for to_type, to_id, type_id in targets:
                    self._associate(portal, object_type, obj.id, to_type, to_id, type_id)
                results.append(self._traced_view(obj, trace))
            return self._batch_answer(results, errors, ok=201, started=started)

        return run

    def _association_targets(
        self, portal: _Portal, object_type: ObjectType, associations: Sequence[_AssociationIn]
    ) -> tuple[list[tuple[ObjectType, str, int]], list[dict[str, Any]]]:
        by_type_id = {
            type_id: to_type
            for (from_type, to_type), type_id in ASSOCIATION_TYPES.items()
            if from_type == object_type
        }
        targets: list[tuple[ObjectType, str, int]] = []
        problems: list[dict[str, Any]] = []
        for association in associations:
            to_id = str(association.to.id)
            for kind in association.types:
                to_type = by_type_id.get(kind.associationTypeId)
                if kind.associationCategory != "HUBSPOT_DEFINED" or to_type is None:
                    problems.append(
                        {
                            "message": f"association type {kind.associationTypeId} is not "
                            f"valid from {object_type}",
                            "code": "INVALID_ASSOCIATION_TYPE",
                        }
                    )
                    continue
                target = portal.objects[to_type].get(to_id)
                if target is None or target.archived:
                    problems.append(
                        {
                            "message": f"{to_type} {to_id} does not exist",
                            "code": "ASSOCIATION_TARGET_NOT_FOUND",
                            "context": {"ids": [to_id]},
                        }
                    )
                    continue
                targets.append((to_type, to_id, kind.associationTypeId))
        return targets, problems

    @staticmethod
    def _associate(
        portal: _Portal,
        from_type: ObjectType,
        from_id: str,
        to_type: ObjectType,
        to_id: str,
        type_id: int,
    ) -> None:
        portal.associations.add((from_type, from_id, to_type, to_id, type_id))
        reverse = ASSOCIATION_TYPES.get((to_type, from_type))
        if reverse is not None:
            portal.associations.add((to_type, to_id, from_type, from_id, reverse))

    def route_read(self, object_type: ObjectType) -> Callable[[_Portal, Any], ApiResponse]:
        def run(portal: _Portal, body: _ReadBody) -> ApiResponse:
            started = self._clock()
            too_many = self._too_many(len(body.inputs), _MAX_BATCH_INPUTS)
            if too_many is not None:
                return too_many
            names = list(_SEARCH_DEFAULTS[object_type]) + body.properties
            results: list[dict[str, Any]] = []
            missing: list[str] = []
            for item in body.inputs:
                key = str(item.id)
                if body.idProperty is None:
                    found = portal.objects[object_type].get(key)
                    obj = found if found is not None and not found.archived else None
                else:
                    obj = self._find(portal, object_type, body.idProperty, key)
                if obj is None:
                    missing.append(key)
                else:
                    results.append(obj.view(names))
            errors = []
            if missing:
                errors.append(
                    {
                        "status": "error",
                        "category": "OBJECT_NOT_FOUND",
                        "message": "Could not get some objects, they may be deleted or not exist.",
                        "context": {"ids": missing},
                    }
                )
            return self._batch_answer(results, errors, ok=200, started=started)

        return run

    def route_archive(self, object_type: ObjectType) -> Callable[[_Portal, Any], ApiResponse]:
        def run(portal: _Portal, body: _ArchiveBody) -> ApiResponse:
            too_many = self._too_many(len(body.inputs), _MAX_BATCH_INPUTS)
            if too_many is not None:
                return too_many
            now = self._clock()
            for item in body.inputs:
                obj = portal.objects[object_type].get(str(item.id))
                if obj is not None and not obj.archived:
                    self._unindex(portal, object_type, obj)
                    obj.archived = True
                    obj.archived_at = now
            return ApiResponse(204)

        return run

    def route_get(
        self, object_type: ObjectType, object_id: str
    ) -> Callable[[_Portal, Any], ApiResponse]:
        def run(portal: _Portal, _: None) -> ApiResponse:
            obj = portal.objects[object_type].get(object_id)
            if obj is None or obj.archived:
                return ApiResponse(404, _error("Object not found", category="OBJECT_NOT_FOUND"))
            return ApiResponse(200, obj.view())

        return run

    def route_search(self, object_type: ObjectType) -> Callable[[_Portal, Any], ApiResponse]:
        def run(portal: _Portal, body: _SearchBody) -> ApiResponse:
            groups = body.filterGroups
            total_filters = sum(len(g.filters) for g in groups)
            if (
                len(groups) > _MAX_FILTER_GROUPS
                or any(len(g.filters) > _MAX_FILTERS_PER_GROUP for g in groups)
                or total_filters > _MAX_FILTERS
            ):
                return ApiResponse(
                    400,
                    _error(
                        f"Too many filters: at most {_MAX_FILTER_GROUPS} filter groups, "
                        f"{_MAX_FILTERS_PER_GROUP} filters per group and {_MAX_FILTERS} in total"
                    ),
                )
            if body.limit > _MAX_SEARCH_LIMIT:
                return ApiResponse(400, _error(f"limit must be at most {_MAX_SEARCH_LIMIT}"))
            shapeless = [
                f"{f.propertyName} {f.operator}" for g in groups for f in g.filters if _shapeless(f)
            ]
            if shapeless:
                return ApiResponse(
                    400,
                    _error(
                        "Invalid filter: IN and NOT_IN take a 'values' list, other operators "
                        "a 'value'",
                        errors=[
                            {"message": f"{name} is missing its value", "code": "INVALID_FILTER"}
                            for name in shapeless[:10]
                        ],
                    ),
                )
            known = portal.properties[object_type] | _READ_ONLY
            unknown = sorted({f.propertyName for g in groups for f in g.filters} - known)
            if unknown:
                return ApiResponse(
                    400,
                    _error(
                        "Unknown filter property",
                        errors=[
                            {
                                "message": f'Property "{n}" does not exist',
                                "code": "PROPERTY_DOESNT_EXIST",
                            }
                            for n in unknown
                        ],
                    ),
                )
            visible_before = self._clock() - portal.search_delay
            compiled = [[_compile(f) for f in g.filters] for g in groups]
            matches = [
                obj
                for obj in portal.objects[object_type].values()
                if not obj.archived
                and obj.created_at <= visible_before
                and (not compiled or any(all(m(obj) for m in g) for g in compiled))
            ]
            matches.sort(key=lambda o: int(o.id))
            offset = int(body.after) if body.after is not None else 0
            page = matches[offset : offset + body.limit]
            names = list(dict.fromkeys([*_SEARCH_DEFAULTS[object_type], *body.properties]))
            answer: dict[str, Any] = {
                "total": len(matches),
                "results": [o.view(names) for o in page],
            }
            if offset + body.limit < len(matches):
                answer["paging"] = {"next": {"after": str(offset + body.limit)}}
            return ApiResponse(200, answer)

        return run

    def route_associate(
        self, from_type: ObjectType, to_type: ObjectType
    ) -> Callable[[_Portal, Any], ApiResponse]:
        def run(portal: _Portal, body: _AssociateBody) -> ApiResponse:
            started = self._clock()
            too_many = self._too_many(len(body.inputs), _MAX_ASSOCIATION_INPUTS)
            if too_many is not None:
                return too_many
            type_id = ASSOCIATION_TYPES.get((from_type, to_type))
            if type_id is None:
                return ApiResponse(
                    400, _error(f"no default association from {from_type} to {to_type}")
                )
            results: list[dict[str, Any]] = []
            errors: list[dict[str, Any]] = []
            for pair in body.inputs:
                a, b = str(pair.from_.id), str(pair.to.id)
                source = portal.objects[from_type].get(a)
                target = portal.objects[to_type].get(b)
                if source is None or source.archived or target is None or target.archived:
                    errors.append(
                        {
                            "status": "error",
                            "category": "VALIDATION_ERROR",
                            "message": "One or more objects do not exist",
                            "context": {"fromObjectId": [a], "toObjectId": [b]},
                        }
                    )
                    continue
                self._associate(portal, from_type, a, to_type, b, type_id)
                results.append(
                    {
                        "fromObjectTypeId": _TYPE_IDS[from_type],
                        "fromObjectId": int(a),
                        "toObjectTypeId": _TYPE_IDS[to_type],
                        "toObjectId": int(b),
                        "associationTypes": [
                            {"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None}
                        ],
                    }
                )
            return self._batch_answer(results, errors, ok=200, started=started)

        return run

    def route_read_associations(
        self, from_type: ObjectType, from_id: str, to_type: ObjectType
    ) -> Callable[[_Portal, Any], ApiResponse]:
        def run(portal: _Portal, _: None) -> ApiResponse:
            found: dict[str, list[int]] = {}
            for a_type, a_id, b_type, b_id, type_id in portal.associations:
                if a_type == from_type and a_id == from_id and b_type == to_type:
                    found.setdefault(b_id, []).append(type_id)
            results = [
                {
                    "toObjectId": int(b_id),
                    "associationTypes": [
                        {"category": "HUBSPOT_DEFINED", "typeId": t, "label": None}
                        for t in sorted(types)
                    ],
                }
                for b_id, types in sorted(found.items())
            ]
            return ApiResponse(200, {"results": results})

        return run

    def _portal(self, portal_id: int) -> _Portal:
        try:
            return self._portals[portal_id]
        except KeyError:
            raise KeyError(f"unknown portal {portal_id}") from None


def _count_inputs(body: bytes) -> int:
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        return 0
    inputs = parsed.get("inputs") if isinstance(parsed, dict) else None
    return len(inputs) if isinstance(inputs, list) else 0


def _count_search_values(body: bytes) -> int:
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        return 0
    groups = parsed.get("filterGroups") if isinstance(parsed, dict) else None
    count = 0
    for group in groups if isinstance(groups, list) else []:
        filters = group.get("filters") if isinstance(group, dict) else None
        for flt in filters if isinstance(filters, list) else []:
            if isinstance(flt, dict):
                values = flt.get("values")
                count += len(values) if isinstance(values, list) else int("value" in flt)
    return count


def _shapeless(flt: _Filter) -> bool:
    """A filter missing what its operator compares with (HubSpot answers 400)."""
    if flt.operator in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
        return False
    if flt.operator in ("IN", "NOT_IN"):
        return not flt.values
    return flt.value is None


def _compile(flt: _Filter) -> Callable[[_Object], bool]:
    """A predicate for one filter, its values prepared once per search."""
    name, op = flt.propertyName, flt.operator
    if op in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
        wanted = op == "HAS_PROPERTY"
        return lambda obj: bool(obj.properties.get(name)) is wanted
    if op in ("IN", "NOT_IN"):
        # HubSpot: "values must be lowercase" for string properties; others never match
        texts = (_as_text(v) for v in flt.values or [])
        allowed = frozenset(t for t in texts if t == t.lower())
        inside = op == "IN"
        return lambda obj: (
            (bool(obj.properties.get(name)) and obj.properties[name].lower() in allowed) is inside
        )
    if op in ("EQ", "NEQ"):
        target = _as_text(flt.value).casefold()
        equal = op == "EQ"
        return lambda obj: (
            (bool(obj.properties.get(name)) and obj.properties[name].casefold() == target) is equal
        )
    token = _as_text(flt.value).casefold()
    return lambda obj: (
        token in {t.casefold() for t in (obj.properties.get(name) or "").replace(";", " ").split()}
    )


# -- the ASGI app ---------------------------------------------------------------------------------


def _json_response(answer: ApiResponse) -> Response:
    if answer.body is None:
        return Response(status_code=answer.status, headers=dict(answer.headers))
    return JSONResponse(answer.body, status_code=answer.status, headers=dict(answer.headers))


async def _unknown_portal(request: Request, exc: Exception) -> Response:
    return JSONResponse({"detail": str(exc).strip("'\"")}, 404)


class SandboxApp:
    """The ASGI app: HubSpot's API routes plus ``/_control`` over a :class:`SandboxState`."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self._app = Starlette(
            routes=[
                Route("/oauth/v1/token", self._token, methods=["POST"]),
                Route(
                    "/crm/v3/objects/{object_type}/batch/{action}", self._batch, methods=["POST"]
                ),
                Route("/crm/v3/objects/{object_type}/search", self._search, methods=["POST"]),
                Route("/crm/v3/objects/{object_type}/{object_id}", self._get, methods=["GET"]),
                Route(
                    "/crm/v4/associations/{from_type}/{to_type}/batch/associate/default",
                    self._associate,
                    methods=["POST"],
                ),
                Route(
                    "/crm/v4/objects/{from_type}/{object_id}/associations/{to_type}",
                    self._read_associations,
                    methods=["GET"],
                ),
                Route("/_control", self._reset, methods=["DELETE"]),
                Route("/_control/portals", self._add_portal, methods=["POST"]),
                Route("/_control/oauth-apps", self._add_app, methods=["POST"]),
                Route("/_control/portals/{portal}/limits", self._set_limits, methods=["PUT"]),
                Route("/_control/portals/{portal}/fail", self._fail, methods=["POST"]),
                Route("/_control/portals/{portal}/expire-tokens", self._expire, methods=["POST"]),
                Route(
                    "/_control/portals/{portal}/refresh-tokens",
                    self._add_refresh_token,
                    methods=["POST"],
                ),
                Route(
                    "/_control/portals/{portal}/objects/{object_type}",
                    self._seed,
                    methods=["POST"],
                ),
                Route(
                    "/_control/portals/{portal}/objects/{object_type}",
                    self._objects,
                    methods=["GET"],
                ),
                Route(
                    "/_control/portals/{portal}/associations",
                    self._associations,
                    methods=["GET"],
                ),
                Route("/_control/portals/{portal}/stats", self._stats, methods=["GET"]),
            ],
            exception_handlers={KeyError: _unknown_portal},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    # -- API ---------------------------------------------------------------------------------

    @staticmethod
    def _object_type(name: str) -> ObjectType | None:
        return _TYPE_ALIASES.get(name.lower())

    async def _api(
        self,
        request: Request,
        route: Callable[[_Portal, Any], ApiResponse],
        parse: type[BaseModel] | None,
        scope: Literal["burst", "search"] = "burst",
    ) -> Response:
        body = await request.body()
        answer = self.state.handle(
            request.method,
            request.url.path,
            authorization=request.headers.get("authorization"),
            body=body,
            route=route,
            parse=parse,
            scope=scope,
        )
        return _json_response(answer)

    async def _token(self, request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        flat = {key: values[0] for key, values in form.items() if values}
        return _json_response(self.state.token_grant(flat))

    async def _batch(self, request: Request) -> Response:
        object_type = self._object_type(request.path_params["object_type"])
        action = request.path_params["action"]
        state = self.state
        routes: dict[
            str,
            tuple[Callable[[ObjectType], Callable[[_Portal, Any], ApiResponse]], type[BaseModel]],
        ] = {
            "upsert": (state.route_upsert, _UpsertBody),
            "update": (state.route_update, _UpdateBody),
            "create": (state.route_create, _CreateBody),
            "read": (state.route_read, _ReadBody),
            "archive": (state.route_archive, _ArchiveBody),
        }
        if object_type is None or action not in routes:
            return JSONResponse(_error("Not found", category="OBJECT_NOT_FOUND"), 404)
        make, model = routes[action]
        return await self._api(request, make(object_type), model)

    async def _search(self, request: Request) -> Response:
        object_type = self._object_type(request.path_params["object_type"])
        if object_type is None:
            return JSONResponse(_error("Not found", category="OBJECT_NOT_FOUND"), 404)
        return await self._api(request, self.state.route_search(object_type), _SearchBody, "search")

    async def _get(self, request: Request) -> Response:
        object_type = self._object_type(request.path_params["object_type"])
        if object_type is None:
            return JSONResponse(_error("Not found", category="OBJECT_NOT_FOUND"), 404)
        route = self.state.route_get(object_type, request.path_params["object_id"])
        return await self._api(request, route, None)

    async def _associate(self, request: Request) -> Response:
        from_type = self._object_type(request.path_params["from_type"])
        to_type = self._object_type(request.path_params["to_type"])
        if from_type is None or to_type is None:
            return JSONResponse(_error("Not found", category="OBJECT_NOT_FOUND"), 404)
        return await self._api(
            request, self.state.route_associate(from_type, to_type), _AssociateBody
        )

    async def _read_associations(self, request: Request) -> Response:
        from_type = self._object_type(request.path_params["from_type"])
        to_type = self._object_type(request.path_params["to_type"])
        if from_type is None or to_type is None:
            return JSONResponse(_error("Not found", category="OBJECT_NOT_FOUND"), 404)
        route = self.state.route_read_associations(
            from_type, request.path_params["object_id"], to_type
        )
        return await self._api(request, route, None)

    # -- control -----------------------------------------------------------------------------

    @staticmethod
    async def _read(request: Request, model: type[BaseModel]) -> Any:
        try:
            return model.model_validate_json(await request.body() or b"{}")
        except ValidationError as exc:
            return JSONResponse({"detail": json.loads(exc.json(include_url=False))}, 422)

    def _portal_id(self, request: Request) -> int:
        return int(request.path_params["portal"])

    async def _reset(self, request: Request) -> Response:
        self.state.reset()
        return Response(status_code=204)

    async def _add_portal(self, request: Request) -> Response:
        body = await self._read(request, _PortalIn)
        if isinstance(body, Response):
            return body
        try:
            pid = self.state.add_portal(
                body.portal_id,
                private_app_token=body.private_app_token,
                limits=body.limits,
                search_delay_seconds=body.search_delay_seconds,
            )
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, 409)
        return JSONResponse({"portal_id": pid}, 201)

    async def _add_app(self, request: Request) -> Response:
        body = await self._read(request, _OAuthAppIn)
        if isinstance(body, Response):
            return body
        self.state.add_oauth_app(body.client_id, body.client_secret, expires_in=body.expires_in)
        return Response(status_code=204)

    async def _add_refresh_token(self, request: Request) -> Response:
        body = await self._read(request, _RefreshTokenIn)
        if isinstance(body, Response):
            return body
        try:
            self.state.add_refresh_token(
                self._portal_id(request), body.client_id, body.refresh_token
            )
        except (KeyError, ValueError) as exc:
            return JSONResponse({"detail": str(exc)}, 404)
        return Response(status_code=204)

    async def _set_limits(self, request: Request) -> Response:
        body = await self._read(request, PortalLimits)
        if isinstance(body, Response):
            return body
        self.state.set_limits(self._portal_id(request), body)
        return JSONResponse(body.model_dump())

    async def _fail(self, request: Request) -> Response:
        body = await self._read(request, _Failure)
        if isinstance(body, Response):
            return body
        self.state.fail_next(
            self._portal_id(request),
            body.count,
            body.status,
            retry_after=body.retry_after,
            path_contains=body.path_contains,
            body=body.body,
        )
        return Response(status_code=204)

    async def _expire(self, request: Request) -> Response:
        return JSONResponse({"expired": self.state.expire_tokens(self._portal_id(request))})

    async def _seed(self, request: Request) -> Response:
        object_type = self._object_type(request.path_params["object_type"])
        body = await self._read(request, _SeedIn)
        if isinstance(body, Response):
            return body
        if object_type is None:
            return JSONResponse({"detail": "unknown object type"}, 404)
        object_id = self.state.seed(self._portal_id(request), object_type, body.properties)
        return JSONResponse({"id": object_id}, 201)

    async def _objects(self, request: Request) -> Response:
        object_type = self._object_type(request.path_params["object_type"])
        if object_type is None:
            return JSONResponse({"detail": "unknown object type"}, 404)
        found = self.state.objects(self._portal_id(request), object_type, include_archived=True)
        return JSONResponse({"results": found})

    async def _associations(self, request: Request) -> Response:
        rows = self.state.all_associations(self._portal_id(request))
        return JSONResponse(
            {
                "results": [
                    {"from_type": a, "from_id": b, "to_type": c, "to_id": d, "type_id": t}
                    for a, b, c, d, t in rows
                ]
            }
        )

    async def _stats(self, request: Request) -> Response:
        return JSONResponse(self.state.stats(self._portal_id(request)).model_dump(mode="json"))


# -- serving --------------------------------------------------------------------------------------


class HubSpotSandbox(ThreadedServer):
    """A :class:`SandboxApp` served by uvicorn in a daemon thread (loopback, ephemeral port).

    ``with HubSpotSandbox() as sandbox: portal = sandbox.add_portal(private_app_token="t")``;
    point a HubSpot connection's ``base_url`` at ``sandbox.url``.
    """

    name = "the HubSpot sandbox"
    backlog = 1024

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, state: SandboxState | None = None
    ) -> None:
        super().__init__(host=host, port=port)
        self.state = state or SandboxState()

    def _new_server(self) -> uvicorn.Server:
        return uvicorn_server(SandboxApp(self.state), configure_logging=False, log_level="warning")

    # -- the SandboxState API, for convenience -----------------------------------------------

    def add_portal(
        self,
        portal_id: int | None = None,
        *,
        private_app_token: str | None = None,
        limits: PortalLimits | None = None,
        search_delay_seconds: float = 0.0,
    ) -> int:
        """See ``SandboxState.add_portal``."""
        return self.state.add_portal(
            portal_id,
            private_app_token=private_app_token,
            limits=limits,
            search_delay_seconds=search_delay_seconds,
        )

    def add_oauth_app(self, client_id: str, client_secret: str, *, expires_in: int = 1800) -> None:
        """See ``SandboxState.add_oauth_app``."""
        self.state.add_oauth_app(client_id, client_secret, expires_in=expires_in)

    def add_refresh_token(self, portal_id: int, client_id: str, refresh_token: str) -> None:
        """See ``SandboxState.add_refresh_token``."""
        self.state.add_refresh_token(portal_id, client_id, refresh_token)

    def set_limits(self, portal_id: int, limits: PortalLimits) -> None:
        """See ``SandboxState.set_limits``."""
        self.state.set_limits(portal_id, limits)

    def fail_next(
        self,
        portal_id: int,
        count: int,
        status: int,
        *,
        retry_after: float | None = None,
        path_contains: str | None = None,
    ) -> None:
        """See ``SandboxState.fail_next``."""
        self.state.fail_next(
            portal_id, count, status, retry_after=retry_after, path_contains=path_contains
        )

    def expire_tokens(self, portal_id: int) -> int:
        """See ``SandboxState.expire_tokens``."""
        return self.state.expire_tokens(portal_id)

    def seed(self, portal_id: int, object_type: ObjectType, properties: Mapping[str, str]) -> str:
        """See ``SandboxState.seed``."""
        return self.state.seed(portal_id, object_type, properties)

    def objects(
        self, portal_id: int, object_type: ObjectType, *, include_archived: bool = False
    ) -> list[dict[str, Any]]:
        """See ``SandboxState.objects``."""
        return self.state.objects(portal_id, object_type, include_archived=include_archived)

    def associations(
        self, portal_id: int, from_type: ObjectType, from_id: str, to_type: ObjectType
    ) -> list[tuple[str, int]]:
        """See ``SandboxState.associations``."""
        return self.state.associations(portal_id, from_type, from_id, to_type)

    def stats(self, portal_id: int) -> PortalStats:
        """See ``SandboxState.stats``."""
        return self.state.stats(portal_id)

    def requests(self, portal_id: int) -> list[RequestEntry]:
        """See ``SandboxState.requests``."""
        return self.state.requests(portal_id)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.sandboxes.hubspot",
        description="Local HubSpot sandbox: CRM v3/v4 routes, OAuth, rate limits, /_control.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8910)
    parser.add_argument("--token", help="private app token of portal 1")
    parser.add_argument("--burst-max", type=int, default=100)
    parser.add_argument("--log-level", default="warning")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve in the foreground until interrupted."""
    args = _parse_args(argv)
    state = SandboxState()
    state.add_portal(1, private_app_token=args.token, limits=PortalLimits(burst_max=args.burst_max))
    sock = listen(args.host, args.port, backlog=HubSpotSandbox.backlog)
    server = uvicorn_server(SandboxApp(state), configure_logging=True, log_level=args.log_level)
    print(f"HubSpot sandbox on {base_url(args.host, sock.getsockname()[1])} (portal 1)", flush=True)
    serve_until_interrupted(server, sock)


if __name__ == "__main__":
    main()

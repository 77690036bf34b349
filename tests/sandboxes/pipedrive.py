"""A real local Pipedrive sandbox for tests and the local demo.

An in-memory stand-in for Pipedrive's API, served by uvicorn on loopback, speaking the
request and response shapes of Pipedrive's API v2 OpenAPI document (and v1 for notes):

- ``POST/GET /api/v2/organizations``-style routes: ``POST /api/v2/{organizations|persons}``,
  ``GET/PATCH/DELETE /api/v2/{...}/{id}``, ``GET /api/v2/{...}/search`` (term, fields,
  exact_match, limit); ``POST /v1/notes``;
- the list endpoints ``GET /api/v2/{organizations|persons}``: ``limit`` (default 100, at
  most 500), opaque ``cursor`` paging (``additional_data.next_cursor``, ``null`` on the last
  page), ``updated_since`` / ``updated_until`` (RFC 3339, ``update_time`` >= / <),
  ``sort_by`` (``id``, ``update_time``, ``add_time``) and ``sort_direction``,
  ``custom_fields`` (at most 15 keys), ``ids``, ``owner_id`` and (persons) ``org_id``.
  Deleted objects are not listed;
- ``POST /oauth/token``: ``grant_type=refresh_token`` with HTTP Basic client credentials,
  answering ``access_token``, ``expires_in``, ``refresh_token`` and ``api_domain`` (the
  sandbox's own URL); access tokens expire.

Every account (a Pipedrive "company") has its own objects, custom fields, API tokens and
OAuth clients. Per request, in this order: injected failures (``fail_next``), auth (401),
the 2-second burst window per token (429), the search window per token (10 per 2 s, 429),
the daily token budget of the account (429 once spent; ``reset_day`` is midnight), the
daily write limit when set (429), then the request itself, which is charged its
``x-token-cost`` (create 5, update 5, get 1, delete 3, search 20, list 10, v1 note 10)
whatever it answers. Every API answer carries ``x-token-cost`` and ``x-ratelimit-limit/-remaining/
-reset`` (the search window's on searches); ``x-daily-requests-left`` is sent to API-token
requests when a daily write limit is set. Bodies are validated: unknown fields, wrong types
and unknown custom field keys answer 400 with Pipedrive's error body
``{"success": false, "error", "error_info", "data": null, "additional_data": null}``.

Tests drive it from Python (:class:`SandboxState`, or the :class:`PipedriveSandbox` that
runs it in a daemon thread) or, from another process, over HTTP:

- ``GET    /_control``                               everything stored, and the counters
- ``DELETE /_control``                               forget every account and counter
- ``POST   /_control/accounts``                      add an account (``AccountSpec``)
- ``GET    /_control/accounts/{account}``            that account's objects, notes, budget
- ``PUT    /_control/accounts/{account}/limits``     change limits (fields sent only)
- ``POST   /_control/accounts/{account}/organizations``   seed an organization
- ``POST   /_control/accounts/{account}/persons``    seed a person
- ``POST   /_control/reset_day``                     midnight: every budget starts again
- ``POST   /_control/fail_next``                     ``{"count", "status", "retry_after"?}``
- ``POST   /_control/expire_tokens``                 every OAuth access token expires now
- ``GET    /_control/stats``                         request, status and 429 counters

For the demo: ``python -m tests.sandboxes.pipedrive --port 8910 --api-token tok``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeVar
from urllib.parse import parse_qsl

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
    "COSTS",
    "AccountInfo",
    "AccountLimits",
    "AccountSpec",
    "Answer",
    "OAuthClientSpec",
    "PipedriveSandbox",
    "SandboxApp",
    "SandboxState",
    "SandboxStats",
    "main",
]

Collection = Literal["organizations", "persons"]
Operation = Literal["create", "update", "get", "delete", "search", "list", "note"]

COSTS: Final[Mapping[Operation, int]] = {
    "create": 5,
    "update": 5,
    "get": 1,
    "delete": 3,
    "search": 20,
    "list": 10,
    "note": 10,
}
"""``x-token-cost`` per operation (Pipedrive's v2 cost table; v1 ``POST /notes`` is 10)."""

_WRITES: Final[frozenset[Operation]] = frozenset({"create", "update", "note"})
_OWNER_ID: Final[int] = 1
_VISIBLE_TO: Final[int] = 3
_MAX_SEARCH_LIMIT: Final[int] = 500
_MAX_LIST_LIMIT: Final[int] = 500
_MAX_LIST_CUSTOM_FIELDS: Final[int] = 15
_LIST_SORT_FIELDS: Final[frozenset[str]] = frozenset({"id", "update_time", "add_time"})
_LIST_SHARED_PARAMETERS: Final[frozenset[str]] = frozenset(
    {
        "filter_id",
        "ids",
        "owner_id",
        "updated_since",
        "updated_until",
        "sort_by",
        "sort_direction",
        "include_fields",
        "custom_fields",
        "include_option_labels",
        "include_labels",
        "limit",
        "cursor",
    }
)
_LIST_PARAMETERS: Final[Mapping[Collection, frozenset[str]]] = {
    "organizations": _LIST_SHARED_PARAMETERS,
    "persons": _LIST_SHARED_PARAMETERS | {"org_id", "deal_id"},
}
_OBJECT_OPERATIONS: Final[Mapping[str, Operation]] = {
    "GET": "get",
    "PATCH": "update",
    "DELETE": "delete",
}
_SEARCH_FIELDS: Final[Mapping[Collection, frozenset[str]]] = {
    "organizations": frozenset({"address", "custom_fields", "notes", "name"}),
    "persons": frozenset({"custom_fields", "email", "notes", "phone", "name"}),
}


class AccountLimits(BaseModel):
    """An account's limits. Defaults: Pipedrive's Lite plan with one seat."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_token_burst: int = Field(default=20, ge=1)
    """Requests per API token per burst window."""
    oauth_burst: int = Field(default=80, ge=1)
    """Requests per OAuth access token per burst window."""
    search_per_window: int = Field(default=10, ge=1)
    window_seconds: float = Field(default=2.0, gt=0)
    daily_budget: int = Field(default=30_000, ge=0)
    daily_write_limit: int | None = Field(default=None, ge=0)
    """``POST``/``PATCH`` requests per day for API tokens (``x-daily-requests-left``)."""
    access_token_ttl: float = Field(default=3599.0, gt=0)


class OAuthClientSpec(BaseModel):
    """An installed OAuth app of an account."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1)
    refresh_token: str = Field(min_length=1)


class AccountSpec(BaseModel):
    """Body of ``POST /_control/accounts``; custom field keys are generated when left out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    api_tokens: list[str] = Field(default_factory=list)
    oauth_clients: list[OAuthClientSpec] = Field(default_factory=list)
    limits: AccountLimits = Field(default_factory=AccountLimits)
    domain_field_key: str | None = None
    queast_id_field_key: str | None = None


class AccountInfo(BaseModel):
    """An account's name and the keys of its custom fields."""

    model_config = ConfigDict(frozen=True)

    name: str
    domain_field_key: str
    queast_id_field_key: str


class SandboxStats(BaseModel):
    """Counters since the start (or the last ``reset``)."""

    model_config = ConfigDict(frozen=True)

    requests: int
    """API requests (``/api/v2``, ``/v1``), whatever they were answered."""
    by_status: dict[int, int]
    by_route: dict[str, int]
    throttled: int
    """429 answers (burst, search, budget and write limit)."""
    throttled_by_reason: dict[str, int]
    token_refreshes: int
    tokens_spent: dict[str, int]
    """Tokens spent today per account."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _FailNext(_Body):
    count: int = Field(ge=1)
    status: int = Field(default=500, ge=400, le=599)
    retry_after: float | None = Field(default=None, ge=0)


class _SeedOrganization(_Body):
    name: str = Field(min_length=1)
    domain: str | None = None
    queast_id: str | None = None
    website: str | None = None


class _SeedPerson(_Body):
    name: str = Field(min_length=1)
    emails: list[str] = Field(default_factory=list)
    org_id: int | None = None
    queast_id: str | None = None


# -- state ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Window:
    """A rolling window: at most ``limit`` hits in any ``seconds``."""

    limit: int
    seconds: float
    hits: deque[float] = field(default_factory=deque)

    def _expire(self, now: float) -> None:
        while self.hits and now - self.hits[0] >= self.seconds:
            self.hits.popleft()

    def admit(self, now: float) -> bool:
        self._expire(now)
        if len(self.hits) >= self.limit:
            return False
        self.hits.append(now)
        return True

    def headers(self, now: float) -> dict[str, str]:
        self._expire(now)
        reset = self.seconds - (now - self.hits[0]) if self.hits else 0.0
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(max(0, self.limit - len(self.hits))),
            "x-ratelimit-reset": _format_seconds(max(0.0, reset)),
        }


@dataclass(slots=True)
class _Account:
    name: str
    limits: AccountLimits
    domain_field_key: str
    queast_id_field_key: str
    organization_fields: set[str]
    person_fields: set[str]
    spent: int = 0
    writes: int = 0
    next_id: dict[str, int] = field(default_factory=lambda: {"org": 1, "person": 1, "note": 1})
    organizations: dict[int, dict[str, Any]] = field(default_factory=dict)
    persons: dict[int, dict[str, Any]] = field(default_factory=dict)
    notes: dict[int, dict[str, Any]] = field(default_factory=dict)

    def allocate(self, kind: str) -> int:
        number = self.next_id[kind]
        self.next_id[kind] = number + 1
        return number

    def collection(self, name: Collection) -> dict[int, dict[str, Any]]:
        return self.organizations if name == "organizations" else self.persons

    def custom_field_keys(self, name: Collection) -> set[str]:
        return self.organization_fields if name == "organizations" else self.person_fields


@dataclass(slots=True)
class _AccessToken:
    account: str
    client_id: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class _Caller:
    account: _Account
    token_key: str
    oauth: bool
    api_token: bool


@dataclass(frozen=True, slots=True)
class Answer:
    """What the sandbox answers: status, JSON document (or none) and headers."""

    status: int
    document: Any
    headers: dict[str, str] = field(default_factory=dict)


class _Invalid(Exception):
    """A request the sandbox answers 400 (or another status) with Pipedrive's error body."""

    def __init__(self, error: str, *, status: int = 400, info: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.info = info or "Please check developers.pipedrive.com for more information."


def _error(status: int, error: str, info: str, headers: dict[str, str] | None = None) -> Answer:
    return Answer(
        status,
        {
            "success": False,
            "error": error,
            "error_info": info,
            "data": None,
            "additional_data": None,
        },
        headers or {},
    )


def _format_seconds(seconds: float) -> str:
    if seconds == int(seconds):
        return str(int(seconds))
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def _timestamp(at: float) -> str:
    return datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _field_key() -> str:
    """A custom field key as Pipedrive makes them: 40 hex characters."""
    return secrets.token_hex(20)


class SandboxState:
    """Thread-safe accounts, tokens, objects, limits and counters of the sandbox.

    ``clock`` (wall seconds) stamps objects and expires access tokens; ``monotonic`` drives
    the rate-limit windows. Both are injectable for tests of the sandbox itself.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self._monotonic = monotonic
        self.api_domain = "http://127.0.0.1"
        """What the token endpoint answers as ``api_domain`` (the runner sets its URL)."""
        self.reset()

    # -- configuration -----------------------------------------------------------------

    def reset(self) -> None:
        """Forget every account, token, object and counter."""
        with self._lock:
            self._accounts: dict[str, _Account] = {}
            self._api_tokens: dict[str, str] = {}
            self._oauth_clients: dict[str, tuple[str, str]] = {}
            self._refresh_tokens: dict[str, str] = {}
            self._access_tokens: dict[str, _AccessToken] = {}
            self._windows: dict[tuple[str, str], _Window] = {}
            self._failures: deque[tuple[int, float | None]] = deque()
            self._requests = 0
            self._by_status: Counter[int] = Counter()
            self._by_route: Counter[str] = Counter()
            self._throttled: Counter[str] = Counter()
            self._refreshes = 0

    def add_account(self, spec: AccountSpec | str, **changes: Any) -> AccountInfo:
        """Add an account (``spec`` or just a name plus ``AccountSpec`` fields)."""
        if isinstance(spec, str):
            spec = AccountSpec(name=spec, **changes)
        domain_key = spec.domain_field_key or _field_key()
        queast_key = spec.queast_id_field_key or _field_key()
        with self._lock:
            if spec.name in self._accounts:
                raise ValueError(f"account {spec.name!r} exists")
            for token in spec.api_tokens:
                if token in self._api_tokens:
                    raise ValueError("api token already belongs to an account")
            self._accounts[spec.name] = _Account(
                name=spec.name,
                limits=spec.limits,
                domain_field_key=domain_key,
                queast_id_field_key=queast_key,
                organization_fields={domain_key, queast_key},
                person_fields={queast_key},
            )
            for token in spec.api_tokens:
                self._api_tokens[token] = spec.name
            for client in spec.oauth_clients:
                self._oauth_clients[client.client_id] = (client.client_secret, spec.name)
                self._refresh_tokens[client.refresh_token] = client.client_id
        return AccountInfo(
            name=spec.name, domain_field_key=domain_key, queast_id_field_key=queast_key
        )

    def set_limits(self, account: str, **changes: Any) -> AccountLimits:
        """Change some of ``account``'s limits; returns them all."""
        with self._lock:
            found = self._account(account)
            merged = {**found.limits.model_dump(), **changes}
            found.limits = AccountLimits.model_validate(merged)
            self._windows = {k: w for k, w in self._windows.items() if k[0] != account}
            return found.limits

    def limits(self, account: str) -> AccountLimits:
        with self._lock:
            return self._account(account).limits

    def reset_day(self, account: str | None = None) -> None:
        """Midnight: the daily budget and write count start again (all accounts by default)."""
        with self._lock:
            for found in self._accounts.values():
                if account is None or found.name == account:
                    found.spent = 0
                    found.writes = 0

    def fail_next(self, count: int, status: int = 500, *, retry_after: float | None = None) -> None:
        """Answer the next ``count`` API requests with ``status`` (before auth and limits)."""
        with self._lock:
            self._failures.extend([(status, retry_after)] * count)

    def expire_tokens(self) -> None:
        """Every OAuth access token issued so far expires now."""
        with self._lock:
            now = self._clock()
            for token in self._access_tokens.values():
                token.expires_at = min(token.expires_at, now)

    def seed_organization(
        self,
        account: str,
        *,
        name: str,
        domain: str | None = None,
        queast_id: str | None = None,
        website: str | None = None,
    ) -> dict[str, Any]:
        """Store an organization as if a user had made it; returns its data."""
        with self._lock:
            found = self._account(account)
            custom: dict[str, Any] = {}
            if domain is not None:
                custom[found.domain_field_key] = domain
            if queast_id is not None:
                custom[found.queast_id_field_key] = queast_id
            body: dict[str, Any] = {"name": name, "custom_fields": custom}
            if website is not None:
                body["website"] = website
            return _copy(self._create(found, "organizations", body))

    def seed_person(
        self,
        account: str,
        *,
        name: str,
        emails: Sequence[str] = (),
        org_id: int | None = None,
        queast_id: str | None = None,
    ) -> dict[str, Any]:
        """Store a person as if a user had made it; returns its data."""
        with self._lock:
            found = self._account(account)
            body: dict[str, Any] = {
                "name": name,
                "emails": [
                    {"value": e, "primary": i == 0, "label": "work"} for i, e in enumerate(emails)
                ],
            }
            if org_id is not None:
                body["org_id"] = org_id
            if queast_id is not None:
                body["custom_fields"] = {found.queast_id_field_key: queast_id}
            return _copy(self._create(found, "persons", body))

    # -- reading ---------------------------------------------------------------------------

    def account_info(self, account: str) -> AccountInfo:
        with self._lock:
            found = self._account(account)
            return AccountInfo(
                name=found.name,
                domain_field_key=found.domain_field_key,
                queast_id_field_key=found.queast_id_field_key,
            )

    def organizations(self, account: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Stored organizations in id order."""
        with self._lock:
            found = self._account(account).organizations
            return [
                _copy(o) for _, o in sorted(found.items()) if include_deleted or not o["is_deleted"]
            ]

    def persons(self, account: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Stored persons in id order."""
        with self._lock:
            found = self._account(account).persons
            return [
                _copy(p) for _, p in sorted(found.items()) if include_deleted or not p["is_deleted"]
            ]

    def notes(self, account: str) -> list[dict[str, Any]]:
        """Stored notes in id order."""
        with self._lock:
            return [_copy(n) for _, n in sorted(self._account(account).notes.items())]

    def spent(self, account: str) -> int:
        """Tokens ``account`` spent today."""
        with self._lock:
            return self._account(account).spent

    def snapshot(self, account: str) -> dict[str, Any]:
        """Everything stored for ``account``, JSON-able."""
        with self._lock:
            found = self._account(account)
            return {
                "account": self.account_info(account).model_dump(),
                "limits": found.limits.model_dump(),
                "spent": found.spent,
                "writes": found.writes,
                "organizations": self.organizations(account, include_deleted=True),
                "persons": self.persons(account, include_deleted=True),
                "notes": self.notes(account),
            }

    def stats(self) -> SandboxStats:
        with self._lock:
            return SandboxStats(
                requests=self._requests,
                by_status=dict(self._by_status),
                by_route=dict(self._by_route),
                throttled=sum(self._throttled.values()),
                throttled_by_reason=dict(self._throttled),
                token_refreshes=self._refreshes,
                tokens_spent={name: a.spent for name, a in self._accounts.items()},
            )

    def accounts(self) -> list[str]:
        with self._lock:
            return sorted(self._accounts)

    # -- the request path ------------------------------------------------------------------

    def handle_api(
        self,
        operation: Operation,
        *,
        route: str,
        collection: Collection | None,
        object_id: int | None,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        body: Any,
    ) -> Answer:
        """Answer one API request (see the module docstring for the order of checks)."""
        with self._lock:
            self._requests += 1
            self._by_route[route] += 1
            answer = self._answer(operation, collection, object_id, headers, query, body)
            self._by_status[answer.status] += 1
            return answer

    def handle_token(self, authorization: str | None, form: Mapping[str, str]) -> Answer:
        """``POST /oauth/token``: a refresh grant with Basic client credentials."""
        with self._lock:
            client = _basic_credentials(authorization)
            known = self._oauth_clients.get(client[0]) if client else None
            if client is None or known is None or not secrets.compare_digest(known[0], client[1]):
                return Answer(401, {"error": "invalid_client"})
            if form.get("grant_type") != "refresh_token":
                return Answer(400, {"error": "unsupported_grant_type"})
            refresh = form.get("refresh_token", "")
            if self._refresh_tokens.get(refresh) != client[0]:
                return Answer(400, {"error": "invalid_grant"})
            account = self._accounts[known[1]]
            ttl = account.limits.access_token_ttl
            access = secrets.token_urlsafe(24)
            self._access_tokens[access] = _AccessToken(
                account=account.name, client_id=client[0], expires_at=self._clock() + ttl
            )
            self._refreshes += 1
            return Answer(
                200,
                {
                    "access_token": access,
                    "token_type": "Bearer",
                    "expires_in": int(ttl),
                    "refresh_token": refresh,
                    "scope": "base,contacts:full,search:read",
                    "api_domain": self.api_domain,
                },
            )

    def _answer(
        self,
        operation: Operation,
        collection: Collection | None,
        object_id: int | None,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        body: Any,
    ) -> Answer:
        if self._failures:
            status, retry_after = self._failures.popleft()
            extra = {} if retry_after is None else {"retry-after": _format_seconds(retry_after)}
            return _error(status, "Injected failure", "The sandbox was told to fail.", extra)
        caller = self._caller(headers)
        if caller is None:
            return _error(401, "unauthorized access", "Provide a valid API token or access token.")
        account = caller.account
        limits = account.limits
        now = self._monotonic()
        burst = self._window(caller, "burst")
        if not burst.admit(now):
            self._throttled["burst"] += 1
            return _error(429, "Request over limit", "Burst limit exceeded.", burst.headers(now))
        window = burst
        if operation == "search":
            window = self._window(caller, "search")
            if not window.admit(now):
                self._throttled["search"] += 1
                return _error(
                    429, "Request over limit", "Search limit exceeded.", window.headers(now)
                )
        limit_headers = window.headers(now)
        if account.spent >= limits.daily_budget:
            self._throttled["budget"] += 1
            return _error(
                429,
                "Daily API token budget exceeded",
                "The company's daily token budget is spent; it resets at midnight.",
                {**limit_headers, "x-token-cost": "0"},
            )
        write = operation in _WRITES
        write_limit = limits.daily_write_limit if caller.api_token else None
        if write and write_limit is not None and account.writes >= write_limit:
            self._throttled["daily_writes"] += 1
            return _error(
                429,
                "Daily request limit exceeded",
                "No POST or PUT requests are left today.",
                {**limit_headers, "x-token-cost": "0", "x-daily-requests-left": "0"},
            )
        cost = COSTS[operation]
        account.spent += cost
        if write:
            account.writes += 1
        extra_headers = {**limit_headers, "x-token-cost": str(cost)}
        if write_limit is not None:
            extra_headers["x-daily-requests-left"] = str(max(0, write_limit - account.writes))
        try:
            answer = self._dispatch(account, operation, collection, object_id, query, body)
        except _Invalid as exc:
            answer = _error(exc.status, exc.error, exc.info)
        return Answer(answer.status, answer.document, {**answer.headers, **extra_headers})

    def _caller(self, headers: Mapping[str, str]) -> _Caller | None:
        token = headers.get("x-api-token")
        if token:
            name = self._api_tokens.get(token)
            if name is None:
                return None
            return _Caller(self._accounts[name], f"api:{token}", oauth=False, api_token=True)
        authorization = headers.get("authorization", "")
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value:
            return None
        access = self._access_tokens.get(value.strip())
        if access is None or access.expires_at <= self._clock():
            return None
        return _Caller(
            self._accounts[access.account], f"oauth:{value.strip()}", oauth=True, api_token=False
        )

    def _window(self, caller: _Caller, kind: Literal["burst", "search"]) -> _Window:
        limits = caller.account.limits
        key = (caller.account.name, f"{kind}:{caller.token_key}")
        found = self._windows.get(key)
        if found is None:
            if kind == "search":
                limit = limits.search_per_window
            else:
                limit = limits.oauth_burst if caller.oauth else limits.api_token_burst
            found = self._windows[key] = _Window(limit, limits.window_seconds)
        return found

    def _dispatch(
        self,
        account: _Account,
        operation: Operation,
        collection: Collection | None,
        object_id: int | None,
        query: Mapping[str, str],
        body: Any,
    ) -> Answer:
        if operation == "note":
            return Answer(201, {"success": True, "data": _copy(self._add_note(account, body))})
        if collection is None:
            raise _Invalid("Unknown route", status=404)
        if operation == "create":
            return _ok(self._create(account, collection, body))
        if operation == "search":
            return self._search(account, collection, query)
        if operation == "list":
            return _list(account, collection, query)
        if object_id is None:
            raise _Invalid("Unknown route", status=404)
        stored = account.collection(collection).get(object_id)
        if stored is None or stored["is_deleted"]:
            noun = "Organization" if collection == "organizations" else "Person"
            raise _Invalid(f"{noun} not found", status=404)
        if operation == "get":
            return _ok(_visible_custom_fields(stored, query.get("custom_fields")))
        if operation == "update":
            return _ok(self._update(account, collection, stored, body))
        stored["is_deleted"] = True
        stored["update_time"] = _timestamp(self._clock())
        return Answer(200, {"success": True, "data": {"id": object_id}})

    # -- objects ---------------------------------------------------------------------------

    def _create(self, account: _Account, collection: Collection, body: Any) -> dict[str, Any]:
        fields = _validate_object(account, collection, body, for_create=True)
        now = _timestamp(self._clock())
        kind = "org" if collection == "organizations" else "person"
        object_id = account.allocate(kind)
        custom = dict.fromkeys(sorted(account.custom_field_keys(collection)))
        stored: dict[str, Any]
        if collection == "organizations":
            stored = {
                "id": object_id,
                "name": None,
                "owner_id": _OWNER_ID,
                "add_time": now,
                "update_time": now,
                "is_deleted": False,
                "visible_to": _VISIBLE_TO,
                "address": None,
                "label_ids": [],
                "website": None,
                "linkedin": None,
                "industry": None,
                "annual_revenue": None,
                "employee_count": None,
                "custom_fields": custom,
            }
        else:
            stored = {
                "id": object_id,
                "name": None,
                "first_name": None,
                "last_name": None,
                "owner_id": _OWNER_ID,
                "org_id": None,
                "add_time": now,
                "update_time": now,
                "emails": [],
                "phones": [],
                "is_deleted": False,
                "visible_to": _VISIBLE_TO,
                "label_ids": [],
                "picture_id": None,
                "custom_fields": custom,
            }
        self._apply(account, collection, stored, fields)
        account.collection(collection)[object_id] = stored
        return stored

    def _update(
        self, account: _Account, collection: Collection, stored: dict[str, Any], body: Any
    ) -> dict[str, Any]:
        fields = _validate_object(account, collection, body, for_create=False)
        self._apply(account, collection, stored, fields)
        stored["update_time"] = _timestamp(self._clock())
        return stored

    def _apply(
        self,
        account: _Account,
        collection: Collection,
        stored: dict[str, Any],
        fields: Mapping[str, Any],
    ) -> None:
        org_id = fields.get("org_id")
        if org_id is not None:
            org = account.organizations.get(org_id)
            if org is None or org["is_deleted"]:
                raise _Invalid("Organization not found", info=f"org_id {org_id} does not exist")
        for key, value in fields.items():
            if key == "custom_fields":
                stored["custom_fields"].update(value)
            elif key in ("emails", "phones"):
                stored[key] = [
                    {"value": e["value"], "primary": bool(e.get("primary", False)), **_label(e)}
                    for e in value
                ]
            else:
                stored[key] = value
        if collection == "persons" and "name" in fields:
            first, _, last = str(fields["name"]).partition(" ")
            stored["first_name"] = first or None
            stored["last_name"] = last or None

    def _search(
        self, account: _Account, collection: Collection, query: Mapping[str, str]
    ) -> Answer:
        allowed = {"term", "fields", "exact_match", "limit", "cursor", "organization_id"}
        if collection == "persons":
            allowed |= {"include_fields"}
        unknown = set(query) - allowed
        if unknown:
            raise _Invalid(f"Unknown query parameters: {', '.join(sorted(unknown))}")
        term = query.get("term")
        if term is None:
            raise _Invalid("Parameter 'term' is required")
        exact = _parse_bool(query.get("exact_match", "false"), "exact_match")
        if len(term) < (1 if exact else 2):
            raise _Invalid("Search term must be at least 2 characters long (1 with exact_match)")
        valid = _SEARCH_FIELDS[collection]
        fields = set((query.get("fields") or ",".join(sorted(valid))).split(","))
        if not fields <= valid:
            raise _Invalid(f"Invalid fields: {', '.join(sorted(fields - valid))}")
        limit = _parse_int(query.get("limit", "100"), "limit")
        if not 1 <= limit <= _MAX_SEARCH_LIMIT:
            raise _Invalid(f"Parameter 'limit' must be between 1 and {_MAX_SEARCH_LIMIT}")
        needle = term.strip().lower()

        def matches(value: object) -> bool:
            if not isinstance(value, str):
                return False
            text = value.strip().lower()
            return text == needle if exact else needle in text

        items = []
        for object_id, stored in sorted(account.collection(collection).items()):
            if stored["is_deleted"]:
                continue
            matched_custom = [v for v in stored["custom_fields"].values() if matches(v)]
            hit = (
                ("name" in fields and matches(stored["name"]))
                or ("custom_fields" in fields and bool(matched_custom))
                or (
                    "email" in fields and any(matches(e["value"]) for e in stored.get("emails", []))
                )
            )
            if hit:
                items.append(self._search_item(account, collection, object_id, stored, exact))
            if len(items) >= limit:
                break
        return Answer(
            200,
            {"success": True, "data": {"items": items}, "additional_data": {"next_cursor": None}},
        )

    def _search_item(
        self,
        account: _Account,
        collection: Collection,
        object_id: int,
        stored: Mapping[str, Any],
        exact: bool,
    ) -> dict[str, Any]:
        custom_values = [v for v in stored["custom_fields"].values() if isinstance(v, str)]
        item: dict[str, Any] = {
            "id": object_id,
            "type": "organization" if collection == "organizations" else "person",
            "name": stored["name"],
            "visible_to": stored["visible_to"],
            "owner": {"id": stored["owner_id"]},
            "custom_fields": custom_values,
            "notes": [],
        }
        if collection == "organizations":
            item["address"] = None
        else:
            item["phones"] = [p["value"] for p in stored["phones"]]
            item["emails"] = [e["value"] for e in stored["emails"]]
            org = account.organizations.get(stored["org_id"]) if stored["org_id"] else None
            item["organization"] = (
                None if org is None else {"id": org["id"], "name": org["name"], "address": None}
            )
        return {"result_score": 1.0 if exact else 0.5, "item": item}

    def _add_note(self, account: _Account, body: Any) -> dict[str, Any]:
        fields = _validate(body, _NOTE_FIELDS, required=("content",))
        content = fields["content"]
        if not isinstance(content, str) or not content.strip():
            raise _Invalid("Parameter 'content' must be a non-empty string")
        if len(content) > 100_000:
            raise _Invalid("Note content is too long")
        targets = ("deal_id", "person_id", "org_id", "lead_id", "project_id", "task_id")
        if not any(fields.get(t) is not None for t in targets):
            raise _Invalid(
                "Note must be attached to something",
                info="One of deal_id, person_id, org_id, lead_id or project_id is required.",
            )
        for key, stored_in in (("org_id", account.organizations), ("person_id", account.persons)):
            ref = fields.get(key)
            if ref is not None and (ref not in stored_in or stored_in[ref]["is_deleted"]):
                raise _Invalid(f"{key} {ref} not found", status=404)
        now = _timestamp(self._clock())
        note_id = account.allocate("note")
        note = {
            "id": note_id,
            "active_flag": True,
            "add_time": now,
            "update_time": now,
            "content": content,
            "deal_id": fields.get("deal_id"),
            "lead_id": fields.get("lead_id"),
            "org_id": fields.get("org_id"),
            "person_id": fields.get("person_id"),
            "project_id": fields.get("project_id"),
            "user_id": _OWNER_ID,
            "pinned_to_deal_flag": bool(fields.get("pinned_to_deal_flag", False)),
            "pinned_to_organization_flag": bool(fields.get("pinned_to_organization_flag", False)),
            "pinned_to_person_flag": bool(fields.get("pinned_to_person_flag", False)),
        }
        account.notes[note_id] = note
        return note

    def _account(self, name: str) -> _Account:
        found = self._accounts.get(name)
        if found is None:
            raise KeyError(f"no account {name!r}")
        return found


# -- validation ---------------------------------------------------------------------------

_Spec = Mapping[str, tuple[tuple[type, ...], bool]]
"""Field name -> (accepted JSON types, nullable)."""

_INT = (int,)
_STR = (str,)
_ORGANIZATION_FIELDS: Final[_Spec] = {
    "name": (_STR, False),
    "owner_id": (_INT, False),
    "add_time": (_STR, False),
    "visible_to": (_INT, False),
    "label_ids": ((list,), False),
    "address": ((dict,), False),
    "website": (_STR, True),
    "linkedin": (_STR, True),
    "industry": (_INT, True),
    "annual_revenue": (_INT, True),
    "employee_count": (_INT, True),
    "custom_fields": ((dict,), False),
}
_PERSON_FIELDS: Final[_Spec] = {
    "name": (_STR, False),
    "owner_id": (_INT, False),
    "org_id": (_INT, True),
    "add_time": (_STR, False),
    "emails": ((list,), False),
    "phones": ((list,), False),
    "visible_to": (_INT, False),
    "label_ids": ((list,), False),
    "postal_address": ((dict,), False),
    "notes": (_STR, False),
    "im": ((list,), False),
    "birthday": (_STR, False),
    "job_title": (_STR, False),
    "marketing_status": (_STR, False),
    "custom_fields": ((dict,), False),
}
_NOTE_FIELDS: Final[_Spec] = {
    "content": (_STR, False),
    "lead_id": (_STR, True),
    "deal_id": (_INT, True),
    "person_id": (_INT, True),
    "org_id": (_INT, True),
    "project_id": (_INT, True),
    "task_id": (_INT, True),
    "user_id": (_INT, True),
    "add_time": (_STR, True),
    "pinned_to_lead_flag": ((int, bool), False),
    "pinned_to_deal_flag": ((int, bool), False),
    "pinned_to_organization_flag": ((int, bool), False),
    "pinned_to_person_flag": ((int, bool), False),
    "pinned_to_project_flag": ((int, bool), False),
}
_CHANNEL_KEYS: Final[frozenset[str]] = frozenset({"value", "primary", "label"})


def _validate(body: Any, spec: _Spec, *, required: Sequence[str] = ()) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _Invalid("Request body must be a JSON object")
    unknown = sorted(set(body) - set(spec))
    if unknown:
        raise _Invalid(
            f"Validation failed: unknown field(s) {', '.join(unknown)}",
            info="The request body contains fields the endpoint does not accept.",
        )
    for key in required:
        if key not in body:
            raise _Invalid(f"Validation failed: {key}: required")
    for key, value in body.items():
        types, nullable = spec[key]
        if value is None:
            if not nullable:
                raise _Invalid(f"Validation failed: {key}: must not be null")
            continue
        if isinstance(value, bool) and bool not in types:
            raise _Invalid(f"Validation failed: {key}: wrong type")
        if not isinstance(value, types):
            raise _Invalid(f"Validation failed: {key}: wrong type")
    return dict(body)


def _validate_object(
    account: _Account, collection: Collection, body: Any, *, for_create: bool
) -> dict[str, Any]:
    spec = _ORGANIZATION_FIELDS if collection == "organizations" else _PERSON_FIELDS
    fields = _validate(body, spec, required=("name",) if for_create else ())
    if "name" in fields and not str(fields["name"]).strip():
        raise _Invalid("Validation failed: name: must not be empty")
    for key in ("emails", "phones"):
        for entry in fields.get(key, []):
            if not isinstance(entry, dict) or set(entry) - _CHANNEL_KEYS:
                raise _Invalid(f"Validation failed: {key}: items take value, primary and label")
            if not isinstance(entry.get("value"), str) or not entry["value"]:
                raise _Invalid(f"Validation failed: {key}: value must be a non-empty string")
            if "primary" in entry and not isinstance(entry["primary"], bool):
                raise _Invalid(f"Validation failed: {key}: primary must be a boolean")
            if "label" in entry and not isinstance(entry["label"], str):
                raise _Invalid(f"Validation failed: {key}: label must be a string")
    custom = fields.get("custom_fields", {})
    known = account.custom_field_keys(collection)
    for key, value in custom.items():
        if key not in known:
            raise _Invalid(f"Validation failed: custom_fields: unknown field key {key}")
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, str | int | float)
        ):
            raise _Invalid(f"Validation failed: custom_fields: {key} has a wrong type")
    return fields


def _label(entry: Mapping[str, Any]) -> dict[str, Any]:
    label = entry.get("label")
    return {"label": label} if isinstance(label, str) else {}


def _parse_bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise _Invalid(f"Parameter '{name}' must be a boolean")


def _parse_int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise _Invalid(f"Parameter '{name}' must be an integer") from None


def _list(account: _Account, collection: Collection, query: Mapping[str, str]) -> Answer:
    """``GET /api/v2/{collection}``: one page of the undeleted objects, as Pipedrive pages them.

    The cursor is opaque to callers; like Pipedrive's it is base64url JSON naming the sort
    field, its value and the id of the page's first object.
    """
    unknown = set(query) - _LIST_PARAMETERS[collection]
    if unknown:
        raise _Invalid(f"Unknown query parameters: {', '.join(sorted(unknown))}")
    limit = _parse_int(query.get("limit", "100"), "limit")
    if not 1 <= limit <= _MAX_LIST_LIMIT:
        raise _Invalid(f"Parameter 'limit' must be between 1 and {_MAX_LIST_LIMIT}")
    sort_by = query.get("sort_by", "id")
    if sort_by not in _LIST_SORT_FIELDS:
        raise _Invalid("Parameter 'sort_by' must be one of id, update_time, add_time")
    direction = query.get("sort_direction", "asc")
    if direction not in ("asc", "desc"):
        raise _Invalid("Parameter 'sort_direction' must be asc or desc")
    keys = query.get("custom_fields")
    if keys and len(keys.split(",")) > _MAX_LIST_CUSTOM_FIELDS:
        raise _Invalid(f"At most {_MAX_LIST_CUSTOM_FIELDS} custom_fields keys are allowed")
    since = _parse_time(query.get("updated_since"), "updated_since")
    until = _parse_time(query.get("updated_until"), "updated_until")
    wanted_ids = _parse_ids(query.get("ids"))
    owner_id = _optional_int(query.get("owner_id"), "owner_id")
    org_id = _optional_int(query.get("org_id"), "org_id")

    def position(stored: Mapping[str, Any]) -> tuple[str | int, int]:
        value = stored["id"] if sort_by == "id" else stored[sort_by]
        return value, stored["id"]

    def kept(stored: Mapping[str, Any]) -> bool:
        if stored["is_deleted"]:
            return False
        if wanted_ids is not None and stored["id"] not in wanted_ids:
            return False
        if owner_id is not None and stored["owner_id"] != owner_id:
            return False
        if org_id is not None and stored.get("org_id") != org_id:
            return False
        updated = _parse_time(stored["update_time"], "update_time")
        if since is not None and (updated is None or updated < since):
            return False
        return until is None or (updated is not None and updated < until)

    ordered = sorted(
        (o for o in account.collection(collection).values() if kept(o)),
        key=position,
        reverse=direction == "desc",
    )
    start = _decode_cursor(query.get("cursor"), sort_by, direction)
    if start is not None:
        if direction == "asc":
            ordered = [o for o in ordered if position(o) >= start]
        else:
            ordered = [o for o in ordered if position(o) <= start]
    page, rest = ordered[:limit], ordered[limit:]
    next_cursor = _encode_cursor(sort_by, direction, position(rest[0])) if rest else None
    return Answer(
        200,
        {
            "success": True,
            "data": [_visible_custom_fields(o, keys) for o in page],
            "additional_data": {"next_cursor": next_cursor},
        },
    )


def _encode_cursor(sort_by: str, direction: str, position: tuple[str | int, int]) -> str:
    document = {
        "field": sort_by,
        "fieldValue": position[0],
        "sortDirection": direction,
        "id": position[1],
    }
    raw = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(
    cursor: str | None, sort_by: str, direction: str
) -> tuple[str | int, int] | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        document = json.loads(raw)
        value, object_id = document["fieldValue"], document["id"]
        same_order = document["field"] == sort_by and document["sortDirection"] == direction
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise _Invalid("Invalid cursor") from None
    if not same_order or not isinstance(object_id, int) or not isinstance(value, str | int):
        raise _Invalid("Invalid cursor")
    return value, object_id


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Invalid(f"Parameter '{name}' must be an RFC 3339 date-time") from None
    if parsed.tzinfo is None:
        raise _Invalid(f"Parameter '{name}' must carry a time zone")
    return parsed


def _parse_ids(value: str | None) -> set[int] | None:
    if value is None:
        return None
    ids = {_parse_int(part.strip(), "ids") for part in value.split(",") if part.strip()}
    if len(ids) > 100:
        raise _Invalid("Parameter 'ids' takes at most 100 ids")
    return ids


def _optional_int(value: str | None, name: str) -> int | None:
    return None if value is None else _parse_int(value, name)


def _visible_custom_fields(stored: Mapping[str, Any], keys: str | None) -> dict[str, Any]:
    data = _copy(stored)
    if keys:
        wanted = {k.strip() for k in keys.split(",")}
        data["custom_fields"] = {k: v for k, v in data["custom_fields"].items() if k in wanted}
    return data


def _ok(data: Mapping[str, Any]) -> Answer:
    return Answer(200, {"success": True, "data": _copy(data)})


def _copy(value: Mapping[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(value))
    return copied


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


# -- the ASGI app ---------------------------------------------------------------------------


class SandboxApp:
    """The ASGI app: Pipedrive's routes, the token endpoint and ``/_control``."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        routes = [
            Route("/oauth/token", self._token, methods=["POST"]),
            Route("/v1/notes", self._note, methods=["POST"]),
            Route("/_control", self._snapshot_all, methods=["GET"]),
            Route("/_control", self._reset, methods=["DELETE"]),
            Route("/_control/accounts", self._add_account, methods=["POST"]),
            Route("/_control/accounts/{account}", self._get_account, methods=["GET"]),
            Route("/_control/accounts/{account}/limits", self._put_limits, methods=["PUT"]),
            Route(
                "/_control/accounts/{account}/organizations",
                self._seed_organization,
                methods=["POST"],
            ),
            Route("/_control/accounts/{account}/persons", self._seed_person, methods=["POST"]),
            Route("/_control/reset_day", self._reset_day, methods=["POST"]),
            Route("/_control/fail_next", self._fail_next, methods=["POST"]),
            Route("/_control/expire_tokens", self._expire_tokens, methods=["POST"]),
            Route("/_control/stats", self._stats, methods=["GET"]),
        ]
        for collection in ("organizations", "persons"):
            routes += [
                Route(f"/api/v2/{collection}", self._create, methods=["POST"]),
                Route(f"/api/v2/{collection}", self._list, methods=["GET"]),
                Route(f"/api/v2/{collection}/search", self._search, methods=["GET"]),
                Route(
                    f"/api/v2/{collection}/{{object_id:int}}",
                    self._object,
                    methods=["GET", "PATCH", "DELETE"],
                ),
            ]
        self._app = Starlette(routes=routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    # -- Pipedrive ----------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        return await self._api(request, "create")

    async def _search(self, request: Request) -> Response:
        return await self._api(request, "search")

    async def _list(self, request: Request) -> Response:
        return await self._api(request, "list")

    async def _object(self, request: Request) -> Response:
        return await self._api(request, _OBJECT_OPERATIONS[request.method])

    async def _note(self, request: Request) -> Response:
        return await self._api(request, "note")

    async def _api(self, request: Request, operation: Operation) -> Response:
        path = request.url.path
        collection: Collection | None = None
        if path.startswith("/api/v2/organizations"):
            collection = "organizations"
        elif path.startswith("/api/v2/persons"):
            collection = "persons"
        object_id = request.path_params.get("object_id")
        raw = await request.body()
        body: Any = None
        if operation in ("create", "update", "note"):
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                return _render(_error(400, "Invalid JSON", "The request body is not JSON."))
        route = f"{request.method} {path if object_id is None else path.rsplit('/', 1)[0]}"
        if object_id is not None:
            route += "/{id}"
        answer = self.state.handle_api(
            operation,
            route=route,
            collection=collection,
            object_id=object_id,
            headers={k.lower(): v for k, v in request.headers.items()},
            query=dict(request.query_params),
            body=body,
        )
        return _render(answer)

    async def _token(self, request: Request) -> Response:
        raw = (await request.body()).decode("utf-8", errors="replace")
        form = dict(parse_qsl(raw, keep_blank_values=True))
        return _render(self.state.handle_token(request.headers.get("authorization"), form))

    # -- control --------------------------------------------------------------------------

    async def _snapshot_all(self, request: Request) -> Response:
        state = self.state
        return JSONResponse(
            {
                "accounts": {name: state.snapshot(name) for name in state.accounts()},
                "stats": state.stats().model_dump(mode="json"),
            }
        )

    async def _reset(self, request: Request) -> Response:
        self.state.reset()
        return Response(status_code=204)

    async def _add_account(self, request: Request) -> Response:
        spec = await _parse(request, AccountSpec)
        if isinstance(spec, Response):
            return spec
        try:
            info = self.state.add_account(spec)
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, 409)
        return JSONResponse(info.model_dump(), 201)

    async def _get_account(self, request: Request) -> Response:
        try:
            return JSONResponse(self.state.snapshot(request.path_params["account"]))
        except KeyError:
            return JSONResponse({"detail": "no such account"}, 404)

    async def _put_limits(self, request: Request) -> Response:
        try:
            changes = json.loads(await request.body())
            if not isinstance(changes, dict):
                raise ValueError("body must be an object")
            limits = self.state.set_limits(request.path_params["account"], **changes)
        except KeyError:
            return JSONResponse({"detail": "no such account"}, 404)
        except ValidationError as exc:
            return JSONResponse({"detail": json.loads(exc.json(include_url=False))}, 422)
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, 422)
        return JSONResponse(limits.model_dump())

    async def _seed_organization(self, request: Request) -> Response:
        seed = await _parse(request, _SeedOrganization)
        if isinstance(seed, Response):
            return seed
        try:
            data = self.state.seed_organization(request.path_params["account"], **seed.model_dump())
        except KeyError:
            return JSONResponse({"detail": "no such account"}, 404)
        return JSONResponse(data, 201)

    async def _seed_person(self, request: Request) -> Response:
        seed = await _parse(request, _SeedPerson)
        if isinstance(seed, Response):
            return seed
        try:
            data = self.state.seed_person(request.path_params["account"], **seed.model_dump())
        except KeyError:
            return JSONResponse({"detail": "no such account"}, 404)
        except _Invalid as exc:
            return JSONResponse({"detail": exc.error}, 422)
        return JSONResponse(data, 201)

    async def _reset_day(self, request: Request) -> Response:
        self.state.reset_day(request.query_params.get("account"))
        return Response(status_code=204)

    async def _fail_next(self, request: Request) -> Response:
        body = await _parse(request, _FailNext)
        if isinstance(body, Response):
            return body
        self.state.fail_next(body.count, body.status, retry_after=body.retry_after)
        return Response(status_code=204)

    async def _expire_tokens(self, request: Request) -> Response:
        self.state.expire_tokens()
        return Response(status_code=204)

    async def _stats(self, request: Request) -> Response:
        return JSONResponse(self.state.stats().model_dump(mode="json"))


_ModelT = TypeVar("_ModelT", bound=BaseModel)


async def _parse(request: Request, model: type[_ModelT]) -> _ModelT | Response:
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        return JSONResponse({"detail": json.loads(exc.json(include_url=False))}, 422)


def _render(answer: Answer) -> Response:
    if answer.document is None:
        return Response(status_code=answer.status, headers=answer.headers)
    return JSONResponse(answer.document, answer.status, headers=answer.headers)


# -- the runner ---------------------------------------------------------------------------


class PipedriveSandbox(ThreadedServer):
    """A ``SandboxApp`` served for real by uvicorn in a daemon thread.

    ``with PipedriveSandbox() as sandbox: sandbox.add_account("acme", api_tokens=["t"])``;
    point the connector's ``base_url`` at :attr:`url` and OAuth's ``token_url`` at
    :attr:`token_url`. The port is bound in ``start()`` (``0``: ephemeral).
    """

    name = "the Pipedrive sandbox"

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, state: SandboxState | None = None
    ) -> None:
        super().__init__(host=host, port=port)
        self.state = state or SandboxState()

    @property
    def token_url(self) -> str:
        """The OAuth token endpoint."""
        return f"{self.url}/oauth/token"

    def _new_server(self) -> uvicorn.Server:
        return uvicorn_server(SandboxApp(self.state), configure_logging=False, log_level="warning")

    def _bound(self, url: str) -> None:
        self.state.api_domain = url

    # -- the SandboxState API, for convenience ------------------------------------------

    def add_account(self, spec: AccountSpec | str, **changes: Any) -> AccountInfo:
        """See ``SandboxState.add_account``."""
        return self.state.add_account(spec, **changes)

    def set_limits(self, account: str, **changes: Any) -> AccountLimits:
        """See ``SandboxState.set_limits``."""
        return self.state.set_limits(account, **changes)

    def reset_day(self, account: str | None = None) -> None:
        """See ``SandboxState.reset_day``."""
        self.state.reset_day(account)

    def fail_next(self, count: int, status: int = 500, *, retry_after: float | None = None) -> None:
        """See ``SandboxState.fail_next``."""
        self.state.fail_next(count, status, retry_after=retry_after)

    def expire_tokens(self) -> None:
        """See ``SandboxState.expire_tokens``."""
        self.state.expire_tokens()

    def seed_organization(self, account: str, **fields: Any) -> dict[str, Any]:
        """See ``SandboxState.seed_organization``."""
        return self.state.seed_organization(account, **fields)

    def seed_person(self, account: str, **fields: Any) -> dict[str, Any]:
        """See ``SandboxState.seed_person``."""
        return self.state.seed_person(account, **fields)

    def organizations(self, account: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """See ``SandboxState.organizations``."""
        return self.state.organizations(account, include_deleted=include_deleted)

    def persons(self, account: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """See ``SandboxState.persons``."""
        return self.state.persons(account, include_deleted=include_deleted)

    def notes(self, account: str) -> list[dict[str, Any]]:
        """See ``SandboxState.notes``."""
        return self.state.notes(account)

    def stats(self) -> SandboxStats:
        """See ``SandboxState.stats``."""
        return self.state.stats()

    def reset(self) -> None:
        """See ``SandboxState.reset``."""
        self.state.reset()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.sandboxes.pipedrive",
        description="Local Pipedrive sandbox: /api/v2, /v1/notes, /oauth/token, /_control.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8910)
    parser.add_argument("--account", default="demo")
    parser.add_argument("--api-token", action="append", default=[], help="repeatable")
    parser.add_argument("--daily-budget", type=int, default=30_000)
    parser.add_argument("--log-level", default="warning")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve in the foreground with one account until interrupted (the local demo)."""
    args = _parse_args(argv)
    state = SandboxState()
    sock = listen(args.host, args.port)
    state.api_domain = base_url(args.host, sock.getsockname()[1])
    info = state.add_account(
        AccountSpec(
            name=args.account,
            api_tokens=list(args.api_token),
            limits=AccountLimits(daily_budget=args.daily_budget),
        )
    )
    print(
        f"pipedrive sandbox on {state.api_domain}: account {info.name!r}, "
        f"domain_field_key={info.domain_field_key}, queast_id_field_key={info.queast_id_field_key}",
        flush=True,
    )
    server = uvicorn_server(SandboxApp(state), configure_logging=True, log_level=args.log_level)
    serve_until_interrupted(server, sock)


if __name__ == "__main__":
    main()

"""The HubSpot HTTP calls, their pacing, and how their answers become outcomes.

Pacing (:class:`HubSpotRateLimiter`), per connection (one HubSpot account):

- **burst**: every call except search spends a token of a :class:`TokenBucket` refilled at
  the tier's rate (100, 110 or 190 requests per 10 s) and holding three tokens, *and* a
  slot of a rolling 10-second window of the tier's size, because HubSpot counts requests in
  a rolling window: a bucket alone would send up to twice the limit in a window. The small
  bucket spaces requests evenly: a connection with a backlog sends one every tenth of a
  second (Free/Starter), each with the full batch that gathered meanwhile, instead of
  spending a window's worth on whatever was queued, waiting with nothing to send, and
  echoing that burst window after window. A request holds its window slot until its answer
  is back, plus the window (see :class:`~connectors.base.ratelimit.RollingWindow`).
  Responses correct both from ``X-HubSpot-RateLimit-Max`` / ``-Interval-Milliseconds``
  (a lower limit) and ``-Remaining`` (never more tokens than HubSpot says are left);
- **search**: a separate bucket and one-second window (5 per second by default); search
  responses carry no rate-limit headers. Searches may wait up to ``max_search_wait``
  (longer than ``max_wait``): the lookups of a write are worth waiting for, since a
  deferred write spends its lookups again when it comes back;
- **daily**: ``X-HubSpot-RateLimit-Daily-Remaining: 0`` or a 429 with ``policyName: DAILY``
  blocks every call until the reset (``Retry-After`` if sent, else midnight UTC: the
  account's time zone is not known here).

A wait up to ``max_wait`` seconds (``max_search_wait`` for searches) is slept (through the
context clock, by :func:`~connectors.base.ratelimit.take_or_defer`); a longer one is not:
the call raises :class:`RequestDeferred` without sending anything, and the sink defers the
records with a ``BackpressureError`` that is not counted as an attempt.

Searches (:meth:`HubSpotClient.search`) send a body packed by
:func:`~connectors.hubspot.search.search_requests` as the exact bytes it was measured on,
and follow ``paging.next.after`` until the last page (HubSpot stops at 10,000 results).
:class:`SearchBatcher` shares search requests between the writes of one connection that
look up at the same time: one request at a time per object type, packed with the oldest
waiting lookups of every write, so that when the search budget is what limits, every
request it allows is full.

Every request carries ``X-Request-Id``; one that carries a single record also sends its
``X-Correlation-Id``, and a batch logs its correlation ids at debug
(:mod:`connectors.base.tracing`). The records are the ones the sink's step set around the
call; a shared search carries the records of the writes whose lookups it packed.

Answers (after :func:`translate_http_errors` for transport failures):

- 401: the token source renews once and the call is retried once; a second 401 is
  ``AuthenticationError``;
- 429 ``TEN_SECONDLY_ROLLING`` (or ``SECONDLY`` for search): ``BackpressureError`` with
  ``retry_after`` until the window frees a slot; 429 ``DAILY``: ``QuotaExhaustedError``;
- 423 Locked: ``TransientError`` with ``retry_after`` of at least 2 s;
- anything else through :func:`raise_for_response`;
- 200/201/207 of a batch write: one :class:`InputOutcome` per input, matched by its
  ``objectWriteTraceId`` (the record's delivery id). Per-input errors are classified by
  ``category``: ``CONFLICT`` and server-side categories are transient, validation and
  not-found permanent. Reasons name categories, codes and property names, never values.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypedDict

import httpx

from connectors.base.attempts import seconds_until_midnight_utc
from connectors.base.context import Clock
from connectors.base.errors import (
    MAX_QUOTA_RESET_SECONDS,
    MAX_RETRY_AFTER_SECONDS,
    AuthenticationError,
    BackpressureError,
    ConnectorError,
    PermanentError,
    QuotaExhaustedError,
    TransientError,
)
from connectors.base.http import (
    endpoint_label,
    header_number,
    parse_retry_after,
    raise_for_response,
    translate_http_errors,
)
from connectors.base.oauth import TokenSource
from connectors.base.ratelimit import RateLimit, RollingWindow, take_or_defer
from connectors.base.tracing import Correlated, carrying, trace_headers
from connectors.base.tracing import carried as carried_records
from connectors.hubspot.bodies import (
    archive_body,
    associate_default_body,
    batch_update_body,
    batch_upsert_body,
    encode_json,
    notes_create_body,
)
from connectors.hubspot.config import HubSpotLimits
from connectors.hubspot.search import MAX_SEARCH_BODY_CHARS, Lookup, search_requests

__all__ = [
    "AssociationResponse",
    "BatchWriteResponse",
    "HubSpotClient",
    "HubSpotRateLimiter",
    "InputOutcome",
    "ObjectType",
    "RequestDeferred",
    "Scope",
    "SearchAnswer",
    "SearchBatcher",
    "SearchResult",
]

ObjectType = Literal["companies", "contacts", "notes"]
Scope = Literal["burst", "search"]

_PARTNER: Final[str] = "hubspot"
_WINDOW_MARGIN_SECONDS: Final[float] = 0.05
_SEARCH_MAX_RESULTS: Final[int] = 10_000
_CONFLICT_RETRY_SECONDS: Final[float] = 5.0
_PERMANENT_CATEGORIES: Final[frozenset[str]] = frozenset(
    {"VALIDATION_ERROR", "OBJECT_NOT_FOUND", "INVALID_PARAMS", "INVALID_EMAIL", "MISSING_SCOPES"}
)
_MAX_CODES_IN_REASON: Final[int] = 3


class _ErrorContext(TypedDict):
    partner: str
    endpoint: str
    status_code: int


class RequestDeferred(Exception):
    """The call was not sent: the rate limiter's wait exceeds ``max_wait``.

    ``error`` is the ``BackpressureError`` to report for the records that needed the call;
    they were not attempted.
    """

    def __init__(self, error: BackpressureError) -> None:
        super().__init__(error.reason)
        self.error = error


@dataclass(frozen=True, slots=True)
class InputOutcome:
    """What became of one input of a batch call: an object id, or an error."""

    object_id: str | None = None
    new: bool | None = None
    error: ConnectorError | None = None


@dataclass(frozen=True, slots=True)
class BatchWriteResponse:
    """A batch write's HTTP status and an outcome for every input, by trace id."""

    status_code: int
    outcomes: Mapping[str, InputOutcome]


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The objects of every page of one search, how many requests it took, and whether
    HubSpot's 10,000-result cap cut it short."""

    objects: tuple[Mapping[str, Any], ...]
    requests: int
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class AssociationResponse:
    """A batch association's HTTP status and the error of each ``from`` id that failed."""

    status_code: int
    failed: Mapping[str, ConnectorError]


# -- pacing -------------------------------------------------------------------------------------


_MAX_HEADER_COUNT: Final[float] = 1e9
"""Counts in rate-limit headers above this are HubSpot's mistake, read as this."""
_MAX_WINDOW_MS: Final[float] = 60_000.0
"""HubSpot's burst windows are seconds long; a longer reported window is read as a minute."""


def seconds_to_utc_midnight(now: float) -> float:
    """Seconds from ``now`` (Unix) to the next midnight UTC, at least one second."""
    return max(1.0, seconds_until_midnight_utc(now))


def _window(limit: RateLimit, clock: Clock) -> RollingWindow:
    return RollingWindow(
        math.floor(limit.rate),
        limit.per_seconds,
        margin=_WINDOW_MARGIN_SECONDS,
        clock=clock.monotonic,
    )


class HubSpotRateLimiter:
    """Request pacing for one HubSpot account; see the module docstring.

    Not thread-safe: one per sink, used from one event loop.
    """

    def __init__(self, limits: HubSpotLimits, *, clock: Clock) -> None:
        self._clock = clock
        burst, search = limits.burst, limits.search
        self._per_seconds = burst.per_seconds
        self._buckets = {
            "burst": burst.bucket(clock=clock.monotonic),
            "search": search.bucket(clock=clock.monotonic),
        }
        self._windows: dict[Scope, RollingWindow] = {
            "burst": _window(burst, clock),
            "search": _window(search, clock),
        }
        self._blocked_until: dict[Scope, float] = {"burst": 0.0, "search": 0.0}
        self._quota_until: float | None = None

    @property
    def burst_limit(self) -> int:
        """Burst requests allowed per window now (lowered by HubSpot's headers)."""
        return self._windows["burst"].limit

    def reserve(self, scope: Scope, *, now: float | None = None) -> float:
        """Take a slot and return ``0.0``, or return the seconds to wait without taking one.

        ``now`` (monotonic, default the clock's) is when the slot counts as taken: pass it
        to :meth:`settle` once the request is answered.
        """
        now = self._clock.monotonic() if now is None else now
        window = self._windows[scope]
        wait = max(window.wait(now), self._blocked_until[scope] - now)
        if wait > 0:
            return wait
        wait = self._buckets[scope].try_acquire()
        if wait > 0:
            return wait
        window.record(now)
        return 0.0

    def settle(self, scope: Scope, taken_at: float) -> None:
        """The request whose ``scope`` slot was taken at ``taken_at`` (monotonic) was answered
        or failed: its place in the rolling window counts from now."""
        self._windows[scope].settle(taken_at, self._clock.monotonic())

    def peek(self, scope: Scope) -> float:
        """Seconds until ``scope`` would grant a slot, taking nothing (0.0: now)."""
        now = self._clock.monotonic()
        bucket = self._buckets[scope]
        deficit = max(0.0, 1.0 - bucket.available) / bucket.refill_per_second
        return max(self._windows[scope].wait(now), self._blocked_until[scope] - now, deficit)

    def quota_reset_in(self) -> float | None:
        """Seconds until the daily quota resets, while it is known to be spent."""
        if self._quota_until is None:
            return None
        remaining = self._quota_until - self._clock.time()
        if remaining <= 0:
            self._quota_until = None
            return None
        return remaining

    def observe(self, headers: httpx.Headers) -> None:
        """Correct the burst pacing from a response's ``X-HubSpot-RateLimit-*`` headers."""
        limit = header_number(
            headers, "x-hubspot-ratelimit-max", minimum=1.0, maximum=_MAX_HEADER_COUNT
        )
        remaining = header_number(
            headers, "x-hubspot-ratelimit-remaining", maximum=_MAX_HEADER_COUNT
        )
        interval_ms = header_number(
            headers,
            "x-hubspot-ratelimit-interval-milliseconds",
            minimum=1.0,
            maximum=_MAX_WINDOW_MS,
        )
        scaled: float | None = None
        if limit is not None and limit > 0:
            interval = interval_ms / 1000 if interval_ms else self._per_seconds
            # The bucket keeps room for one request: a window of a few requests a minute
            # scales to less than one token, which the bucket could never grant. The window
            # below does the pacing then.
            scaled = max(1.0, limit * self._per_seconds / interval)
            self._windows["burst"].lower(math.floor(limit), interval)
        self._buckets["burst"].observe_headers(limit=scaled, remaining=remaining)
        daily_remaining = header_number(
            headers, "x-hubspot-ratelimit-daily-remaining", maximum=_MAX_HEADER_COUNT
        )
        if daily_remaining is not None and daily_remaining <= 0:
            self.exhaust_daily(None)

    def throttled(self, scope: Scope, retry_after: float | None) -> float:
        """After a 429 of ``scope``'s window: block the scope and return the wait."""
        now = self._clock.monotonic()
        wait = retry_after
        if wait is None:
            wait = self._windows[scope].until_oldest_expires(now)
        wait = max(wait, _WINDOW_MARGIN_SECONDS)
        self._buckets[scope].observe_headers(remaining=0, reset_seconds=wait)
        self._blocked_until[scope] = max(self._blocked_until[scope], now + wait)
        return wait

    def exhaust_daily(self, retry_after: float | None) -> float:
        """The daily quota is spent: block until ``retry_after`` or midnight UTC."""
        now = self._clock.time()
        wait = retry_after if retry_after is not None else seconds_to_utc_midnight(now)
        self._quota_until = now + wait
        return wait


# -- answers ------------------------------------------------------------------------------------


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        parsed: object = response.json()
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _strings(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, str | int) and not isinstance(v, bool)]
    if isinstance(value, str | int) and not isinstance(value, bool):
        return [str(value)]
    return []


def _error_reason(error: Mapping[str, Any]) -> str:
    category = error.get("category")
    codes: list[str] = []
    properties: list[str] = []
    for detail in error.get("errors") or []:
        if isinstance(detail, Mapping):
            code = detail.get("code")
            if isinstance(code, str):
                codes.append(code)
            context = detail.get("context")
            if isinstance(context, Mapping):
                properties += _strings(context.get("propertyName"))
    context = error.get("context")
    if isinstance(context, Mapping):
        properties += _strings(context.get("propertyName"))
    reason = f"HubSpot {category if isinstance(category, str) else 'error'}"
    if codes:
        reason += f" ({', '.join(sorted(set(codes))[:_MAX_CODES_IN_REASON])})"
    if properties:
        reason += f" on {', '.join(sorted(set(properties))[:_MAX_CODES_IN_REASON])}"
    return reason


def input_error(error: Mapping[str, Any], *, status_code: int, endpoint: str) -> ConnectorError:
    """The outcome of one failed input of a batch call (a 207 ``errors[]`` entry)."""
    category = error.get("category")
    reason = _error_reason(error)
    context = _ErrorContext(partner=_PARTNER, endpoint=endpoint, status_code=status_code)
    if category in _PERMANENT_CATEGORIES:
        return PermanentError(reason, **context)
    if category == "CONFLICT":
        return TransientError(reason, retry_after=_CONFLICT_RETRY_SECONDS, **context)
    return TransientError(reason, **context)


def parse_batch_write(
    response: httpx.Response,
    trace_ids: Sequence[str],
    *,
    endpoint: str,
    key_of: Callable[[Mapping[str, Any]], str | None] | None = None,
    trace_of_id: Mapping[str, str] | None = None,
) -> BatchWriteResponse:
    """One outcome per trace id from a batch answer (200, 201 or 207).

    Results are matched by ``objectWriteTraceId``, else by ``key_of(result)`` (the id
    property's value of an upsert, the id of an update), else by position when HubSpot
    returned exactly one result per input and no errors. Errors are matched by
    ``context.objectWriteTraceId``, else ``context.ids`` through ``trace_of_id`` (record
    id -> trace id, for calls by record id); an input left without either
    fails with the first unmatched error, or a ``TransientError``.
    """
    body = _json(response)
    wanted = set(trace_ids)
    outcomes: dict[str, InputOutcome] = {}
    unkeyed: list[Mapping[str, Any]] = []
    results = [r for r in body.get("results") or [] if isinstance(r, Mapping)]
    for result in results:
        object_id = _strings(result.get("id"))
        if not object_id:
            continue
        trace = result.get("objectWriteTraceId")
        if not isinstance(trace, str) and key_of is not None:
            trace = key_of(result)
        if isinstance(trace, str) and trace in wanted:
            new = result.get("new")
            outcomes.setdefault(
                trace,
                InputOutcome(object_id=object_id[0], new=new if isinstance(new, bool) else None),
            )
        else:
            unkeyed.append(result)
    errors = [e for e in body.get("errors") or [] if isinstance(e, Mapping)]
    if not errors and not outcomes and len(unkeyed) == len(trace_ids):
        for trace, result in zip(trace_ids, unkeyed, strict=True):
            new = result.get("new")
            outcomes[trace] = InputOutcome(
                object_id=_strings(result.get("id"))[0], new=new if isinstance(new, bool) else None
            )
    unmatched: list[ConnectorError] = []
    for entry in errors:
        error = input_error(entry, status_code=response.status_code, endpoint=endpoint)
        context = entry.get("context")
        context = context if isinstance(context, Mapping) else {}
        traces = [t for t in _strings(context.get("objectWriteTraceId")) if t in wanted]
        if not traces and trace_of_id is not None:
            traces = [trace_of_id[i] for i in _strings(context.get("ids")) if i in trace_of_id]
        for trace in traces:
            outcomes.setdefault(trace, InputOutcome(error=error))
        if not traces:
            unmatched.append(error)
    fallback = (
        unmatched[0]
        if unmatched
        else TransientError(
            "HubSpot returned no result for the input",
            partner=_PARTNER,
            endpoint=endpoint,
            status_code=response.status_code,
        )
    )
    for trace in trace_ids:
        outcomes.setdefault(trace, InputOutcome(error=fallback))
    return BatchWriteResponse(status_code=response.status_code, outcomes=outcomes)


# -- the client ---------------------------------------------------------------------------------


class HubSpotClient:
    """The HubSpot calls the sink makes for one connection.

    Owns neither the ``httpx.AsyncClient`` nor any retry beyond the single retry after a
    401: each call is one attempt whose failure is raised as a connector error, or as
    :class:`RequestDeferred` when it was not sent at all.
    """

    def __init__(
        self,
        *,
        http_client: httpx.AsyncClient,
        api_root: str,
        tokens: TokenSource,
        limiter: HubSpotRateLimiter,
        clock: Clock,
        logger: logging.Logger,
        max_wait: float,
        max_search_wait: float | None = None,
        log_fields: Mapping[str, Any] | None = None,
    ) -> None:
        self._http = http_client
        self._root = api_root.rstrip("/")
        self._tokens = tokens
        self._limiter = limiter
        self._clock = clock
        self._logger = logger
        self._max_waits: dict[Scope, float] = {
            "burst": max_wait,
            "search": max_wait if max_search_wait is None else max_search_wait,
        }
        self._log_fields = dict(log_fields or {})

    @property
    def limiter(self) -> HubSpotRateLimiter:
        return self._limiter

    def quota_error(self) -> QuotaExhaustedError | None:
        """The error to report while the daily quota is known to be spent."""
        reset_in = self._limiter.quota_reset_in()
        if reset_in is None:
            return None
        return QuotaExhaustedError(
            "HubSpot daily request limit reached", retry_after=reset_in, partner=_PARTNER
        )

    async def _slot(self, scope: Scope, endpoint: str) -> float:
        """Take a ``scope`` slot, sleeping while the wait fits; return when it was taken."""
        taken_at = 0.0

        def take() -> float:
            nonlocal taken_at
            taken_at = self._clock.monotonic()
            return self._limiter.reserve(scope, now=taken_at)

        def too_long(wait: float) -> RequestDeferred:
            return RequestDeferred(
                BackpressureError(
                    f"{scope} rate limit wait too long",
                    retry_after=wait,
                    partner=_PARTNER,
                    endpoint=endpoint,
                )
            )

        await take_or_defer(
            take, max_wait=self._max_waits[scope], sleep=self._clock.sleep, deferred=too_long
        )
        return taken_at

    async def _post(
        self, path: str, body: Mapping[str, Any] | bytes, *, scope: Scope
    ) -> httpx.Response:
        """POST ``body`` (JSON, or bytes already encoded); return a 2xx response or raise
        (see the module docstring)."""
        url = f"{self._root}{path}"
        endpoint = endpoint_label(url)
        quota = self.quota_error()
        if quota is not None:
            raise quota
        trace = trace_headers(
            partner=_PARTNER, endpoint=endpoint, logger=self._logger, log_fields=self._log_fields
        )
        retried = False
        while True:
            taken_at = await self._slot(scope, endpoint)
            # The token is taken after the rate-limit wait (up to 10 s), so a short-lived
            # access token cannot expire between the two.
            try:
                used = await self._tokens.headers()
            except BaseException:
                self._limiter.settle(scope, taken_at)
                raise
            headers = {**used, **trace}
            try:
                with translate_http_errors(partner=_PARTNER, endpoint=endpoint):
                    if isinstance(body, bytes):
                        headers["content-type"] = "application/json"
                        response = await self._http.post(url, content=body, headers=headers)
                    else:
                        response = await self._http.post(url, json=body, headers=headers)
            finally:
                self._limiter.settle(scope, taken_at)
            if scope == "burst":
                self._limiter.observe(response.headers)
            if response.status_code != 401 or retried:
                break
            retried = True
            if not await self._tokens.renew_after_rejection(used):
                break
        self._raise_for(response, scope=scope, endpoint=endpoint)
        return response

    def _raise_for(self, response: httpx.Response, *, scope: Scope, endpoint: str) -> None:
        status = response.status_code
        if status == 429:
            body = _json(response)
            policy = body.get("policyName")
            policy_name = policy if isinstance(policy, str) else "unknown"
            # A daily quota may reset hours away; any other 429 waits at most an hour.
            retry_after = parse_retry_after(
                response.headers.get("retry-after"),
                now=self._clock.time,
                max_seconds=MAX_QUOTA_RESET_SECONDS,
            )
            context = _ErrorContext(partner=_PARTNER, endpoint=endpoint, status_code=status)
            if policy_name == "DAILY":
                wait = self._limiter.exhaust_daily(retry_after)
                self._logger.warning(
                    "hubspot.quota.exhausted", extra={**self._log_fields, "retry_after": wait}
                )
                raise QuotaExhaustedError(
                    "HubSpot daily request limit reached", retry_after=wait, **context
                )
            if retry_after is not None:
                retry_after = min(retry_after, MAX_RETRY_AFTER_SECONDS)
            wait = self._limiter.throttled(scope, retry_after)
            self._logger.warning(
                "hubspot.rate_limited",
                extra={**self._log_fields, "policy": policy_name, "retry_after": wait},
            )
            raise BackpressureError(f"rate limited ({policy_name})", retry_after=wait, **context)
        if status == 401:
            raise AuthenticationError(
                "HubSpot rejected the token", partner=_PARTNER, endpoint=endpoint, status_code=401
            )
        raise_for_response(response, partner=_PARTNER, endpoint=endpoint, clock=self._clock.time)

    # -- calls ------------------------------------------------------------------------------

    async def upsert(
        self,
        object_type: ObjectType,
        inputs: Sequence[tuple[str, str, Mapping[str, str]]],
        *,
        id_property: str,
    ) -> BatchWriteResponse:
        """Batch upsert ``(trace id, id value, properties)`` on the unique ``id_property``."""
        path = f"/crm/v3/objects/{object_type}/batch/upsert"
        response = await self._post(
            path, batch_upsert_body(inputs, id_property=id_property), scope="burst"
        )
        by_value = {id_value: trace for trace, id_value, _ in inputs}

        def key_of(result: Mapping[str, Any]) -> str | None:
            props = result.get("properties")
            value = props.get(id_property) if isinstance(props, Mapping) else None
            return by_value.get(value) if isinstance(value, str) else None

        return parse_batch_write(
            response,
            [trace for trace, _, _ in inputs],
            endpoint=endpoint_label(f"{self._root}{path}"),
            key_of=key_of,
        )

    async def update(
        self, object_type: ObjectType, inputs: Sequence[tuple[str, str, Mapping[str, str]]]
    ) -> BatchWriteResponse:
        """Batch update ``(trace id, object id, properties)`` by record id."""
        path = f"/crm/v3/objects/{object_type}/batch/update"
        response = await self._post(path, batch_update_body(inputs), scope="burst")
        by_id = {object_id: trace for trace, object_id, _ in inputs}

        def key_of(result: Mapping[str, Any]) -> str | None:
            ids = _strings(result.get("id"))
            return by_id.get(ids[0]) if ids else None

        return parse_batch_write(
            response,
            [trace for trace, _, _ in inputs],
            endpoint=endpoint_label(f"{self._root}{path}"),
            key_of=key_of,
            trace_of_id=by_id,
        )

    async def create_notes(
        self, inputs: Sequence[tuple[str, Mapping[str, str], str, Sequence[str]]]
    ) -> BatchWriteResponse:
        """Batch create notes associated to their company (and contacts)."""
        path = "/crm/v3/objects/notes/batch/create"
        response = await self._post(path, notes_create_body(inputs), scope="burst")
        return parse_batch_write(
            response,
            [trace for trace, _, _, _ in inputs],
            endpoint=endpoint_label(f"{self._root}{path}"),
        )

    async def archive(self, object_type: ObjectType, object_ids: Sequence[str]) -> int:
        """Batch archive by record id; HubSpot answers 204 (unknown ids included)."""
        path = f"/crm/v3/objects/{object_type}/batch/archive"
        response = await self._post(path, archive_body(object_ids), scope="burst")
        return response.status_code

    async def associate_default(
        self, from_type: ObjectType, to_type: ObjectType, pairs: Sequence[tuple[str, str]]
    ) -> AssociationResponse:
        """v4 default (unlabelled) associations ``from -> to`` in one batch."""
        path = f"/crm/v4/associations/{from_type}/{to_type}/batch/associate/default"
        response = await self._post(path, associate_default_body(pairs), scope="burst")
        return _parse_associations(response, pairs, endpoint=endpoint_label(f"{self._root}{path}"))

    async def search(self, object_type: ObjectType, body: Mapping[str, Any]) -> SearchResult:
        """Every object ``body`` (a packed search) matches, following ``paging.next.after``.

        Raises ``ValueError`` for a body over HubSpot's 3,000 characters (a packing bug:
        nothing is sent), and connector errors like every call.
        """
        path = f"/crm/v3/objects/{object_type}/search"
        found: list[Mapping[str, Any]] = []
        after: str | None = None
        requests = 0
        while True:
            encoded = encode_json(body if after is None else {**body, "after": after})
            if len(encoded) > MAX_SEARCH_BODY_CHARS:
                msg = f"search body of {len(encoded)} bytes exceeds {MAX_SEARCH_BODY_CHARS}"
                raise ValueError(msg)
            answer = _json(await self._post(path, encoded, scope="search"))
            requests += 1
            found += [r for r in answer.get("results") or [] if isinstance(r, Mapping)]
            paging = answer.get("paging")
            following = paging.get("next") if isinstance(paging, Mapping) else None
            cursor = following.get("after") if isinstance(following, Mapping) else None
            if not isinstance(cursor, str | int) or isinstance(cursor, bool):
                return SearchResult(tuple(found), requests)
            if len(found) >= _SEARCH_MAX_RESULTS:
                self._logger.warning(
                    "hubspot.search.truncated", extra={**self._log_fields, "results": len(found)}
                )
                return SearchResult(tuple(found), requests, truncated=True)
            after = str(cursor)


def _parse_associations(
    response: httpx.Response, pairs: Sequence[tuple[str, str]], *, endpoint: str
) -> AssociationResponse:
    body = _json(response)
    succeeded: set[str] = set()
    for result in body.get("results") or []:
        if isinstance(result, Mapping):
            succeeded.update(_strings(result.get("fromObjectId")))
            source = result.get("from")
            if isinstance(source, Mapping):
                succeeded.update(_strings(source.get("id")))
    failed: dict[str, ConnectorError] = {}
    unmatched: list[ConnectorError] = []
    from_ids = {a for a, _ in pairs}
    for entry in body.get("errors") or []:
        if not isinstance(entry, Mapping):
            continue
        error = input_error(entry, status_code=response.status_code, endpoint=endpoint)
        context = entry.get("context")
        mentioned = set(_values(context.values() if isinstance(context, Mapping) else ()))
        hits = (from_ids & mentioned) - succeeded
        for from_id in hits:
            failed.setdefault(from_id, error)
        if not hits:
            unmatched.append(error)
    for from_id in from_ids - succeeded - failed.keys():
        if unmatched:
            failed[from_id] = unmatched[0]
        elif response.status_code == 207:
            failed[from_id] = TransientError(
                "HubSpot returned no result for the association",
                partner=_PARTNER,
                endpoint=endpoint,
                status_code=response.status_code,
            )
    return AssociationResponse(status_code=response.status_code, failed=failed)


def _values(items: Iterable[object]) -> list[str]:
    found: list[str] = []
    for item in items:
        found += _strings(item)
    return found


# -- shared searches ----------------------------------------------------------------------------

LookupKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class SearchAnswer:
    """What became of some of a caller's lookups (``keys``: property and value): the objects
    of the search that carried them, or the error that search raised."""

    keys: frozenset[LookupKey]
    result: SearchResult | Exception


def _request_scoped(error: Exception) -> bool:
    """A failed search that concerns only its own values (a 400), not the connection."""
    return isinstance(error, PermanentError) and not isinstance(error, AuthenticationError)


@dataclass(slots=True)
class _Waiting:
    lookups: list[Lookup]
    outstanding: set[LookupKey]
    future: asyncio.Future[list[SearchAnswer]]
    records: Sequence[Correlated]
    answers: list[SearchAnswer] = field(default_factory=list)

    def answer(self, keys: set[LookupKey], result: SearchResult | Exception) -> None:
        self.outstanding -= keys
        self.answers.append(SearchAnswer(frozenset(keys), result))
        if not self.outstanding and not self.future.done():
            self.future.set_result(self.answers)


class SearchBatcher:
    """The searches of one object type for one connection, shared by concurrent writes.

    :meth:`search` queues a caller's lookups and returns once each was searched (or its
    search failed). One request is in flight at a time: it carries the oldest waiting
    lookups of all callers, packed by :func:`~connectors.hubspot.search.search_requests`
    (a value several callers wait for is sent once and answers all of them), and the next
    one is packed when it returns, with whatever arrived meanwhile. A failure that concerns
    the connection (rate limits, outages, a wait too long: :class:`RequestDeferred`) answers
    every waiting lookup with it, since the next request would meet the same; a 400 answers
    only the lookups its request carried. Call :meth:`close` when the sink closes.
    """

    def __init__(
        self, client: HubSpotClient, object_type: ObjectType, *, properties: Sequence[str]
    ) -> None:
        self._client = client
        self._object_type = object_type
        self._properties = list(properties)
        self._waiting: list[_Waiting] = []
        self._task: asyncio.Task[None] | None = None

    async def search(self, lookups: Sequence[Lookup]) -> list[SearchAnswer]:
        """Search ``lookups``; one answer per request that carried some of them."""
        unique = {(v.property_name, v.value): v for v in lookups}
        if not unique:
            return []
        loop = asyncio.get_running_loop()
        waiting = _Waiting(
            list(unique.values()), set(unique), loop.create_future(), carried_records()
        )
        self._waiting.append(waiting)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._dispatch(), name="hubspot-search-batcher")
        return await waiting.future

    async def close(self) -> None:
        """Stop dispatching; callers still waiting get a ``CancelledError``."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for waiting in self._waiting:
            waiting.future.cancel()
        self._waiting.clear()

    async def _dispatch(self) -> None:
        try:
            while True:
                self._waiting = [w for w in self._waiting if not w.future.done()]
                if not self._waiting:
                    return
                wanted: dict[LookupKey, Lookup] = {}
                for waiting in self._waiting:
                    for lookup in waiting.lookups:
                        key = (lookup.property_name, lookup.value)
                        if key in waiting.outstanding:
                            wanted.setdefault(key, lookup)
                request = search_requests(wanted.values(), properties=self._properties)[0]
                carried = {(v.property_name, v.value) for v in request.lookups}
                concerned = [w for w in self._waiting if w.outstanding & carried]
                records = [r for w in concerned for r in w.records]
                result: SearchResult | Exception
                try:
                    with carrying(records):
                        result = await self._client.search(self._object_type, request.body)
                except (ConnectorError, RequestDeferred) as error:
                    result = error
                concerned = [w for w in self._waiting if w.outstanding & carried]
                if isinstance(result, Exception) and not _request_scoped(result):
                    concerned = list(self._waiting)
                    carried = set().union(*(w.outstanding for w in concerned))
                for waiting in concerned:
                    if not waiting.future.done():
                        waiting.answer(waiting.outstanding & carried, result)
        except BaseException as exc:  # a bug or a cancellation: nobody may wait forever
            for waiting in self._waiting:
                if not waiting.future.done():
                    if isinstance(exc, asyncio.CancelledError):
                        waiting.future.cancel()
                    else:
                        waiting.future.set_exception(exc)
            raise

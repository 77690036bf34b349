"""The HTTP side of the Pipedrive connector: one request per call, paced and accounted.

Endpoints (Pipedrive API v2; notes only exist in v1), with their token cost:

- :meth:`PipedriveClient.create`: ``POST /api/v2/{organizations|persons}`` (5)
- :meth:`PipedriveClient.update`: ``PATCH /api/v2/{organizations|persons}/{id}`` (5)
- :meth:`PipedriveClient.get`: ``GET /api/v2/{organizations|persons}/{id}`` (1)
- :meth:`PipedriveClient.delete`: ``DELETE /api/v2/{organizations|persons}/{id}`` (3)
- :meth:`PipedriveClient.search`: ``GET /api/v2/{organizations|persons}/search`` (20)
- :meth:`PipedriveClient.list_page`: ``GET /api/v2/{organizations|persons}`` (10), one page
  of up to 500 objects (cursor paging, ``updated_since``)
- :meth:`PipedriveClient.add_note`: ``POST /v1/notes`` (10)

Pacing and budgets (Pipedrive's rate-limiting guide):

- every request takes a token from the burst bucket (per API token, 2-second window,
  sized by plan) corrected by ``x-ratelimit-limit/-remaining/-reset``; searches also take
  one from their own bucket (10 per 2 s on every plan), corrected by the search responses'
  headers. A wait longer than ``max_wait`` seconds is a ``BackpressureError``;
- the daily token budget is tracked locally (:class:`DailyBudget`) from each response's
  ``x-token-cost`` (and ``x-daily-requests-left`` for writes when present). No request is
  sent once it is spent: ``QuotaExhaustedError(retry_after=<seconds to midnight UTC>)``.

429 answers: Pipedrive documents no body for them and no header for the daily budget, so:

- the local budget is spent (or, for a write, ``x-daily-requests-left`` said 0):
  ``QuotaExhaustedError``;
- a 429 whose ``x-ratelimit-remaining`` is above 0 cannot be a rate window's refusal, so
  it is taken as the company's daily budget spent by someone else (the budget is shared by
  every integration of the account): nothing is sent until the next midnight UTC or for an
  hour (:data:`REFUSAL_PROBE_SECONDS`), whichever is sooner, since Pipedrive's day ends at
  its server's unpublished midnight, and ``QuotaExhaustedError`` is raised. For a search
  this needs the headers to be the search window's (``x-ratelimit-limit`` of 10); with any
  other limit the count may be the general window's while the search limit refused, so it
  stays backpressure;
- any other 429: ``BackpressureError(retry_after=x-ratelimit-reset, else 2 s)``.

Every request carries ``X-Request-Id`` and, when the sink sends it for one record (every
request of a write does), that record's ``X-Correlation-Id`` (:mod:`connectors.base.tracing`);
index pages carry no record. A wait is slept or deferred by
:func:`~connectors.base.ratelimit.take_or_defer`.

A 401 is retried once after the token source's ``renew_after_rejection``; everything else
goes through ``raise_for_response``, except 404 on ``get``/``update``/``delete``,
which returns ``None``/``False`` (the object is gone: the caller decides).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import httpx

from connectors.base.attempts import seconds_until_midnight_utc
from connectors.base.context import Clock
from connectors.base.errors import (
    MAX_RETRY_AFTER_SECONDS,
    BackpressureError,
    PermanentError,
    QuotaExhaustedError,
    TransientError,
)
from connectors.base.http import (
    endpoint_label,
    header_number,
    raise_for_response,
    translate_http_errors,
)
from connectors.base.oauth import TokenSource
from connectors.base.ratelimit import TokenBucket, take_or_defer
from connectors.base.tracing import trace_headers
from connectors.pipedrive.config import PARTNER

__all__ = [
    "BURST_RETRY_SECONDS",
    "COSTS",
    "MAX_LIST_LIMIT",
    "SEARCH_LIMIT_PER_WINDOW",
    "DailyBudget",
    "PipedriveClient",
    "PipedriveObject",
    "PipedriveResponse",
]

_DAY_SECONDS: Final[int] = 86_400
REFUSAL_PROBE_SECONDS: Final[float] = 3_600.0
"""After Pipedrive itself refuses for the day's budget, try again at most this much later.

Pipedrive resets the budget at midnight in its server's time zone, which it does not
publish; waiting for midnight UTC could park a refused connection for most of a day after
Pipedrive's own reset. One probe request an hour costs nothing when refused."""
_MIN_SLEEP_SECONDS: Final[float] = 0.001
SEARCH_LIMIT_PER_WINDOW: Final[int] = 10
"""Pipedrive's search limit per 2-second window, on every plan."""
BURST_RETRY_SECONDS: Final[float] = 2.0
"""Backoff for a 429 without ``x-ratelimit-reset``: one burst window."""
MAX_LIST_LIMIT: Final[int] = 500
"""The most objects a v2 list page may hold (``limit``)."""

COSTS: Final[Mapping[str, int]] = {
    "create": 5,
    "update": 5,
    "get": 1,
    "delete": 3,
    "search": 20,
    "list": 10,
    "note": 10,
}
"""Token cost of each call (Pipedrive's ``x-token-cost``), used when a response lacks it."""


class PipedriveObject(StrEnum):
    """The v2 collections the connector writes."""

    ORGANIZATION = "organizations"
    PERSON = "persons"


class DailyBudget:
    """Pipedrive API tokens spent today (UTC) against the connection's daily budget.

    Local bookkeeping: Pipedrive reports the cost of each request but not what is left.
    The day rolls over at midnight UTC (``clock`` is wall-clock Unix seconds). A refusal by
    Pipedrive (:meth:`exhaust`) holds until the next midnight UTC or for
    :data:`REFUSAL_PROBE_SECONDS`, whichever comes first (Pipedrive's day is its server's).
    """

    def __init__(self, budget: int, *, clock: Callable[[], float]) -> None:
        if budget <= 0:
            msg = "budget must be positive"
            raise ValueError(msg)
        self.budget = budget
        self._clock = clock
        self._day = self._today()
        self._spent = 0.0
        self._writes_left: int | None = None
        self._refused_until: float | None = None

    def _today(self) -> int:
        return math.floor(self._clock()) // _DAY_SECONDS

    def _roll(self) -> None:
        today = self._today()
        if today != self._day:
            self._day = today
            self._spent = 0.0
            self._writes_left = None

    @property
    def spent(self) -> float:
        """Tokens spent today."""
        self._roll()
        return self._spent

    @property
    def remaining(self) -> float:
        """Tokens left today (never below 0)."""
        self._roll()
        return max(0.0, self.budget - self._spent)

    @property
    def writes_left(self) -> int | None:
        """The last ``x-daily-requests-left`` seen today, if any."""
        self._roll()
        return self._writes_left

    def _refused(self) -> bool:
        if self._refused_until is not None and self._clock() >= self._refused_until:
            self._refused_until = None
        return self._refused_until is not None

    def exhausted(self, *, write: bool = False) -> bool:
        """Whether nothing is left today (for a write: also no write requests left)."""
        if self._refused() or self.remaining <= 0:
            return True
        return write and self.writes_left is not None and self.writes_left <= 0

    def affords(self, cost: float, *, write: bool = False) -> bool:
        """Whether a request of ``cost`` tokens fits in what is left today."""
        return not self.exhausted(write=write) and self.remaining >= cost

    def charge(self, cost: float) -> None:
        """Account for a response's ``x-token-cost``."""
        self._roll()
        self._spent += max(0.0, cost)

    def observe_writes_left(self, left: int) -> None:
        """Account for a response's ``x-daily-requests-left``."""
        self._roll()
        self._writes_left = left

    def exhaust(self) -> None:
        """Pipedrive refused a request for the day's budget: send nothing until the reset.

        The reset is Pipedrive's own, at an unknown hour: the refusal holds until the next
        midnight UTC or :data:`REFUSAL_PROBE_SECONDS`, whichever comes first; then requests
        go out again, and a new refusal starts a new hold.
        """
        now = self._clock()
        self._refused_until = now + min(seconds_until_midnight_utc(now), REFUSAL_PROBE_SECONDS)

    def seconds_until_reset(self) -> float:
        """Seconds until requests may go out again: the end of a refusal's hold, else the
        next midnight UTC."""
        now = self._clock()
        if self._refused() and self._refused_until is not None:
            return self._refused_until - now
        return seconds_until_midnight_utc(now)


@dataclass(frozen=True, slots=True)
class PipedriveResponse:
    """A successful answer: its status and its ``data`` member.

    ``next_cursor`` is ``additional_data.next_cursor`` of a list page (``None`` on the
    last page and for every other call).
    """

    status_code: int
    data: Any
    next_cursor: str | None = None


_MAX_HEADER_COUNT: Final[float] = 1e9
"""Counts and costs in Pipedrive's headers above this are read as this."""


class PipedriveClient:
    """Calls Pipedrive for one connection.

    Owns no ``httpx.AsyncClient`` (the sink builds and closes it) and does not retry,
    apart from the single retry after a 401 with a refreshed token: each call's failure is
    raised as a connector error. ``base_url`` is asked per request, because an OAuth
    refresh may move the account to another ``api_domain``.
    """

    def __init__(
        self,
        *,
        http_client: httpx.AsyncClient,
        auth: TokenSource,
        base_url: Callable[[], str],
        burst: TokenBucket,
        search_bucket: TokenBucket,
        budget: DailyBudget,
        clock: Clock,
        max_wait: float = BURST_RETRY_SECONDS,
        logger: logging.Logger | None = None,
        log_fields: Mapping[str, Any] | None = None,
    ) -> None:
        self._http = http_client
        self._auth = auth
        self._base_url = base_url
        self.burst = burst
        self.search_bucket = search_bucket
        self.budget = budget
        self._clock = clock
        self._max_wait = max_wait
        self._logger = logger or logging.getLogger("connectors.pipedrive")
        self._log_fields = dict(log_fields or {})

    # -- calls ----------------------------------------------------------------------------

    async def create(self, kind: PipedriveObject, body: Mapping[str, Any]) -> PipedriveResponse:
        """``POST /api/v2/{kind}``; the created object is ``data`` (with its integer ``id``)."""
        response, endpoint = await self._call(
            "POST", f"/api/v2/{kind}", cost=COSTS["create"], write=True, json=body
        )
        return self._success(response, endpoint, expect_id=True)

    async def update(
        self, kind: PipedriveObject, object_id: int, body: Mapping[str, Any]
    ) -> PipedriveResponse | None:
        """``PATCH /api/v2/{kind}/{id}``; ``None`` if the object does not exist (404)."""
        response, endpoint = await self._call(
            "PATCH", f"/api/v2/{kind}/{object_id}", cost=COSTS["update"], write=True, json=body
        )
        if response.status_code == 404:
            return None
        return self._success(response, endpoint, expect_id=True)

    async def get(
        self,
        kind: PipedriveObject,
        object_id: int,
        *,
        custom_fields: Sequence[str] = (),
    ) -> PipedriveResponse | None:
        """``GET /api/v2/{kind}/{id}``; ``None`` if the object does not exist (404).

        ``custom_fields`` limits the custom fields returned to those keys.
        """
        params = {"custom_fields": ",".join(custom_fields)} if custom_fields else None
        response, endpoint = await self._call(
            "GET", f"/api/v2/{kind}/{object_id}", cost=COSTS["get"], params=params
        )
        if response.status_code == 404:
            return None
        return self._success(response, endpoint, expect_id=True)

    async def delete(self, kind: PipedriveObject, object_id: int) -> PipedriveResponse | None:
        """``DELETE /api/v2/{kind}/{id}``; ``None`` if it was already gone (404)."""
        response, endpoint = await self._call(
            "DELETE", f"/api/v2/{kind}/{object_id}", cost=COSTS["delete"], write=True
        )
        if response.status_code == 404:
            return None
        return self._success(response, endpoint, expect_id=False)

    async def search(
        self,
        kind: PipedriveObject,
        term: str,
        *,
        fields: str,
        exact_match: bool = True,
        limit: int = 10,
    ) -> PipedriveResponse:
        """``GET /api/v2/{kind}/search?term=&fields=&exact_match=&limit=``.

        ``data`` is ``{"items": [{"result_score", "item": {...}}]}``. The term is sent as
        a query parameter (httpx encodes it) and never logged.
        """
        params = {
            "term": term,
            "fields": fields,
            "exact_match": "true" if exact_match else "false",
            "limit": str(limit),
        }
        response, endpoint = await self._call(
            "GET", f"/api/v2/{kind}/search", cost=COSTS["search"], search=True, params=params
        )
        return self._success(response, endpoint, expect_id=False)

    async def list_page(
        self,
        kind: PipedriveObject,
        *,
        limit: int = MAX_LIST_LIMIT,
        cursor: str | None = None,
        updated_since: str | None = None,
        custom_fields: Sequence[str] = (),
    ) -> PipedriveResponse:
        """``GET /api/v2/{kind}?limit=&cursor=&updated_since=&custom_fields=``: one page.

        ``data`` is the list of objects (id order), ``next_cursor`` the next page's cursor
        (``None`` on the last page). ``updated_since`` (RFC 3339) keeps objects whose
        ``update_time`` is that or later; ``custom_fields`` limits the custom fields
        returned to those keys (at most 15). Deleted objects are not listed.
        """
        if not 1 <= limit <= MAX_LIST_LIMIT:
            msg = f"limit must be between 1 and {MAX_LIST_LIMIT}"
            raise ValueError(msg)
        params = {"limit": str(limit)}
        if cursor is not None:
            params["cursor"] = cursor
        if updated_since is not None:
            params["updated_since"] = updated_since
        if custom_fields:
            params["custom_fields"] = ",".join(custom_fields)
        response, endpoint = await self._call(
            "GET", f"/api/v2/{kind}", cost=COSTS["list"], params=params
        )
        page = self._success(response, endpoint, expect_id=False)
        if not isinstance(page.data, list):
            raise TransientError(
                "pipedrive list response without a list",
                partner=PARTNER,
                endpoint=endpoint,
                status_code=page.status_code,
            )
        return page

    async def add_note(self, body: Mapping[str, Any]) -> PipedriveResponse:
        """``POST /v1/notes`` (notes are not in API v2); ``data`` is the note with its ``id``."""
        response, endpoint = await self._call(
            "POST", "/v1/notes", cost=COSTS["note"], write=True, json=body
        )
        return self._success(response, endpoint, expect_id=True)

    # -- the request path -----------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        cost: int,
        write: bool = False,
        search: bool = False,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, Any] | None = None,
    ) -> tuple[httpx.Response, str]:
        """Send one request (twice after a 401 that a refresh may cure).

        Returns the response unless it is a 401 or 429; raises for those as the module
        docstring says.
        """
        trace: dict[str, str] | None = None
        refreshed = False
        while True:
            headers = await self._auth.headers()  # may refresh, and move the api_domain
            url = f"{self._base_url()}{path}"
            endpoint = endpoint_label(url)
            await self._admit(cost, write=write, search=search, endpoint=endpoint)
            if trace is None:  # drawn once: a re-send after a 401 is the same request
                trace = trace_headers(
                    partner=PARTNER,
                    endpoint=endpoint,
                    logger=self._logger,
                    log_fields=self._log_fields,
                )
            with translate_http_errors(partner=PARTNER, endpoint=endpoint):
                response = await self._http.request(
                    method, url, params=params, json=json, headers={**headers, **trace}
                )
            self._observe(response, cost=cost, search=search)
            if response.status_code == 401 and not refreshed:
                refreshed = True
                self._logger.info(
                    "pipedrive.request.unauthorized",
                    extra={**self._log_fields, "endpoint": endpoint},
                )
                if await self._auth.renew_after_rejection(headers):
                    continue
            if response.status_code == 429:
                self._throttled(response, endpoint=endpoint, write=write, search=search)
            if response.status_code == 401:
                raise_for_response(
                    response, partner=PARTNER, endpoint=endpoint, clock=self._clock.time
                )
            return response, endpoint

    async def _admit(self, cost: int, *, write: bool, search: bool, endpoint: str) -> None:
        """Refuse when the day's budget cannot pay for the request; wait for rate limits."""
        if not self.budget.affords(cost, write=write):
            self._logger.warning(
                "pipedrive.budget.spent",
                extra={
                    **self._log_fields,
                    "endpoint": endpoint,
                    "spent": self.budget.spent,
                    "budget": self.budget.budget,
                },
            )
            raise QuotaExhaustedError(
                "daily api token budget spent",
                retry_after=self.budget.seconds_until_reset(),
                partner=PARTNER,
                endpoint=endpoint,
            )
        if search:
            await self._acquire(self.search_bucket)
        await self._acquire(self.burst)

    async def _acquire(self, bucket: TokenBucket) -> None:
        """Take a token, sleeping while the total wait stays within ``max_wait`` seconds.

        Raises ``BackpressureError(retry_after=wait)`` without sleeping when the token is
        further away. Each sleep lasts at least a millisecond, so float rounding in the
        bucket cannot turn the loop into a spin.
        """

        def too_long(wait: float) -> BackpressureError:
            return BackpressureError("rate limit wait too long", retry_after=wait, partner=PARTNER)

        await take_or_defer(
            bucket.try_acquire,
            max_wait=self._max_wait,
            sleep=self._clock.sleep,
            deferred=too_long,
            min_sleep=_MIN_SLEEP_SECONDS,
        )

    def _observe(self, response: httpx.Response, *, cost: int, search: bool) -> None:
        """Account for the response's cost and correct the buckets from its headers."""
        headers = response.headers
        reported = header_number(headers, "x-token-cost", maximum=_MAX_HEADER_COUNT)
        if reported is not None:
            self.budget.charge(reported)
        elif response.status_code != 429:
            self.budget.charge(cost)
        writes_left = header_number(headers, "x-daily-requests-left", maximum=_MAX_HEADER_COUNT)
        if writes_left is not None:
            self.budget.observe_writes_left(int(writes_left))
        limit = header_number(headers, "x-ratelimit-limit", minimum=1.0, maximum=_MAX_HEADER_COUNT)
        remaining = header_number(headers, "x-ratelimit-remaining", maximum=_MAX_HEADER_COUNT)
        reset = header_number(headers, "x-ratelimit-reset", maximum=MAX_RETRY_AFTER_SECONDS)
        bucket = self.search_bucket if search else self.burst
        bucket.observe_headers(limit=limit, remaining=remaining, reset_seconds=reset)

    def _throttled(
        self, response: httpx.Response, *, endpoint: str, write: bool, search: bool
    ) -> None:
        """Raise the outcome of a 429 (see the module docstring)."""
        remaining = header_number(
            response.headers, "x-ratelimit-remaining", maximum=_MAX_HEADER_COUNT
        )
        budget_refusal = remaining is not None and remaining > 0
        if search:
            # Only trust the count if it is the search window's own (10 per 2 s): a count of
            # the general burst window says nothing about the search limit.
            limit = header_number(
                response.headers, "x-ratelimit-limit", minimum=1.0, maximum=_MAX_HEADER_COUNT
            )
            budget_refusal = budget_refusal and limit == SEARCH_LIMIT_PER_WINDOW
        if budget_refusal:
            self.budget.exhaust()
        if budget_refusal or self.budget.exhausted(write=write):
            self._logger.warning(
                "pipedrive.budget.refused",
                extra={**self._log_fields, "endpoint": endpoint, "status_code": 429},
            )
            raise QuotaExhaustedError(
                "daily api token budget spent",
                retry_after=self.budget.seconds_until_reset(),
                partner=PARTNER,
                endpoint=endpoint,
                status_code=429,
            )
        reset = header_number(
            response.headers, "x-ratelimit-reset", maximum=MAX_RETRY_AFTER_SECONDS
        )
        retry_after = reset if reset is not None and reset > 0 else BURST_RETRY_SECONDS
        bucket = self.search_bucket if search else self.burst
        bucket.observe_headers(remaining=0, reset_seconds=retry_after)
        self._logger.info(
            "pipedrive.rate_limited",
            extra={**self._log_fields, "endpoint": endpoint, "retry_after": retry_after},
        )
        raise BackpressureError(
            "rate limited",
            retry_after=retry_after,
            partner=PARTNER,
            endpoint=endpoint,
            status_code=429,
        )

    def _success(
        self, response: httpx.Response, endpoint: str, *, expect_id: bool
    ) -> PipedriveResponse:
        """The ``data`` of a 2xx answer; raises the outcome of any other status."""
        raise_for_response(response, partner=PARTNER, endpoint=endpoint, clock=self._clock.time)
        status = response.status_code
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise TransientError(
                "unreadable pipedrive response",
                partner=PARTNER,
                endpoint=endpoint,
                status_code=status,
            )
        if document.get("success") is False:
            raise PermanentError(
                "pipedrive reported failure",
                partner=PARTNER,
                endpoint=endpoint,
                status_code=status,
            )
        data = document.get("data")
        if expect_id and not (isinstance(data, dict) and _is_id(data.get("id"))):
            raise TransientError(
                "pipedrive response without an object id",
                partner=PARTNER,
                endpoint=endpoint,
                status_code=status,
            )
        additional = document.get("additional_data")
        cursor = additional.get("next_cursor") if isinstance(additional, dict) else None
        return PipedriveResponse(
            status_code=status,
            data=data,
            next_cursor=cursor if isinstance(cursor, str) and cursor else None,
        )


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0

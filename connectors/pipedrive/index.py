"""Candidates for first links from a copy of the account kept in memory, not a search each.

Why an index
------------
An unlinked company or person needs candidates before ``identity.decide``. The search path
asks Pipedrive per entity: ``GET /api/v2/{organizations|persons}/search`` (20 tokens, and
only 10 searches per 2 s on every plan) and one ``GET /api/v2/{kind}/{id}`` per hit (1
token each). A first sync of 400 companies and 1,000 people for one account is then 1,400
searches: 28,000 tokens of lookups (a Lite seat's day is 30,000) and, at 5 searches a
second, at least 280 s. The list endpoints (``GET /api/v2/organizations``,
``GET /api/v2/persons``) return up to 500 objects for 10 tokens and are paced only by the
ordinary burst limit: the index reads an account of N objects in ceil(N / 500) requests,
plus one small change fetch per kind and ``refresh_seconds`` while lookups go on, and a
first link needs no request of its own before its write.

Measured with ``bench/pipedrive_links.py`` against the sandbox (that first
sync, a quarter of the companies and a fifth of the people already in Pipedrive; results
in ``bench/results/pipedrive_links.json``):

===============  =============================  ======================================
per first link   search path                    index
===============  =============================  ======================================
lookup           1.21 requests, 20.2 tokens     0.01-0.05 requests, 0.1-0.5 tokens
everything       2.36 requests, 25.4 tokens     1.16-1.19 requests, 5.3-5.6 tokens
the whole sync   Lite 348 s, Premium 309 s      Lite 175 s, Premium 33 s
                 (the search limit), 35,500     (the burst limit on writes), 7,350 -
                 - 35,620 tokens                7,870 tokens
===============  =============================  ======================================

What it holds
-------------
Per sink (one connection) and per kind, built on the first lookup of that kind: every
page of the list endpoint (``limit=500``, cursor paging, ``custom_fields`` = the domain
and Queast id field keys) through the connector's :class:`PipedriveClient`, so burst
pacing, the daily token budget and 429 handling apply as to every other request. An entry
keeps only what matching needs: the candidate as the search path builds it from the same
object representation (:func:`payloads.organization_candidate` / ``person_candidate``:
id, name, domain field and website, LinkedIn, emails, Queast id), the organization of a
person, ``update_time``, and its lookup keys: about 1.1 KB per organization and 0.8 KB
per person in CPython, so the default ``max_objects`` (50,000 per kind) bounds one
connection at about 95 MB.

Lookups answer what the search path would find, with the same normalisation: an
organization whose domain custom field equals the company's primary domain (the search
term ``fields=custom_fields``), else whose name equals the company's name (``fields=name``,
the candidates the fuzzy-name strategy then scores), and persons with the person's first
email (``fields=email``); all exact, trimmed and case-insensitive as Pipedrive's
``exact_match``, the first ``limit`` by id. The sink then calls ``identity.decide``
exactly as before, so ambiguity and held-for-review do not change.

Freshness, and its limit
------------------------
- Before a lookup, once ``refresh_seconds`` have passed since the last fetch of that
  kind, the changes are fetched with ``updated_since`` = start of the previous fetch minus
  ``refresh_overlap_seconds`` (RFC 3339). The overlap catches objects changed while the
  previous fetch paged and clock skew with Pipedrive up to the overlap. Objects listed with
  ``is_deleted`` are dropped; deleted objects that are simply no longer listed stay until
  the next full rebuild (``rebuild_seconds``). Such a candidate, once linked, is found gone
  by the write (404 -> ``PermanentError``, as for any linked object deleted in Pipedrive)
  and dropped from the index.
- Objects the sink creates, updates or deletes are applied at once, even while a fetch is
  paging (replayed after it; the newer ``update_time`` wins).
- The limit: an object a person creates (or edits to match) in Pipedrive less than
  ``refresh_seconds`` before a lookup is not in the index yet, so the sink may create a
  duplicate. The window is at most ``refresh_seconds`` plus the fetch's own latency (the
  search path has the same race between its search and its create, only shorter);
  ``refresh_seconds=0`` fetches changes before every lookup (10 tokens, still no search).
- The search path stays the fallback: a kind with more than ``max_objects`` objects uses
  it until the next rebuild; a build or change fetch that fails (5xx, timeouts, a 429 the
  fetch could not wait out, unreadable pages) makes the kind use it for
  ``retry_after_failure_seconds``, then the index is built again. Both are logged as
  ``pipedrive.index.disabled`` (kind, reason, counts; no personal data). A spent daily
  budget or refused credentials are the connection's outcomes, not the index's: they are
  raised as they would be by the search.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from connectors.base.attempts import ms_since
from connectors.base.context import Clock
from connectors.base.errors import (
    AuthenticationError,
    BackpressureError,
    ConnectorError,
    QuotaExhaustedError,
)
from connectors.base.identity import IdentityCandidate
from connectors.base.tracing import carrying
from connectors.pipedrive import payloads
from connectors.pipedrive.client import (
    MAX_LIST_LIMIT,
    PipedriveClient,
    PipedriveObject,
    PipedriveResponse,
)
from connectors.pipedrive.config import PipedriveCandidateIndex

__all__ = [
    "CandidateIndex",
    "IndexCounters",
    "IndexState",
    "lookup_key",
]

_PAGE_ATTEMPTS: Final[int] = 3
_MAX_PAGE_WAIT_SECONDS: Final[float] = 10.0
"""A page refused with a longer ``retry_after`` fails the fetch (the kind falls back)."""
_MIN_SLEEP_SECONDS: Final[float] = 0.001
_FIELDS: Final[Mapping[PipedriveObject, frozenset[str]]] = {
    PipedriveObject.ORGANIZATION: frozenset({"custom_fields", "name"}),
    PipedriveObject.PERSON: frozenset({"email"}),
}
"""The search ``fields`` each kind answers: the domain custom field or the name; email."""


class IndexState(StrEnum):
    """Where the index of one kind stands."""

    EMPTY = "empty"
    """Not built yet (built by the next lookup)."""
    READY = "ready"
    DISABLED = "disabled"
    """Lookups use the search path for now (too large, or a fetch failed)."""


@dataclass(slots=True)
class IndexCounters:
    """What the index did since the sink was set up (for tests, metrics and the bench)."""

    pages: int = 0
    builds: int = 0
    refreshes: int = 0
    lookups: int = 0
    fallbacks: int = 0
    """Lookups answered ``None`` (the caller searched)."""


def lookup_key(value: object) -> str | None:
    """``value`` as Pipedrive's exact match compares it: trimmed, case-insensitive."""
    if not isinstance(value, str):
        return None
    key = value.strip().casefold()
    if not key:
        return None
    return value if key == value else key  # the same string object when already a key


def _update_time(data: Mapping[str, Any]) -> float | None:
    raw = data.get("update_time")
    if not isinstance(raw, str):
        return None
    try:
        parsed = datetime.fromisoformat(raw.strip().replace(" ", "T"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _rfc3339(unix_seconds: float) -> str:
    """Unix seconds as RFC 3339 UTC, floored to the second (``update_time``'s precision)."""
    return datetime.fromtimestamp(int(unix_seconds // 1), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _object_id(data: Mapping[str, Any]) -> int | None:
    found = data.get("id")
    if isinstance(found, int) and not isinstance(found, bool) and found > 0:
        return found
    return None


@dataclass(frozen=True, slots=True)
class _Entry:
    candidate: IdentityCandidate
    keys: tuple[tuple[str, str], ...]
    """``(search field, lookup key)`` pairs."""
    updated_at: float | None
    org_id: int | None = None


_Ids = int | tuple[int, ...]
"""The ids under one lookup key: almost always one, so no container for it."""


class _Table:
    """The objects of one kind and their lookup keys."""

    def __init__(self) -> None:
        self.entries: dict[int, _Entry] = {}
        self._by_key: dict[str, dict[str, _Ids]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def put(self, object_id: int, entry: _Entry) -> None:
        """Store ``entry`` unless the stored one is newer (``update_time``)."""
        old = self.entries.get(object_id)
        if old is not None:
            if (
                old.updated_at is not None
                and entry.updated_at is not None
                and entry.updated_at < old.updated_at
            ):
                return
            self._unkey(object_id, old)
        self.entries[object_id] = entry
        for search_field, key in entry.keys:
            index = self._by_key.setdefault(search_field, {})
            found = index.get(key)
            if found is None:
                index[key] = object_id
            elif isinstance(found, int):
                index[key] = (found, object_id) if found != object_id else found
            elif object_id not in found:
                index[key] = (*found, object_id)

    def remove(self, object_id: int) -> None:
        old = self.entries.pop(object_id, None)
        if old is not None:
            self._unkey(object_id, old)

    def find(self, search_field: str, key: str, limit: int) -> list[IdentityCandidate]:
        found = self._by_key.get(search_field, {}).get(key)
        if found is None:
            return []
        ids = [found] if isinstance(found, int) else sorted(found)[:limit]
        return [self.entries[object_id].candidate for object_id in ids]

    def _unkey(self, object_id: int, entry: _Entry) -> None:
        for search_field, key in entry.keys:
            index = self._by_key.get(search_field, {})
            found = index.get(key)
            if found == object_id:
                del index[key]
            elif isinstance(found, tuple):
                rest = tuple(i for i in found if i != object_id)
                index[key] = rest[0] if len(rest) == 1 else rest


@dataclass(slots=True)
class _KindIndex:
    kind: PipedriveObject
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    table: _Table | None = None
    built_at: float = 0.0
    """Monotonic start of the last build."""
    fetched_at: float = 0.0
    """Monotonic start of the last successful fetch (build or changes)."""
    since: float = 0.0
    """Wall-clock start of the last successful fetch: the next ``updated_since``."""
    disabled_until: float | None = None
    fetching: bool = False
    pending: list[tuple[int, _Entry | None]] = field(default_factory=list)
    """The sink's own writes (``None``: deleted) during a fetch, replayed onto its result."""
    deleted: set[int] = field(default_factory=set)
    """Ids the sink deleted or saw deleted since the last build: never listed again."""


def _replay(table: _Table, pending: list[tuple[int, _Entry | None]]) -> None:
    """Apply the sink's own writes made while ``table`` was being fetched, in order."""
    for object_id, entry in pending:
        if entry is None:
            table.remove(object_id)
        else:
            table.put(object_id, entry)


class _TooLargeError(Exception):
    def __init__(self, objects: int) -> None:
        super().__init__(objects)
        self.objects = objects


class CandidateIndex:
    """Organizations and persons of one Pipedrive account, for first-link lookups.

    Owned by a ``PipedriveSink``; see the module docstring. :meth:`find` builds or
    refreshes the kind it is asked about and answers ``None`` when the caller must search
    instead; :meth:`observe` and :meth:`forget` apply the sink's own writes.
    """

    def __init__(
        self,
        client: PipedriveClient,
        *,
        settings: PipedriveCandidateIndex,
        domain_field_key: str,
        queast_id_field_key: str | None,
        clock: Clock,
        logger: logging.Logger | None = None,
        log_fields: Mapping[str, Any] | None = None,
    ) -> None:
        self._client = client
        self._settings = settings
        self._domain_key = domain_field_key
        self._queast_key = queast_id_field_key
        self._clock = clock
        self._logger = logger or logging.getLogger("connectors.pipedrive")
        self._log_fields = dict(log_fields or {})
        self._kinds = {kind: _KindIndex(kind) for kind in PipedriveObject}
        self.counters = IndexCounters()

    # -- lookups -------------------------------------------------------------------------

    async def find(
        self, kind: PipedriveObject, term: str, *, fields: str, limit: int
    ) -> list[IdentityCandidate] | None:
        """Candidates ``GET /api/v2/{kind}/search?term=&fields=&exact_match=true`` would find.

        ``fields`` is the search's: ``custom_fields`` (the domain field) or ``name`` for
        organizations, ``email`` for persons. Builds the kind's index on first use and
        fetches its changes when ``refresh_seconds`` passed. ``None``: the index cannot
        answer (disabled for now), search instead. Raises ``QuotaExhaustedError`` and
        ``AuthenticationError`` from a fetch; other fetch failures disable the kind.
        """
        return await self.find_any(kind, [(term, fields)], limit=limit)

    async def find_any(
        self, kind: PipedriveObject, lookups: Sequence[tuple[str, str]], *, limit: int
    ) -> list[IdentityCandidate] | None:
        """:meth:`find` for several ``(term, fields)`` lookups at once, one freshness check.

        The candidates of every lookup, each object once, in lookup order (the identity
        strategies weigh them; an object found by domain and by name is offered once).
        """
        for _, fields in lookups:
            if fields not in _FIELDS[kind]:
                msg = f"{kind.value} are not looked up by {fields!r}"
                raise ValueError(msg)
        self.counters.lookups += 1
        state = self._kinds[kind]
        async with state.lock:
            table = await self._fresh(state)
        if table is None:
            self.counters.fallbacks += 1
            return None
        found: dict[str, IdentityCandidate] = {}
        for term, fields in lookups:
            key = lookup_key(term)
            for candidate in [] if key is None else table.find(fields, key, limit):
                found.setdefault(candidate.partner_object_id, candidate)
        return list(found.values())

    def state(self, kind: PipedriveObject) -> IndexState:
        found = self._kinds[kind]
        if found.disabled_until is not None:
            return IndexState.DISABLED
        return IndexState.EMPTY if found.table is None else IndexState.READY

    def size(self, kind: PipedriveObject) -> int:
        """Objects of ``kind`` held now (0 while empty or disabled)."""
        table = self._kinds[kind].table
        return 0 if table is None else len(table)

    # -- the sink's own writes ---------------------------------------------------------------

    def observe(self, kind: PipedriveObject, data: object) -> None:
        """An object the sink just created or updated (the response's ``data``)."""
        if not isinstance(data, Mapping):
            return
        object_id = _object_id(data)
        entry = self._entry(kind, data)
        if object_id is None or entry is None:
            return
        state = self._kinds[kind]
        state.deleted.discard(object_id)
        if state.table is not None:
            state.table.put(object_id, entry)
        if state.fetching:
            state.pending.append((object_id, entry))

    def forget(self, kind: PipedriveObject, object_id: int) -> None:
        """An object the sink deleted, or found gone (404)."""
        state = self._kinds[kind]
        state.deleted.add(object_id)
        if state.table is not None:
            state.table.remove(object_id)
        if state.fetching:
            state.pending.append((object_id, None))

    # -- building and refreshing -------------------------------------------------------------

    async def _fresh(self, state: _KindIndex) -> _Table | None:
        """The kind's table, built or refreshed as the settings say; ``None``: disabled."""
        now = self._clock.monotonic()
        if state.disabled_until is not None:
            if now < state.disabled_until:
                return None
            state.disabled_until = None
            state.table = None
        if state.table is None or now - state.built_at >= self._settings.rebuild_seconds:
            return await self._build(state)
        if now - state.fetched_at >= self._settings.refresh_seconds:
            return await self._refresh(state)
        return state.table

    async def _build(self, state: _KindIndex) -> _Table | None:
        table = _Table()
        state.deleted.clear()
        pages = await self._fill(state, table, updated_since=None, failure="build_failed")
        if pages is None:
            return None
        state.table = table
        state.built_at = state.fetched_at
        self.counters.builds += 1
        duration_ms = ms_since(state.fetched_at, self._clock)
        self._filled(logging.INFO, "built", state, table, pages, duration_ms=duration_ms)
        return table

    async def _refresh(self, state: _KindIndex) -> _Table | None:
        table = state.table
        if table is None:  # pragma: no cover - _fresh builds first
            return None
        since = _rfc3339(state.since - self._settings.refresh_overlap_seconds)
        before = len(table)
        pages = await self._fill(state, table, updated_since=since, failure="refresh_failed")
        if pages is None:
            return None
        self.counters.refreshes += 1
        self._filled(logging.DEBUG, "refreshed", state, table, pages, added=len(table) - before)
        return table

    def _filled(
        self, level: int, what: str, state: _KindIndex, table: _Table, pages: int, **extra: float
    ) -> None:
        fields: dict[str, object] = {
            "kind": state.kind.value,
            "objects": len(table),
            "pages": pages,
        }
        fields.update(extra)
        self._logger.log(level, f"pipedrive.index.{what}", extra={**self._log_fields, **fields})

    async def _fill(
        self, state: _KindIndex, table: _Table, *, updated_since: str | None, failure: str
    ) -> int | None:
        """Fetch into ``table``, then replay the writes made meanwhile; the pages read, or
        ``None`` when the kind's index was disabled (too large, or ``failure``).

        A page read before one of our writes must not undo it, hence the replay. A spent
        quota or rejected credentials are the connection's outcome (the search would meet
        them too): they are raised. On success the kind counts as fetched when this began.
        """
        started, started_wall = self._clock.monotonic(), self._clock.time()
        state.pending.clear()
        state.fetching = True
        try:
            with carrying(()):  # shared by every record: it carries none of them
                pages = await self._fetch(state, table, updated_since=updated_since)
        except _TooLargeError as exc:
            self._disable(state, "too_large", objects=exc.objects)
            return None
        except (QuotaExhaustedError, AuthenticationError):
            raise
        except ConnectorError as exc:
            self._disable(state, failure, error=exc)
            return None
        finally:
            state.fetching = False
            pending, state.pending = state.pending, []
        _replay(table, pending)
        state.fetched_at = started
        state.since = started_wall
        return pages

    async def _fetch(self, state: _KindIndex, table: _Table, *, updated_since: str | None) -> int:
        """Page through the list endpoint into ``table``; returns the pages read."""
        custom_fields = [
            key
            for key in (
                self._domain_key if state.kind is PipedriveObject.ORGANIZATION else None,
                self._queast_key,
            )
            if key
        ]
        cursor: str | None = None
        pages = 0
        while True:
            page = await self._page(state.kind, cursor, updated_since, custom_fields)
            pages += 1
            for data in page.data:
                if isinstance(data, Mapping):
                    self._apply(state, table, data)
            if len(table) > self._settings.max_objects:
                raise _TooLargeError(len(table))
            cursor = page.next_cursor
            if cursor is None:
                return pages

    async def _page(
        self,
        kind: PipedriveObject,
        cursor: str | None,
        updated_since: str | None,
        custom_fields: list[str],
    ) -> PipedriveResponse:
        """One page; a short rate-limit refusal is waited out (twice at most)."""
        attempt = 1
        while True:
            try:
                page = await self._client.list_page(
                    kind,
                    limit=MAX_LIST_LIMIT,
                    cursor=cursor,
                    updated_since=updated_since,
                    custom_fields=custom_fields,
                )
            except BackpressureError as exc:
                if attempt >= _PAGE_ATTEMPTS or exc.retry_after > _MAX_PAGE_WAIT_SECONDS:
                    raise
                attempt += 1
                await self._clock.sleep(max(exc.retry_after, _MIN_SLEEP_SECONDS))
                continue
            self.counters.pages += 1
            return page

    def _apply(self, state: _KindIndex, table: _Table, data: Mapping[str, Any]) -> None:
        object_id = _object_id(data)
        if object_id is None:
            return
        if data.get("is_deleted") is True:
            state.deleted.add(object_id)
            table.remove(object_id)
            return
        if object_id in state.deleted:
            return
        entry = self._entry(state.kind, data)
        if entry is not None:
            table.put(object_id, entry)

    def _entry(self, kind: PipedriveObject, data: Mapping[str, Any]) -> _Entry | None:
        keys: list[tuple[str, str]] = []
        if kind is PipedriveObject.ORGANIZATION:
            candidate = payloads.organization_candidate(
                data, domain_field_key=self._domain_key, queast_id_field_key=self._queast_key
            )
            custom = data.get("custom_fields")
            domain = (
                lookup_key(custom.get(self._domain_key)) if isinstance(custom, Mapping) else None
            )
            if domain is not None:
                keys.append(("custom_fields", domain))
            name = lookup_key(data.get("name"))
            if name is not None:
                keys.append(("name", name))
            org_id = None
        else:
            candidate = payloads.person_candidate(data, queast_id_field_key=self._queast_key)
            if candidate is not None:
                emails = {lookup_key(email) for email in candidate.emails}
                keys += [("email", email) for email in sorted(e for e in emails if e)]
            raw_org = data.get("org_id")
            org_id = raw_org if isinstance(raw_org, int) and not isinstance(raw_org, bool) else None
        if candidate is None:
            return None
        return _Entry(candidate, tuple(keys), _update_time(data), org_id)

    def _disable(
        self,
        state: _KindIndex,
        reason: str,
        *,
        objects: int | None = None,
        error: ConnectorError | None = None,
    ) -> None:
        """Fall back to the search path for the kind, and say so."""
        too_large = reason == "too_large"
        retry_in = (
            self._settings.rebuild_seconds
            if too_large
            else self._settings.retry_after_failure_seconds
        )
        state.table = None
        state.pending.clear()
        state.disabled_until = self._clock.monotonic() + retry_in
        fields: dict[str, Any] = {
            **self._log_fields,
            "kind": state.kind.value,
            "reason": reason,
            "retry_in_seconds": retry_in,
        }
        if objects is not None:
            fields.update(objects=objects, max_objects=self._settings.max_objects)
        if error is not None:
            error_fields = error.log_fields()
            error_fields["error_reason"] = error_fields.pop("reason", None)
            fields.update(error_fields)
        self._logger.warning("pipedrive.index.disabled", extra=fields)

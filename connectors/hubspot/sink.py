"""``HubSpotSink``: contract records to HubSpot companies, contacts, associations and notes.

One :meth:`HubSpotSink.write` (at most 100 records of one connection) runs these steps in
order, so that what a later step needs was written by an earlier one:

1. **companies**, 2. **people**: for each entity, ``identity.linked``; linked entities are
   updated by record id (setting the Queast id property too). The others are looked up
   (below) and ``identity.decide`` picks: ``linked`` -> update that object by id;
   ``no_match`` -> batch upsert on the Queast id property (idempotent: a retried create
   finds its own object) then ``identity.link(..., strategy="created")``; ``ambiguous`` ->
   ``HeldForReviewError``, nothing written;
3. **associations** (v4 default contact -> company, batched): each written person whose
   company is linked is associated to it. A written person whose company is not linked
   calls ``identity.wait_for_company``: if the company got linked meanwhile it is
   associated too, else the person is delivered without one and waits. Each written
   company asks ``identity.people_waiting`` (at most 8 identity calls at a time, as for
   link reads) and its waiting contacts are associated to it. Each pair is sent once, in
   requests of at most 100 inputs; only after a request wrote them does
   ``identity.associated`` clear the waits (a failure leaves them for the retry). A failed
   request fails the people and companies it carried; a failed input fails the person
   written with it and, unless the error is permanent (say the contact is gone: the
   company's record is not held for it, the wait stays), the company it was waiting for;
4. **deletions**: the linked objects are archived; an unlinked deletion is a delivered
   no-op (reported as 204, no request);
5. **notes** for signals and job ads, associated to the company (and linked contacts). A
   note whose company is not linked yet fails with a ``TransientError``: it retries after
   the company's own export lands.

Several records of one entity in a batch are written once, with the highest
``entity_version`` (the last on a tie), and share its outcome.

First-link lookups (all unlinked entities of a write at once, in the connection's strategy
order; the resolver may tell it through a ``strategies(kind)`` method, else the identity
layer's defaults apply):

- one pass for the exact strategies (``partner_id``: the Queast id property; ``domain``;
  ``email``; ``linkedin_url``): every entity's values in ``IN`` filters, packed into as few
  search bodies as fit 3,000 characters (:func:`~connectors.hubspot.payloads.search_requests`),
  each followed to its last page. The connection's writes share requests
  (:class:`~connectors.hubspot.client.SearchBatcher`): lookups of writes running at the same
  time (the service's lanes) travel together;
- then ``company_name`` (exact names, ``IN`` too) only for the companies that no strategy
  ordered before it found a candidate for; and, after ``identity.decide``, for those whose
  candidates all turned out unusable (``no_match``) and had no name lookup yet, followed
  by a second ``decide`` (``no_match`` writes nothing, so deciding again is safe);
- results are matched back to entities on normalised keys; each entity is offered the
  candidates that match it on a strategy it was looked up by, as before.

Failures: a 207's per-input errors fail those records alone. A failed request fails the
records it carried; when the failure concerns the connection (429, daily quota, 401, 5xx,
timeouts) the remaining steps are skipped and their records fail with the same error,
``attempted=False`` (except quota and authentication failures, which the service must
see as attempted to park the connection). A rate-limit wait longer than
:attr:`HubSpotSink.max_rate_limit_wait` defers records without sending anything
(``BackpressureError``, not attempted). Contract violations are ``PermanentError``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Final, Protocol, TypeVar, runtime_checkable

import httpx

from connectors.base.context import SinkContext
from connectors.base.errors import (
    AuthenticationError,
    BackpressureError,
    ConnectorError,
    HeldForReviewError,
    PermanentError,
    QuotaExhaustedError,
    TransientError,
)
from connectors.base.identity import (
    EntityKind,
    IdentityCandidate,
    IdentityOutcome,
    IdentityResolver,
)
from connectors.base.ratelimit import RateLimit
from connectors.base.sink import (
    BatchingSink,
    BatchOutcome,
    DeliveryResult,
    OutboundRecord,
    RecordFailure,
)
from connectors.base.tracing import carrying
from connectors.hubspot.auth import GrantReloadHook, TokenRefreshedHook, token_source_for
from connectors.hubspot.client import (
    BatchWriteResponse,
    HubSpotClient,
    HubSpotRateLimiter,
    ObjectType,
    RequestDeferred,
    SearchBatcher,
    SearchResult,
)
from connectors.hubspot.config import HubSpotConnectionConfig, limits_for
from connectors.hubspot.payloads import (
    DEFAULT_STRATEGIES,
    CompanyWrite,
    Deletion,
    Export,
    LookupStrategy,
    MatchKey,
    NoteWrite,
    PayloadError,
    PersonWrite,
    applicable_strategies,
    candidate_from_object,
    candidate_keys,
    entity_keys,
    export_for,
    lookups,
    search_properties,
)

__all__ = ["HubSpotSink"]

_PARTNER: Final[str] = "hubspot"
_IDENTITY_LOOKUPS_AT_ONCE: Final[int] = 8
_NO_REQUEST_STATUS: Final[int] = 204
_ASSOCIATIONS_PER_REQUEST: Final[int] = 100
_OBJECT_TYPES: Final[Mapping[EntityKind, ObjectType]] = {
    EntityKind.COMPANY: "companies",
    EntityKind.PERSON: "contacts",
}
_T = TypeVar("_T")


@dataclass(slots=True)
class _Group:
    """The records of one entity (or note) in a batch; ``winner`` is the one written."""

    records: list[OutboundRecord]
    export: Export

    @property
    def winner(self) -> OutboundRecord:
        return self.records[-1]

    @property
    def trace_id(self) -> str:
        return self.winner.delivery_id


@dataclass(slots=True)
class _Association:
    """One contact -> company association of a write and the groups it settles: the people
    written with it, the companies it waited for, and the Queast ids of the waiting people
    it clears (``identity.associated``) once written."""

    contact: str
    company: str
    company_queast_id: str
    people: list[_Group] = field(default_factory=list)
    companies: list[_Group] = field(default_factory=list)
    waiting: set[str] = field(default_factory=set)

    @property
    def carriers(self) -> list[_Group]:
        return [*self.people, *self.companies]


class _Associations(dict[tuple[str, str], _Association]):
    """The associations of a write by ``(contact id, company id)``: each is sent once."""

    def add(self, contact: str, company: str, company_queast_id: str) -> _Association:
        key = (contact, company)
        if key not in self:
            self[key] = _Association(contact, company, company_queast_id)
        return self[key]


@runtime_checkable
class _StrategyListing(Protocol):
    """A resolver that tells its connection's identity strategies, in order."""

    def strategies(self, kind: EntityKind) -> Sequence[str]: ...


@dataclass(slots=True)
class _Finder:
    """The candidates one write's lookups found, and how they match its entities back."""

    kind: EntityKind
    strategies: tuple[LookupStrategy, ...]
    queast_id_property: str
    found: dict[str, IdentityCandidate] = field(default_factory=dict)
    position: dict[str, int] = field(default_factory=dict)
    index: dict[MatchKey, list[str]] = field(default_factory=dict)
    looked_up: dict[str, set[LookupStrategy]] = field(default_factory=dict)

    @property
    def exact(self) -> tuple[LookupStrategy, ...]:
        return tuple(s for s in self.strategies if s is not LookupStrategy.COMPANY_NAME)

    def add(self, obj: Mapping[str, object]) -> None:
        candidate = candidate_from_object(
            self.kind, obj, queast_id_property=self.queast_id_property
        )
        if candidate is None or candidate.partner_object_id in self.found:
            return
        self.position[candidate.partner_object_id] = len(self.found)
        self.found[candidate.partner_object_id] = candidate
        for key in candidate_keys(candidate, self.kind):
            self.index.setdefault(key, []).append(candidate.partner_object_id)

    def _matching(self, group: _Group, strategies: Iterable[LookupStrategy]) -> set[str]:
        ids: set[str] = set()
        for key in entity_keys(_entity(group), strategies):
            ids.update(self.index.get(key, ()))
        return ids

    def offered(self, group: _Group) -> list[IdentityCandidate]:
        """The candidates matching ``group`` on a strategy it was looked up by, in the
        order HubSpot returned them."""
        ids = self._matching(group, self.looked_up.get(group.trace_id, ()))
        return [self.found[object_id] for object_id in sorted(ids, key=self.position.__getitem__)]

    def name_lookup_due(self, group: _Group, *, after_no_match: bool = False) -> bool:
        """Whether ``group`` still needs its name looked up: the strategy applies, the
        company has a name, it was not looked up by name yet and (before deciding) no
        strategy ordered before ``company_name`` found a candidate for it."""
        name = LookupStrategy.COMPANY_NAME
        write = _entity(group)
        if name not in self.strategies or not isinstance(write, CompanyWrite) or not write.name:
            return False
        if name in self.looked_up.get(group.trace_id, ()):
            return False
        if after_no_match:
            return True
        earlier = self.strategies[: self.strategies.index(name)]
        return not self._matching(group, earlier)


@dataclass(slots=True)
class _Run:
    """The outcomes of one ``write``: every record ends delivered or failed exactly once."""

    records: Sequence[OutboundRecord]
    started: float
    monotonic: Callable[[], float]
    results: dict[str, DeliveryResult | RecordFailure] = field(default_factory=dict)
    stop: ConnectorError | None = None
    links: dict[tuple[EntityKind, str], str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def deliver(self, group: _Group, *, status_code: int, partner_object_id: str | None) -> None:
        duration_ms = round((self.monotonic() - self.started) * 1000, 1)
        for record in group.records:
            self.results[record.delivery_id] = DeliveryResult(
                delivery_id=record.delivery_id,
                status_code=status_code,
                duration_ms=duration_ms,
                partner_object_id=partner_object_id,
            )

    def fail(self, group: _Group, error: ConnectorError, *, attempted: bool = True) -> None:
        for record in group.records:
            self.results[record.delivery_id] = RecordFailure(record.delivery_id, error, attempted)

    def defer(self, group: _Group) -> None:
        """Fail an already written group with the stop error: a later step it needs (an
        association) was not sent, so the whole record must come back."""
        if self.stop is not None:
            self.fail(group, self.stop, attempted=_attempted_when_stopped(self.stop))

    def fail_record(self, record: OutboundRecord, error: ConnectorError) -> None:
        self.results[record.delivery_id] = RecordFailure(record.delivery_id, error)

    def open(self, groups: Sequence[_Group]) -> list[_Group]:
        """The groups still to be written (none once the run is stopped)."""
        if self.stop is not None:
            return []
        return [g for g in groups if g.winner.delivery_id not in self.results]

    def is_open(self, group: _Group) -> bool:
        return self.stop is None and group.winner.delivery_id not in self.results

    def pending_results(self, groups: Sequence[_Group]) -> list[_Group]:
        """Groups not failed so far (delivered ones included)."""
        return [
            g
            for g in groups
            if not isinstance(self.results.get(g.winner.delivery_id), RecordFailure)
        ]

    def outcome(self) -> BatchOutcome:
        delivered: list[DeliveryResult] = []
        failed: list[RecordFailure] = []
        stop = self.stop or TransientError("record not reached", partner=_PARTNER)
        attempted = _attempted_when_stopped(stop)
        for record in self.records:
            result = self.results.get(record.delivery_id)
            if result is None:
                result = RecordFailure(record.delivery_id, stop, attempted)
            if isinstance(result, DeliveryResult):
                delivered.append(result)
            else:
                failed.append(result)
        return BatchOutcome(tuple(delivered), tuple(failed))


def _attempted_when_stopped(error: ConnectorError) -> bool:
    """Records a stopped run never sent count as attempted only for errors the service must
    act on for the connection (park on quota, re-authorise): it acts on attempted ones."""
    return isinstance(error, QuotaExhaustedError | AuthenticationError)


def _is_request_scoped(error: ConnectorError) -> bool:
    """Whether a failed request concerns only its own records (400s, 423 Locked)."""
    if isinstance(error, PermanentError):
        return True
    return isinstance(error, TransientError) and error.status_code == 423


class HubSpotSink(BatchingSink[HubSpotConnectionConfig]):
    """Delivers contract records to one tenant's HubSpot account; see the module docstring.

    ``setup`` checks the config (``base_url`` over plain HTTP only with
    ``allow_private_networks``) and that the context carries an identity resolver, sizes
    the rate limiter from the tier and opens the HTTP client; ``close`` closes it.
    ``on_token_refreshed`` is called with each renewed OAuth token (for the service to
    store it), and ``reload_grant`` asked for the latest stored one after a refused renewal
    (see :mod:`connectors.hubspot.auth`).

    Pacing waits are slept in the write, up to ``max_rate_limit_wait`` for a burst slot
    (one HubSpot window: a lane holding its batch while the window frees keeps its queue
    filling, so every request carries a full batch; deferring instead sends the records
    round the retry topic to come back after the same wait, in smaller batches) and
    ``max_search_wait`` for a search (lookups already made are not thrown away). A longer
    wait defers the records, not attempted.
    """

    name: ClassVar[str] = "hubspot"
    config_class: ClassVar[type[HubSpotConnectionConfig]] = HubSpotConnectionConfig
    max_batch_size: ClassVar[int] = 100
    default_rate_limit: ClassVar[RateLimit | None] = RateLimit(rate=100, per_seconds=10)
    max_rate_limit_wait: ClassVar[float] = 10.0
    max_search_wait: ClassVar[float] = 10.0

    def __init__(
        self,
        context: SinkContext[HubSpotConnectionConfig],
        *,
        on_token_refreshed: TokenRefreshedHook | None = None,
        reload_grant: GrantReloadHook | None = None,
        max_rate_limit_wait: float | None = None,
        max_search_wait: float | None = None,
    ) -> None:
        super().__init__(context)
        self._on_token_refreshed = on_token_refreshed
        self._reload_grant = reload_grant
        self._max_wait = (
            self.max_rate_limit_wait if max_rate_limit_wait is None else max_rate_limit_wait
        )
        self._max_search_wait = self.max_search_wait if max_search_wait is None else max_search_wait
        self._http: httpx.AsyncClient | None = None
        self._client: HubSpotClient | None = None
        self._identity: IdentityResolver | None = None
        self._searches: dict[EntityKind, SearchBatcher] = {}

    @property
    def client(self) -> HubSpotClient:
        """The HubSpot client (after ``setup``)."""
        if self._client is None:
            msg = "HubSpotSink.setup() must be called before write()"
            raise RuntimeError(msg)
        return self._client

    async def setup(self) -> None:
        """Called once before the first write: check the config and context, open the client.

        Raises ``PermanentError`` when the config is not a HubSpot config, uses plain HTTP
        without ``allow_private_networks``, or the context has no identity resolver.
        """
        config: object = self.context.config
        if not isinstance(config, HubSpotConnectionConfig):
            raise PermanentError("connection config is not a HubSpot config", partner=self.name)
        if config.base_url.scheme != "https" and not self.context.allow_private_networks:
            raise PermanentError("HubSpot base_url must use https", partner=self.name)
        if self.context.identity is None:
            raise PermanentError(
                "HubSpot connections need the identity resolver in the context",
                partner=self.name,
            )
        self._identity = self.context.identity
        context = self.context
        self._http = context.http_client_factory(
            timeout_seconds=config.timeout_seconds, max_connections=config.max_concurrency or 4
        )
        log_fields = context.log_fields()
        self._client = HubSpotClient(
            http_client=self._http,
            api_root=config.api_root,
            tokens=token_source_for(
                config,
                http_client=self._http,
                clock=context.clock,
                logger=context.logger,
                log_fields=log_fields,
                on_token_refreshed=self._on_token_refreshed,
                reload_grant=self._reload_grant,
            ),
            limiter=HubSpotRateLimiter(limits_for(config), clock=context.clock),
            clock=context.clock,
            logger=context.logger,
            max_wait=self._max_wait,
            max_search_wait=max(self._max_wait, self._max_search_wait),
            log_fields=log_fields,
        )
        self._searches = {
            kind: SearchBatcher(
                self._client,
                object_type,
                properties=search_properties(kind, queast_id_property=config.queast_id_property),
            )
            for kind, object_type in _OBJECT_TYPES.items()
        }

    async def close(self) -> None:
        """Called once at shutdown: stop the shared searches, close the HTTP client."""
        for searches in self._searches.values():
            await searches.close()
        self._searches = {}
        if self._http is not None:
            await self._http.aclose()
        self._http = None
        self._client = None

    # -- write --------------------------------------------------------------------------

    async def write(self, batch: Sequence[OutboundRecord]) -> BatchOutcome:
        """Write ``batch``; per-record outcomes, never a raised ``ConnectorError``."""
        client = self.client
        clock = self.context.clock
        run = _Run(records=batch, started=clock.monotonic(), monotonic=clock.monotonic)
        quota = client.quota_error()
        wait = client.limiter.peek("burst")
        if quota is not None:
            run.stop = quota
        elif wait > self._max_wait:
            run.stop = BackpressureError(
                "burst rate limit wait too long", retry_after=wait, partner=self.name
            )
        else:
            companies, people, deletions, notes = self._groups(run, batch)
            await self._write_entities(run, EntityKind.COMPANY, companies)
            await self._write_entities(run, EntityKind.PERSON, people)
            await self._associate(run, companies, people)
            await self._delete(run, deletions)
            await self._write_notes(run, notes)
        outcome = run.outcome()
        self.context.logger.info(
            "hubspot.batch.written",
            extra={
                **self.context.log_fields(),
                **{f"n_{name}": count for name, count in run.counts.items()},
                "records": len(batch),
                "delivered": len(outcome.delivered),
                "failed": len(outcome.failed),
                "stopped_by": type(run.stop).__name__ if run.stop else None,
                "duration_ms": round((clock.monotonic() - run.started) * 1000, 1),
            },
        )
        return outcome

    def _groups(
        self, run: _Run, batch: Sequence[OutboundRecord]
    ) -> tuple[list[_Group], list[_Group], list[_Group], list[_Group]]:
        """Parse every record and group the writes per entity (payload errors fail alone)."""
        property_name = self.config.queast_id_property
        groups: dict[tuple[str, str], _Group] = {}
        for record in batch:
            try:
                export = export_for(record, queast_id_property=property_name)
            except PayloadError as exc:
                run.fail_record(record, PermanentError(str(exc), partner=self.name))
                continue
            key = _group_key(export)
            group = groups.get(key)
            if group is None:
                groups[key] = _Group([record], export)
            elif record.entity_version >= group.winner.entity_version:
                group.records.append(record)
                group.export = export
            else:
                group.records.insert(0, record)
        ordered = list(groups.values())
        return (
            [g for g in ordered if isinstance(g.export, CompanyWrite)],
            [g for g in ordered if isinstance(g.export, PersonWrite)],
            [g for g in ordered if isinstance(g.export, Deletion)],
            [g for g in ordered if isinstance(g.export, NoteWrite)],
        )

    async def _call(self, run: _Run, groups: Sequence[_Group], call: Awaitable[_T]) -> _T | None:
        """Await one HubSpot call for ``groups``; on failure record it and return ``None``."""
        try:
            with carrying([r for g in groups for r in g.records]):
                return await call
        except (RequestDeferred, ConnectorError) as error:
            self._failed(run, groups, error)
        return None

    def _failed(
        self, run: _Run, groups: Sequence[_Group], error: RequestDeferred | ConnectorError
    ) -> None:
        """A call for ``groups`` failed: fail them, and stop the run if it concerns the
        connection (a deferral stops it without failing anyone: all come back later)."""
        if isinstance(error, RequestDeferred):
            run.stop = error.error
            return
        for group in groups:
            run.fail(group, error)
        if not _is_request_scoped(error):
            run.stop = error
        self.context.logger.warning(
            "hubspot.request.failed",
            extra={**self.context.log_fields(), **error.log_fields(), "records": len(groups)},
        )

    async def _identity_call(self, run: _Run, group: _Group, call: Awaitable[_T]) -> _T | None:
        try:
            return await call
        except ConnectorError as error:
            run.fail(group, error)
            return None

    async def _linked(self, run: _Run, kind: EntityKind, queast_id: str) -> str | None:
        cached = run.links.get((kind, queast_id))
        if cached is not None:
            return cached
        found = await self._resolver.linked(kind, queast_id)
        if found is not None:
            run.links[(kind, queast_id)] = found
        return found

    @property
    def _resolver(self) -> IdentityResolver:
        if self._identity is None:
            msg = "HubSpotSink.setup() must be called before write()"
            raise RuntimeError(msg)
        return self._identity

    # -- companies and people -------------------------------------------------------------

    async def _write_entities(self, run: _Run, kind: EntityKind, groups: list[_Group]) -> None:
        groups = run.open(groups)
        if not groups:
            return
        # A bounded number at a time: four lanes of 100 records must not take a Redis
        # connection each (the service's pool is finite).
        gate = asyncio.Semaphore(_IDENTITY_LOOKUPS_AT_ONCE)

        async def linked(group: _Group) -> str | None:
            async with gate:
                return await self._identity_call(
                    run, group, self._linked(run, kind, _entity(group).queast_id)
                )

        links = await asyncio.gather(*(linked(g) for g in groups))
        to_update: list[tuple[_Group, str]] = []
        unlinked: list[_Group] = []
        for group, link in zip(groups, links, strict=True):
            if group.winner.delivery_id in run.results:
                continue
            if link is not None:
                to_update.append((group, link))
            else:
                unlinked.append(group)
        # Linked entities first: they need no search, so search pacing never holds them up.
        await self._update(run, kind, to_update)
        if unlinked:
            decided, to_create = await self._decide(run, kind, unlinked)
            await self._update(run, kind, decided)
            await self._create(run, kind, to_create)

    def _strategies(self, kind: EntityKind) -> tuple[LookupStrategy, ...]:
        resolver = self._resolver
        if isinstance(resolver, _StrategyListing):
            return applicable_strategies(kind, resolver.strategies(kind))
        return DEFAULT_STRATEGIES[kind]

    async def _decide(
        self, run: _Run, kind: EntityKind, groups: list[_Group]
    ) -> tuple[list[tuple[_Group, str]], list[_Group]]:
        """Look candidates up and let the resolver decide: (linked, to create)."""
        finder = _Finder(kind, self._strategies(kind), self.config.queast_id_property)
        await self._look_up(run, finder, groups, finder.exact)
        by_name = [g for g in run.open(groups) if finder.name_lookup_due(g)]
        await self._look_up(run, finder, by_name, (LookupStrategy.COMPANY_NAME,))
        linked, unmatched = await self._apply_decisions(run, kind, finder, run.open(groups))
        retry = [g for g in unmatched if finder.name_lookup_due(g, after_no_match=True)]
        retrying = {id(g) for g in retry}
        create = [g for g in unmatched if id(g) not in retrying]
        if retry:
            await self._look_up(run, finder, retry, (LookupStrategy.COMPANY_NAME,))
            more, still_unmatched = await self._apply_decisions(run, kind, finder, run.open(retry))
            linked += more
            create += still_unmatched
        return linked, create

    async def _apply_decisions(
        self, run: _Run, kind: EntityKind, finder: _Finder, groups: list[_Group]
    ) -> tuple[list[tuple[_Group, str]], list[_Group]]:
        """``identity.decide`` for each group with its candidates: (linked, no match)."""
        linked: list[tuple[_Group, str]] = []
        unmatched: list[_Group] = []
        for group in groups:
            if not run.is_open(group):
                continue
            write = _entity(group)
            decision = await self._identity_call(
                run,
                group,
                self._resolver.decide(
                    kind, write.queast_id, group.winner.payload, finder.offered(group)
                ),
            )
            if decision is None:
                continue
            if decision.outcome is IdentityOutcome.AMBIGUOUS:
                run.count("held")
                reason = "ambiguous identity match held for review"
                if decision.review_id:
                    reason += f" (review {decision.review_id})"
                run.fail(group, HeldForReviewError(reason, partner=self.name))
            elif decision.outcome is IdentityOutcome.NO_MATCH:
                unmatched.append(group)
            elif decision.partner_object_id:
                run.count("linked")
                run.links[(kind, write.queast_id)] = decision.partner_object_id
                linked.append((group, decision.partner_object_id))
            else:
                run.fail(
                    group,
                    TransientError(
                        "identity resolver linked without an object id", partner=self.name
                    ),
                )
        return linked, unmatched

    async def _look_up(
        self,
        run: _Run,
        finder: _Finder,
        groups: list[_Group],
        strategies: tuple[LookupStrategy, ...],
    ) -> None:
        """Search the values of ``groups`` for ``strategies``, packed; a failed search fails
        the groups it carried."""
        groups = run.open(groups)
        if not groups or not strategies:
            return
        wanted = {
            g.trace_id: lookups(
                _entity(g), strategies, queast_id_property=finder.queast_id_property
            )
            for g in groups
        }
        for group in groups:
            finder.looked_up.setdefault(group.trace_id, set()).update(strategies)
        run.count("looked_up", sum(1 for values in wanted.values() if values))
        with carrying([r for g in groups for r in g.records]):
            answers = await self._searches[finder.kind].search(
                [lookup for values in wanted.values() for lookup in values]
            )
        for answer in answers:
            result = answer.result
            if isinstance(result, SearchResult):
                run.count("searches", result.requests)
                run.count("lookups", len(answer.keys))
                for obj in result.objects:
                    finder.add(obj)
                continue
            if not isinstance(result, RequestDeferred | ConnectorError):
                raise result
            concerned = [
                g
                for g in groups
                if any((v.property_name, v.value) in answer.keys for v in wanted[g.trace_id])
            ]
            self._failed(run, run.open(concerned), result)

    async def _update(self, run: _Run, kind: EntityKind, targets: list[tuple[_Group, str]]) -> None:
        """Batch update by record id, one request per distinct set of ids."""
        remaining = [(g, object_id) for g, object_id in targets if run.is_open(g)]
        while remaining:
            batch: list[tuple[_Group, str]] = []
            later: list[tuple[_Group, str]] = []
            ids: set[str] = set()
            for group, object_id in remaining:
                (later if object_id in ids else batch).append((group, object_id))
                ids.add(object_id)
            inputs = [(g.trace_id, object_id, _entity(g).properties) for g, object_id in batch]
            groups = [g for g, _ in batch]
            response = await self._call(
                run, groups, self.client.update(_OBJECT_TYPES[kind], inputs)
            )
            if response is not None:
                run.count("updated", len(batch))
                self._settle(run, kind, groups, response)
            remaining = [(g, object_id) for g, object_id in later if run.is_open(g)]

    async def _create(self, run: _Run, kind: EntityKind, groups: list[_Group]) -> None:
        """Upsert on the Queast id property, then record the links."""
        groups = run.open(groups)
        if not groups:
            return
        property_name = self.config.queast_id_property
        inputs = [(g.trace_id, _entity(g).queast_id, _entity(g).properties) for g in groups]
        response = await self._call(
            run,
            groups,
            self.client.upsert(_OBJECT_TYPES[kind], inputs, id_property=property_name),
        )
        if response is None:
            return
        for group in groups:
            outcome = response.outcomes[group.trace_id]
            if outcome.object_id is None:
                continue
            run.count("created" if outcome.new is not False else "recreated_link")
            queast_id = _entity(group).queast_id
            linked = await self._identity_call(
                run,
                group,
                self._link(kind, queast_id, outcome.object_id),
            )
            if linked:
                run.links[(kind, queast_id)] = outcome.object_id
        self._settle(run, kind, groups, response)

    async def _link(self, kind: EntityKind, queast_id: str, object_id: str) -> bool:
        await self._resolver.link(kind, queast_id, object_id, strategy="created")
        return True

    def _settle(
        self, run: _Run, kind: EntityKind, groups: Sequence[_Group], response: BatchWriteResponse
    ) -> None:
        for group in groups:
            if group.winner.delivery_id in run.results:
                continue  # failed while linking
            outcome = response.outcomes[group.trace_id]
            if outcome.error is not None:
                run.fail(group, outcome.error)
                continue
            if isinstance(group.export, CompanyWrite | PersonWrite) and outcome.object_id:
                run.links.setdefault((kind, group.export.queast_id), outcome.object_id)
            run.deliver(
                group, status_code=response.status_code, partner_object_id=outcome.object_id
            )

    # -- associations ---------------------------------------------------------------------

    async def _associate(self, run: _Run, companies: list[_Group], people: list[_Group]) -> None:
        """Step 3: the contact -> company associations of this write, batched.

        Each written person whose company is linked is associated directly; the others
        register with ``identity.wait_for_company``, which returns the company's id if it
        got linked meanwhile. Each written company asks ``identity.people_waiting`` for the
        contacts written before it was linked. All of these go in the same batch requests;
        ``identity.associated`` is called only for what a request wrote.
        """
        gate = asyncio.Semaphore(_IDENTITY_LOOKUPS_AT_ONCE)
        persons: list[tuple[_Group, PersonWrite, str]] = []
        for group in run.pending_results(people):
            person, contact = group.export, _written_id(run, group)
            if not isinstance(person, PersonWrite) or person.company_queast_id is None:
                continue
            if contact is None:
                continue
            if run.stop is not None:
                run.defer(group)  # its association could not be sent
                continue
            persons.append((group, person, contact))
        written: list[tuple[_Group, CompanyWrite, str]] = []
        for group in run.pending_results(companies):
            export, object_id = group.export, _written_id(run, group)
            if isinstance(export, CompanyWrite) and object_id is not None:
                written.append((group, export, object_id))
        found, waiting = await asyncio.gather(
            asyncio.gather(*(self._company_of(run, gate, g, p) for g, p, _ in persons)),
            asyncio.gather(*(self._waiting_for(run, gate, g, c) for g, c, _ in written)),
        )
        pairs = _Associations()
        for (group, person, contact), (company, waited) in zip(persons, found, strict=True):
            if not _delivered(run, group) or person.company_queast_id is None:
                continue
            if company is None:
                run.count("association_waiting")
                continue
            association = pairs.add(contact, company, person.company_queast_id)
            association.people.append(group)
            if waited:
                run.count("associated_late")
                association.waiting.add(person.queast_id)
        for (group, export, object_id), people_waiting in zip(written, waiting, strict=True):
            if not _delivered(run, group):
                continue
            for person_id, contact in people_waiting.items():
                run.count("associated_late")
                association = pairs.add(contact, object_id, export.queast_id)
                association.companies.append(group)
                association.waiting.add(person_id)
        todo = list(pairs.values())
        for start in range(0, len(todo), _ASSOCIATIONS_PER_REQUEST):
            chunk = todo[start : start + _ASSOCIATIONS_PER_REQUEST]
            await self._send_associations(run, gate, chunk)

    async def _company_of(
        self, run: _Run, gate: asyncio.Semaphore, group: _Group, person: PersonWrite
    ) -> tuple[str | None, bool]:
        """The object id of the person's company, and whether waiting found it (``None``:
        not linked, the person now waits for it, or the identity call failed the group)."""
        company_id = person.company_queast_id
        if company_id is None:  # pragma: no cover - the caller filters these
            return None, False
        async with gate:
            found = await self._identity_call(
                run, group, self._linked(run, EntityKind.COMPANY, company_id)
            )
            if found is not None or not _delivered(run, group):
                return found, False
            late = await self._identity_call(
                run, group, self._resolver.wait_for_company(company_id, person.queast_id)
            )
            return late, True

    async def _waiting_for(
        self, run: _Run, gate: asyncio.Semaphore, group: _Group, company: CompanyWrite
    ) -> Mapping[str, str]:
        """The contacts written before ``company`` was linked (none if the call failed)."""
        async with gate:
            waiting = await self._identity_call(
                run, group, self._resolver.people_waiting(company.queast_id)
            )
        return waiting or {}

    async def _send_associations(
        self, run: _Run, gate: asyncio.Semaphore, chunk: list[_Association]
    ) -> None:
        """One batch association request, then ``identity.associated`` for what it wrote."""
        carriers = _unique(g for a in chunk for g in a.carriers)
        if run.stop is not None:
            for group in carriers:
                run.defer(group)
            return
        response = await self._call(
            run,
            carriers,
            self.client.associate_default(
                "contacts", "companies", [(a.contact, a.company) for a in chunk]
            ),
        )
        if response is None:
            return  # the carriers failed; the waits stay for their retry
        done: dict[str, list[_Association]] = {}
        for association in chunk:
            error = response.failed.get(association.contact)
            if error is None:
                run.count("associated")
                if association.waiting:
                    done.setdefault(association.company_queast_id, []).append(association)
                continue
            for group in association.people:
                run.fail(group, error)
            self._waiting_association_failed(run, association, error)

        async def associated(company_id: str, associations: list[_Association]) -> None:
            person_ids = sorted({p for a in associations for p in a.waiting})
            try:
                async with gate:
                    await self._resolver.associated(company_id, person_ids)
            except ConnectorError as error:
                # Written but still recorded as waiting: the retry clears it.
                for group in _unique(g for a in associations for g in a.carriers):
                    run.fail(group, error)

        await asyncio.gather(*(associated(c, a) for c, a in done.items()))

    def _waiting_association_failed(
        self, run: _Run, association: _Association, error: ConnectorError
    ) -> None:
        """A waiting contact's association failed alone (207): the companies it waited
        for come back for a transient error; a permanent one (say the contact is gone)
        does not hold them, and the wait stays."""
        if not association.companies:
            return
        if not isinstance(error, PermanentError):
            for group in association.companies:
                run.fail(group, error)
            return
        run.count("association_failed")
        self.context.logger.warning(
            "hubspot.association.failed",
            extra={
                **self.context.log_fields(),
                **error.log_fields(),
                "records": len(association.companies),
            },
        )

    # -- deletions ------------------------------------------------------------------------

    async def _delete(self, run: _Run, groups: list[_Group]) -> None:
        groups = run.open(groups)
        by_kind: dict[EntityKind, list[tuple[_Group, str]]] = {}
        for group in groups:
            deletion = group.export
            if not isinstance(deletion, Deletion):
                continue
            object_id = await self._identity_call(
                run, group, self._linked(run, deletion.kind, deletion.queast_id)
            )
            if group.winner.delivery_id in run.results:
                continue
            if object_id is None:
                run.count("deletions_unlinked")
                run.deliver(group, status_code=_NO_REQUEST_STATUS, partner_object_id=None)
                continue
            by_kind.setdefault(deletion.kind, []).append((group, object_id))
        for kind, targets in by_kind.items():
            chunk = [(g, object_id) for g, object_id in targets if run.is_open(g)]
            if not chunk:
                continue
            ids = list(dict.fromkeys(object_id for _, object_id in chunk))
            status = await self._call(
                run,
                [g for g, _ in chunk],
                self.client.archive(_OBJECT_TYPES[kind], ids),
            )
            if status is None:
                continue
            run.count("archived", len(ids))
            for group, object_id in chunk:
                run.deliver(group, status_code=status, partner_object_id=object_id)

    # -- notes ----------------------------------------------------------------------------

    async def _write_notes(self, run: _Run, groups: list[_Group]) -> None:
        groups = run.open(groups)
        targets: list[tuple[_Group, NoteWrite, str, list[str]]] = []
        for group in groups:
            note = group.export
            if not isinstance(note, NoteWrite):
                continue
            company = await self._identity_call(
                run, group, self._linked(run, EntityKind.COMPANY, note.company_queast_id)
            )
            if group.winner.delivery_id in run.results:
                continue
            if company is None:
                run.count("notes_waiting_for_company")
                run.fail(
                    group,
                    TransientError("company not linked in HubSpot yet", partner=self.name),
                )
                continue
            contacts: list[str] = []
            for person in note.person_queast_ids:
                contact = await self._identity_call(
                    run, group, self._linked(run, EntityKind.PERSON, person)
                )
                if contact is not None:
                    contacts.append(contact)
            if group.winner.delivery_id not in run.results:
                targets.append((group, note, company, contacts))
        if not targets:
            return
        if self.config.note_id_property is None:
            await self._create_notes(run, targets)
        else:
            await self._upsert_notes(run, targets, self.config.note_id_property)

    async def _create_notes(
        self, run: _Run, targets: list[tuple[_Group, NoteWrite, str, list[str]]]
    ) -> None:
        inputs = [
            (g.trace_id, n.properties, company, contacts) for g, n, company, contacts in targets
        ]
        groups = [g for g, _, _, _ in targets]
        response = await self._call(run, groups, self.client.create_notes(inputs))
        if response is None:
            return
        run.count("notes", len(groups))
        self._settle(run, EntityKind.COMPANY, groups, response)

    async def _upsert_notes(
        self,
        run: _Run,
        targets: list[tuple[_Group, NoteWrite, str, list[str]]],
        id_property: str,
    ) -> None:
        inputs = [(g.trace_id, n.key, n.properties) for g, n, _, _ in targets]
        groups = [g for g, _, _, _ in targets]
        response = await self._call(
            run, groups, self.client.upsert("notes", inputs, id_property=id_property)
        )
        if response is None:
            return
        run.count("notes", len(groups))
        self._settle(run, EntityKind.COMPANY, groups, response)
        to_companies: list[tuple[_Group, str, str]] = []
        to_contacts: list[tuple[_Group, str, str]] = []
        for group, _, company, contacts in targets:
            result = run.results.get(group.winner.delivery_id)
            if not isinstance(result, DeliveryResult) or result.partner_object_id is None:
                continue
            note_id = result.partner_object_id
            to_companies.append((group, note_id, company))
            to_contacts += [(group, note_id, contact) for contact in contacts]
        await self._associate_notes(run, to_companies, "companies")
        await self._associate_notes(run, to_contacts, "contacts")

    async def _associate_notes(
        self, run: _Run, pairs: list[tuple[_Group, str, str]], to_type: ObjectType
    ) -> None:
        pairs = [(g, a, b) for g, a, b in pairs if _delivered(run, g)]
        if run.stop is not None:
            for group, _, _ in pairs:
                run.defer(group)
            return
        if not pairs:
            return
        groups = list({id(g): g for g, _, _ in pairs}.values())
        response = await self._call(
            run,
            groups,
            self.client.associate_default("notes", to_type, [(a, b) for _, a, b in pairs]),
        )
        if response is None:
            return
        for group, note_id, _ in pairs:
            error = response.failed.get(note_id)
            if error is not None:
                run.fail(group, error)


def _delivered(run: _Run, group: _Group) -> bool:
    return isinstance(run.results.get(group.winner.delivery_id), DeliveryResult)


def _unique(groups: Iterable[_Group]) -> list[_Group]:
    """``groups`` without repeats, in order."""
    return list({id(g): g for g in groups}.values())


def _written_id(run: _Run, group: _Group) -> str | None:
    """The object id a delivered group was written to, else ``None``."""
    result = run.results.get(group.winner.delivery_id)
    return result.partner_object_id if isinstance(result, DeliveryResult) else None


def _entity(group: _Group) -> CompanyWrite | PersonWrite:
    export = group.export
    if not isinstance(export, CompanyWrite | PersonWrite):  # pragma: no cover - grouping bug
        msg = "not an entity write"
        raise TypeError(msg)
    return export


def _group_key(export: Export) -> tuple[str, str]:
    if isinstance(export, CompanyWrite | PersonWrite):
        return (f"write:{export.kind.value}", export.queast_id)
    if isinstance(export, Deletion):
        return (f"delete:{export.kind.value}", export.queast_id)
    return ("note", export.key)

"""``HubSpotSink``: contract records to HubSpot companies, contacts, associations and notes.

One :meth:`HubSpotSink.write` (at most 100 records of one connection) runs these steps in
order, so that what a later step needs was written by an earlier one:

1. **companies**, 2. **people**: for each entity, ``identity.linked``; linked entities are
   updated by record id (setting the Queast id property too). The others are looked up
   (search by domain, name or e-mail, five ``EQ`` groups per request, paced at the search
   rate) and ``identity.decide`` picks: ``linked`` -> update that object by id;
   ``no_match`` -> batch upsert on the Queast id property (idempotent: a retried create
   finds its own object) then ``identity.link(..., strategy="created")``; ``ambiguous`` ->
   ``HeldForReviewError``, nothing written;
3. **associations**: each person whose company is linked gets the v4 default
   contact -> company association; a person whose company is not linked is delivered
   without one;
4. **deletions**: the linked objects are archived; an unlinked deletion is a delivered
   no-op (reported as 204, no request);
5. **notes** for signals and job ads, associated to the company (and linked contacts). A
   note whose company is not linked yet fails with a ``TransientError``: it retries after
   the company's own export lands.

Several records of one entity in a batch are written once, with the highest
``entity_version`` (the last on a tie), and share its outcome.

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
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Final, TypeVar

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
from connectors.hubspot.auth import TokenRefreshedHook, token_source_for
from connectors.hubspot.client import (
    BatchWriteResponse,
    HubSpotClient,
    HubSpotRateLimiter,
    ObjectType,
    RequestDeferred,
)
from connectors.hubspot.config import HubSpotConnectionConfig, limits_for
from connectors.hubspot.payloads import (
    CompanyWrite,
    Deletion,
    Export,
    NoteWrite,
    PayloadError,
    PersonWrite,
    candidate_from_object,
    candidate_matches,
    export_for,
    search_keys,
    search_properties,
)

__all__ = ["HubSpotSink"]

_PARTNER: Final[str] = "hubspot"
_FILTER_GROUPS_PER_SEARCH: Final[int] = 5
_NO_REQUEST_STATUS: Final[int] = 204
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


def _chunks(items: Sequence[_T], size: int) -> Iterator[list[_T]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


class HubSpotSink(BatchingSink[HubSpotConnectionConfig]):
    """Delivers contract records to one tenant's HubSpot account; see the module docstring.

    ``setup`` checks the config (``base_url`` over plain HTTP only with
    ``allow_private_networks``) and that the context carries an identity resolver, sizes
    the rate limiter from the tier and opens the HTTP client; ``close`` closes it.
    ``on_token_refreshed`` is called with each renewed OAuth token (for the service to
    store it).
    """

    name: ClassVar[str] = "hubspot"
    config_class: ClassVar[type[HubSpotConnectionConfig]] = HubSpotConnectionConfig
    max_batch_size: ClassVar[int] = 100
    default_rate_limit: ClassVar[RateLimit | None] = RateLimit(rate=100, per_seconds=10)
    max_rate_limit_wait: ClassVar[float] = 1.0

    def __init__(
        self,
        context: SinkContext[HubSpotConnectionConfig],
        *,
        on_token_refreshed: TokenRefreshedHook | None = None,
        max_rate_limit_wait: float | None = None,
    ) -> None:
        super().__init__(context)
        self._on_token_refreshed = on_token_refreshed
        self._max_wait = (
            self.max_rate_limit_wait if max_rate_limit_wait is None else max_rate_limit_wait
        )
        self._http: httpx.AsyncClient | None = None
        self._client: HubSpotClient | None = None
        self._identity: IdentityResolver | None = None

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
            ),
            limiter=HubSpotRateLimiter(limits_for(config), clock=context.clock),
            clock=context.clock,
            logger=context.logger,
            max_wait=self._max_wait,
            log_fields=log_fields,
        )

    async def close(self) -> None:
        """Called once at shutdown: close the HTTP client."""
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
            await self._associate_people(run, people)
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
            return await call
        except RequestDeferred as deferred:
            run.stop = deferred.error
        except ConnectorError as error:
            for group in groups:
                run.fail(group, error)
            if not _is_request_scoped(error):
                run.stop = error
            self.context.logger.warning(
                "hubspot.request.failed",
                extra={**self.context.log_fields(), **error.log_fields(), "records": len(groups)},
            )
        return None

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
        links = await asyncio.gather(
            *(
                self._identity_call(run, g, self._linked(run, kind, _entity(g).queast_id))
                for g in groups
            )
        )
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

    async def _decide(
        self, run: _Run, kind: EntityKind, groups: list[_Group]
    ) -> tuple[list[tuple[_Group, str]], list[_Group]]:
        """Search candidates and let the resolver decide: (linked, to create)."""
        candidates = await self._search(run, kind, groups)
        linked: list[tuple[_Group, str]] = []
        create: list[_Group] = []
        for group in run.open(groups):
            write = _entity(group)
            keys = search_keys(write)
            mine = [c for c in candidates if candidate_matches(c, keys)]
            decision = await self._identity_call(
                run, group, self._resolver.decide(kind, write.queast_id, group.winner.payload, mine)
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
                create.append(group)
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
        return linked, create

    async def _search(
        self, run: _Run, kind: EntityKind, groups: list[_Group]
    ) -> list[IdentityCandidate]:
        """Candidates for every group's lookups; a failed search fails its groups."""
        property_name = self.config.queast_id_property
        keyed = [(g, search_keys(_entity(g))) for g in groups]
        unique_keys = list(dict.fromkeys(k for _, keys in keyed for k in keys))
        found: dict[str, IdentityCandidate] = {}
        properties = search_properties(kind, queast_id_property=property_name)
        for chunk in _chunks(unique_keys, _FILTER_GROUPS_PER_SEARCH):
            chunk_keys = set(chunk)
            concerned = [g for g, keys in keyed if chunk_keys.intersection(keys)]
            concerned = run.open(concerned)
            if not concerned:
                continue
            results = await self._call(
                run,
                concerned,
                self.client.search(_OBJECT_TYPES[kind], chunk, properties=properties),
            )
            if results is None:
                continue
            run.count("searches")
            for obj in results:
                candidate = candidate_from_object(kind, obj, queast_id_property=property_name)
                if candidate is not None:
                    found.setdefault(candidate.partner_object_id, candidate)
        return list(found.values())

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

    async def _associate_people(self, run: _Run, people: list[_Group]) -> None:
        pairs: list[tuple[_Group, str, str]] = []
        for group in run.pending_results(people):
            person = group.export
            result = run.results.get(group.winner.delivery_id)
            if not isinstance(person, PersonWrite) or not isinstance(result, DeliveryResult):
                continue
            if person.company_queast_id is None or result.partner_object_id is None:
                continue
            if run.stop is not None:
                run.defer(group)
                continue
            company = await self._identity_call(
                run, group, self._linked(run, EntityKind.COMPANY, person.company_queast_id)
            )
            if company is None:
                run.count("association_skipped")
                continue
            pairs.append((group, result.partner_object_id, company))
        if not pairs:
            return
        groups = [g for g, _, _ in pairs]
        response = await self._call(
            run,
            groups,
            self.client.associate_default(
                "contacts", "companies", [(contact, company) for _, contact, company in pairs]
            ),
        )
        if response is None:
            return
        run.count("associated", len(pairs) - len(response.failed))
        for group, contact, _ in pairs:
            error = response.failed.get(contact)
            if error is not None:
                run.fail(group, error)

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

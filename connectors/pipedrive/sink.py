"""``PipedriveSink``: Queast companies, people, signals and job ads into a Pipedrive account.

One record per ``write`` (API v2 has no bulk create or update). What each record does:

- company / person: linked (``identity.linked``) -> ``PATCH`` that object. Not linked ->
  find candidates (organizations by the domain custom field, else by exact name; persons
  by email) in the connection's candidate index (``connectors.pipedrive.index``: the
  account's objects listed 500 per request and kept fresh, no request per entity) or, when
  the index is off or cannot answer, by searching Pipedrive and reading each hit; then let
  ``identity.decide`` choose:
  ``linked`` -> ``PATCH`` it; ``no_match`` -> create, then ``identity.link(...,
  strategy="created")``; ``ambiguous`` -> nothing written, the record fails alone with
  ``HeldForReviewError`` (a review entry is queued by the service).
  A person's ``org_id`` is set when its company is linked; a person written before its
  company waits for it (``identity.wait_for_company``), and the company's own write sets
  the ``org_id`` of those waiting (``identity.people_waiting``). A person update keeps the
  emails already in Pipedrive and adds ours.
- signal / job ad: an HTML note (``POST /v1/notes``) on the company's linked organization;
  not linked yet -> ``TransientError("organization not linked yet")`` (retried once the
  company record has gone through).
- company / person deletion: ``DELETE`` the linked object; not linked, or already gone
  (404), is delivered without a change (status 204 for "nothing to do", 404 as answered).

``DeliveryResult.partner_object_id`` is the Pipedrive id of the object written (the note's
id for notes). A linked object that no longer exists in Pipedrive is a ``PermanentError``:
the link needs a review. Rate limits, the daily token budget and authentication are the
client's (see ``connectors.pipedrive.client``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import httpx
from pydantic import HttpUrl

from connectors.base.attempts import Attempt
from connectors.base.context import SinkContext
from connectors.base.contract import CompanyRecord, ContractViolation, PersonRecord
from connectors.base.errors import (
    ConnectorError,
    HeldForReviewError,
    PermanentError,
    TransientError,
)
from connectors.base.identity import (
    EntityKind,
    EntityRecord,
    IdentityCandidate,
    IdentityOutcome,
    IdentityResolver,
)
from connectors.base.oauth import TokenSource, options_from
from connectors.base.ratelimit import RateLimit
from connectors.base.sink import (
    BatchingSink,
    BatchOutcome,
    DeliveryResult,
    OutboundRecord,
    RecordFailure,
)
from connectors.base.tracing import carrying
from connectors.pipedrive import payloads
from connectors.pipedrive.auth import ApiTokenAuth, PipedriveOAuthSource
from connectors.pipedrive.client import DailyBudget, PipedriveClient, PipedriveObject
from connectors.pipedrive.config import (
    BURST_WINDOW_SECONDS,
    PipedriveConnectionConfig,
    PipedriveOAuth,
    check_partner_url,
)
from connectors.pipedrive.index import CandidateIndex

__all__ = ["PipedriveSink"]

_DEFAULT_MAX_CONCURRENCY: Final[int] = 4
_NOTHING_TO_DO_STATUS: Final[int] = 204
_KIND_OBJECT: Final[dict[EntityKind, PipedriveObject]] = {
    EntityKind.COMPANY: PipedriveObject.ORGANIZATION,
    EntityKind.PERSON: PipedriveObject.PERSON,
}


@dataclass(frozen=True, slots=True)
class _Written:
    status_code: int
    partner_object_id: str | None


class PipedriveSink(BatchingSink[PipedriveConnectionConfig]):
    """Delivers records to one Pipedrive company account; see the module docstring.

    ``setup`` checks the config against the context (URLs allowed by the network policy,
    an identity resolver present), sizes the rate limits and opens the HTTP client;
    ``write`` sends one record; ``close`` closes the client.

    The burst bucket is ``rate_limit_per_second`` when the connection sets it, else the
    plan's limit per 2 s for the auth type (API token 20/40/100/120, OAuth
    80/160/400/480); :attr:`default_rate_limit` is the Lite API-token limit. It lets a
    full window's worth through at once; when Pipedrive's ``x-ratelimit-remaining`` then
    says 0, the bucket holds off until ``x-ratelimit-reset``. Searches are also paced by
    :attr:`search_rate_limit` (10 per 2 s on every plan).

    First links take their candidates from :attr:`candidate_index` (the connection's
    ``candidate_index`` settings; built on the first lookup of each kind), and search only
    when it is turned off or cannot answer (``connectors.pipedrive.index``).

    An OAuth connection keeps its renewed grants in the context's ``grant_store`` (see
    :mod:`connectors.base.oauth`). ``search_rate_limit`` overrides the search pacing
    (sandboxes only).
    """

    name: ClassVar[str] = "pipedrive"
    config_class: ClassVar[type[PipedriveConnectionConfig]] = PipedriveConnectionConfig
    max_batch_size: ClassVar[int] = 1
    default_rate_limit: ClassVar[RateLimit | None] = RateLimit(
        rate=20, per_seconds=BURST_WINDOW_SECONDS
    )
    search_rate_limit: ClassVar[RateLimit] = RateLimit(
        rate=10, per_seconds=BURST_WINDOW_SECONDS, burst=1
    )
    """10 searches per 2 s, evenly spaced: Pipedrive's window is rolling, so a bucket that
    let 10 through at once and refilled at 5/s would exceed it within the same 2 s."""
    max_rate_limit_wait: ClassVar[float] = 2.5
    """Long enough to wait out a full burst window (2 s) and the next token in place."""
    max_candidates: ClassVar[int] = 5
    """Search results read in full and offered to the identity resolver."""

    def __init__(
        self,
        context: SinkContext[PipedriveConnectionConfig],
        *,
        search_rate_limit: RateLimit | None = None,
    ) -> None:
        super().__init__(context)
        self._search_limit = search_rate_limit or self.search_rate_limit
        self._http: httpx.AsyncClient | None = None
        self._client: PipedriveClient | None = None
        self._index: CandidateIndex | None = None
        self._concurrency = asyncio.Semaphore(_DEFAULT_MAX_CONCURRENCY)

    # -- lifecycle ------------------------------------------------------------------------

    def contract_error(
        self, record: OutboundRecord, violation: ContractViolation
    ) -> ConnectorError | None:
        """The ``PermanentError`` the ``parse_*`` functions of :mod:`connectors.pipedrive.payloads`
        give a record that fails its model."""
        return payloads.contract_error(violation)

    async def setup(self) -> None:
        """Called once before the first write: check the config, size the limits, open the client.

        Raises ``PermanentError`` when the config is not a Pipedrive config, a URL is not
        allowed by the context's network policy, or the context has no identity resolver
        (the connection cannot be used).
        """
        config: object = self.context.config
        if not isinstance(config, PipedriveConnectionConfig):
            raise PermanentError("connection config is not a pipedrive config", partner=self.name)
        if self.context.identity is None:
            raise PermanentError("pipedrive needs an identity resolver", partner=self.name)
        self._check_urls(config)
        clock = self.context.clock
        limit = (
            RateLimit(rate=config.rate_limit_per_second, per_seconds=1)
            if config.rate_limit_per_second is not None
            else RateLimit(rate=config.burst_per_window, per_seconds=BURST_WINDOW_SECONDS)
        )
        concurrency = config.max_concurrency or _DEFAULT_MAX_CONCURRENCY
        self._concurrency = asyncio.Semaphore(concurrency)
        self._http = self.context.http_client_factory(
            timeout_seconds=config.timeout_seconds,
            max_connections=concurrency,
            headers={"accept": "application/json"},
        )
        log_fields = self.context.log_fields()
        auth: TokenSource
        if isinstance(config.auth, PipedriveOAuth):
            auth = PipedriveOAuthSource(
                config.auth,
                http_client=self._http,
                allow_private_networks=self.context.allow_private_networks,
                **options_from(self.context),
            )
        else:
            auth = ApiTokenAuth(config.auth.token)
        self._client = PipedriveClient(
            http_client=self._http,
            auth=auth,
            base_url=lambda: config.api_base_url(oauth_api_domain=auth.api_domain),
            burst=limit.bucket(clock=clock.monotonic),
            search_bucket=self._search_limit.bucket(clock=clock.monotonic),
            budget=DailyBudget(config.effective_daily_budget, clock=clock.time),
            clock=clock,
            max_wait=self.max_rate_limit_wait,
            logger=self.context.logger,
            log_fields=log_fields,
        )
        if config.candidate_index.enabled:
            self._index = CandidateIndex(
                self._client,
                settings=config.candidate_index,
                domain_field_key=config.domain_field_key,
                queast_id_field_key=config.queast_id_field_key,
                clock=clock,
                logger=self.context.logger,
                log_fields=log_fields,
            )

    def _check_urls(self, config: PipedriveConnectionConfig) -> None:
        urls: list[tuple[str, HttpUrl | None]] = [("base_url", config.base_url)]
        if isinstance(config.auth, PipedriveOAuth):
            urls += [("api_domain", config.auth.api_domain), ("token_url", config.auth.token_url)]
        for what, url in urls:
            if url is None:
                continue
            try:
                check_partner_url(
                    url, allow_private_networks=self.context.allow_private_networks, what=what
                )
            except ValueError as exc:
                raise PermanentError(f"{what} not allowed", partner=self.name) from exc

    async def close(self) -> None:
        """Called once at shutdown: close the HTTP client."""
        if self._http is not None:
            await self._http.aclose()
        self._http = None
        self._client = None
        self._index = None

    @property
    def client(self) -> PipedriveClient:
        """The client (after ``setup``): its budget and buckets, for metrics and tests."""
        if self._client is None:
            msg = "PipedriveSink.setup() must be called before write()"
            raise RuntimeError(msg)
        return self._client

    @property
    def candidate_index(self) -> CandidateIndex | None:
        """The candidate index (after ``setup``; ``None`` when the connection turns it off)."""
        return self._index

    @property
    def identity(self) -> IdentityResolver:
        identity = self.context.identity
        if identity is None:
            msg = "PipedriveSink.setup() must be called before write()"
            raise RuntimeError(msg)
        return identity

    # -- writing --------------------------------------------------------------------------

    async def write(self, batch: Sequence[OutboundRecord]) -> BatchOutcome:
        """Send the single record of ``batch``.

        An ambiguous identity match is reported for the record (``HeldForReviewError``);
        any other failure is raised as its outcome.
        """
        delivered: list[DeliveryResult] = []
        failed: list[RecordFailure] = []
        for record in batch:
            outcome = await self._send(record)
            if isinstance(outcome, RecordFailure):
                failed.append(outcome)
            else:
                delivered.append(outcome)
        return BatchOutcome(delivered=tuple(delivered), failed=tuple(failed))

    async def _send(self, record: OutboundRecord) -> DeliveryResult | RecordFailure:
        fields = record.log_fields()
        attempt = Attempt(self.context.clock, self.context.logger, fields)
        try:
            async with self._concurrency:
                with carrying((record,)):
                    written = await self._dispatch(record)
        except HeldForReviewError as held:
            self.context.logger.info(
                "pipedrive.identity.held", extra={**fields, **held.log_fields()}
            )
            return RecordFailure(record.delivery_id, held)
        except ConnectorError as error:
            attempt.failed(error)
            raise
        return attempt.delivered(
            record.delivery_id, written.status_code, partner_object_id=written.partner_object_id
        )

    async def _dispatch(self, record: OutboundRecord) -> _Written:
        kind = payloads.classify(record)
        if kind is payloads.RecordKind.COMPANY:
            return await self._upsert_company(record)
        if kind is payloads.RecordKind.PERSON:
            return await self._upsert_person(record)
        if kind is payloads.RecordKind.SIGNAL:
            signal = payloads.parse_signal(record)
            return await self._add_note(signal.company_id, payloads.signal_note_html(signal))
        if kind is payloads.RecordKind.JOB_AD:
            job_ad = payloads.parse_job_ad(record)
            return await self._add_note(job_ad.company_id, payloads.job_ad_note_html(job_ad))
        if kind is payloads.RecordKind.COMPANY_DELETION:
            company = payloads.parse_company(record)
            return await self._delete(EntityKind.COMPANY, company.company_id)
        person = payloads.parse_person(record)
        return await self._delete(EntityKind.PERSON, person.person_id)

    # -- companies ------------------------------------------------------------------------

    async def _upsert_company(self, record: OutboundRecord) -> _Written:
        company = payloads.parse_company(record)
        config = self.config

        def body(*, for_create: bool) -> dict[str, Any]:
            return payloads.organization_body(
                company,
                domain_field_key=config.domain_field_key,
                queast_id_field_key=config.queast_id_field_key,
                for_create=for_create,
            )

        target = await self._resolve(
            EntityKind.COMPANY,
            company.company_id,
            record,
            company,
            lambda: self._company_candidates(company),
        )
        if target is None:
            written = await self._create(
                EntityKind.COMPANY, company.company_id, body(for_create=True)
            )
        else:
            written = await self._update(
                PipedriveObject.ORGANIZATION, target, body(for_create=False)
            )
        if written.partner_object_id is not None:
            await self._associate_waiting(company.company_id, int(written.partner_object_id))
        return written

    async def _associate_waiting(self, company_id: str, org_id: int) -> None:
        """Set ``org_id`` on the people written before this company was linked."""
        waiting = await self.identity.people_waiting(company_id)
        done: list[str] = []
        for person_id, partner_id in waiting.items():
            await self._update(
                PipedriveObject.PERSON, _object_id(partner_id, "person"), {"org_id": org_id}
            )
            done.append(person_id)
        if done:
            await self.identity.associated(company_id, done)

    async def _company_candidates(self, company: CompanyRecord) -> list[IdentityCandidate]:
        """Organizations that may be ``company``.

        With the index: those with its domain *and* those with its name, both free, so the
        name strategy can link an organization a user made without the domain. With search
        (the fallback): the domain's, else the name's, one search per company.
        """
        lookups = payloads.organization_lookups(company)
        if not lookups:
            return []
        if self._index is not None:
            indexed = await self._index.find_any(
                PipedriveObject.ORGANIZATION, lookups, limit=self.max_candidates
            )
            if indexed is not None:
                return indexed
        term, fields = lookups[0]
        config = self.config
        keys = [k for k in (config.domain_field_key, config.queast_id_field_key) if k]
        candidates: list[IdentityCandidate] = []
        for data in await self._search_and_read(PipedriveObject.ORGANIZATION, term, fields, keys):
            candidate = payloads.organization_candidate(
                data,
                domain_field_key=config.domain_field_key,
                queast_id_field_key=config.queast_id_field_key,
            )
            if candidate is not None:
                candidates.append(candidate)
        return candidates

    # -- persons --------------------------------------------------------------------------

    async def _upsert_person(self, record: OutboundRecord) -> _Written:
        person = payloads.parse_person(record)
        org_id: int | None = None
        if person.company_id:
            linked_org = await self.identity.linked(EntityKind.COMPANY, person.company_id)
            org_id = None if linked_org is None else _object_id(linked_org, "organization")
        written = await self._write_person(record, person, org_id)
        if person.company_id and org_id is None and written.partner_object_id is not None:
            # The company is not linked yet: whichever of the two is written second sets
            # the person's organization (see connectors.base.identity).
            late = await self.identity.wait_for_company(person.company_id, person.person_id)
            if late is not None:
                await self._update(
                    PipedriveObject.PERSON,
                    int(written.partner_object_id),
                    {"org_id": _object_id(late, "organization")},
                )
                await self.identity.associated(person.company_id, [person.person_id])
        return written

    async def _write_person(
        self, record: OutboundRecord, person: PersonRecord, org_id: int | None
    ) -> _Written:
        config = self.config
        target = await self._resolve(
            EntityKind.PERSON,
            person.person_id,
            record,
            person,
            lambda: self._person_candidates(person),
        )
        if target is None:
            body = payloads.person_body(
                person,
                org_id=org_id,
                queast_id_field_key=config.queast_id_field_key,
                for_create=True,
            )
            return await self._create(EntityKind.PERSON, person.person_id, body)
        current = await self.client.get(PipedriveObject.PERSON, target)
        if current is None:
            self._forget(PipedriveObject.PERSON, target)
            raise _gone(PipedriveObject.PERSON)
        existing = current.data.get("emails") if isinstance(current.data, dict) else None
        body = payloads.person_body(
            person,
            org_id=org_id,
            queast_id_field_key=config.queast_id_field_key,
            for_create=False,
            existing_emails=[e for e in existing or [] if isinstance(e, dict)],
        )
        return await self._update(PipedriveObject.PERSON, target, body)

    async def _person_candidates(self, person: PersonRecord) -> list[IdentityCandidate]:
        emails = payloads.person_emails(person)
        if not emails:
            return []
        indexed = await self._indexed(PipedriveObject.PERSON, emails[0], "email")
        if indexed is not None:
            return indexed
        key = self.config.queast_id_field_key
        found = await self._search_and_read(
            PipedriveObject.PERSON, emails[0], "email", [key] if key else []
        )
        candidates: list[IdentityCandidate] = []
        for data in found:
            candidate = payloads.person_candidate(data, queast_id_field_key=key)
            if candidate is not None:
                candidates.append(candidate)
        return candidates

    # -- shared steps ---------------------------------------------------------------------

    async def _resolve(
        self,
        kind: EntityKind,
        queast_id: str,
        record: OutboundRecord,
        entity: EntityRecord,
        find_candidates: Callable[[], Awaitable[list[IdentityCandidate]]],
    ) -> int | None:
        """The Pipedrive id to update, or ``None`` to create; see the identity module doc.

        ``entity`` is ``record``'s typed contract record, which the resolver matches.
        Raises ``HeldForReviewError`` for an ambiguous match (nothing is written).
        """
        linked = await self.identity.linked(kind, queast_id)
        if linked is not None:
            return _object_id(linked, kind.value)
        candidates = await find_candidates()
        decision = await self.identity.decide(kind, queast_id, entity, candidates)
        if decision.outcome is IdentityOutcome.LINKED:
            if decision.partner_object_id is None:
                raise PermanentError("identity decision without an object id", partner=self.name)
            self.context.logger.info(
                "pipedrive.identity.matched",
                extra={
                    **record.log_fields(),
                    "entity_kind": kind.value,
                    "strategy": decision.strategy,
                    "partner_object_id": decision.partner_object_id,
                },
            )
            return _object_id(decision.partner_object_id, kind.value)
        if decision.outcome is IdentityOutcome.AMBIGUOUS:
            raise HeldForReviewError(
                f"{kind.value} match is ambiguous ({len(candidates)} candidates)",
                partner=self.name,
            )
        return None

    async def _indexed(
        self, kind: PipedriveObject, term: str, fields: str
    ) -> list[IdentityCandidate] | None:
        """Candidates from the index; ``None`` when it is off or cannot answer (search)."""
        if self._index is None:
            return None
        return await self._index.find(kind, term, fields=fields, limit=self.max_candidates)

    def _forget(self, kind: PipedriveObject, object_id: int) -> None:
        if self._index is not None:
            self._index.forget(kind, object_id)

    async def _search_and_read(
        self, kind: PipedriveObject, term: str, fields: str, custom_fields: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Search ``kind`` for ``term`` and read the first :attr:`max_candidates` hits.

        Search results carry custom field values without their keys, so each hit is read
        to see which field matched (and the Queast id field).
        """
        found = await self.client.search(
            kind, term, fields=fields, exact_match=True, limit=self.max_candidates
        )
        objects: list[dict[str, Any]] = []
        for object_id in payloads.search_item_ids(found.data)[: self.max_candidates]:
            read = await self.client.get(kind, object_id, custom_fields=custom_fields)
            if read is not None and isinstance(read.data, dict):
                objects.append(read.data)
        return objects

    async def _create(self, kind: EntityKind, queast_id: str, body: dict[str, Any]) -> _Written:
        collection = _KIND_OBJECT[kind]
        created = await self.client.create(collection, body)
        if self._index is not None:
            self._index.observe(collection, created.data)
        object_id = str(created.data["id"])
        await self.identity.link(kind, queast_id, object_id, strategy="created")
        return _Written(created.status_code, object_id)

    async def _update(
        self, collection: PipedriveObject, object_id: int, body: dict[str, Any]
    ) -> _Written:
        if not body:
            return _Written(_NOTHING_TO_DO_STATUS, str(object_id))
        updated = await self.client.update(collection, object_id, body)
        if updated is None:
            self._forget(collection, object_id)
            raise _gone(collection)
        if self._index is not None:
            self._index.observe(collection, updated.data)
        return _Written(updated.status_code, str(object_id))

    async def _add_note(self, company_id: str, content: str) -> _Written:
        linked = await self.identity.linked(EntityKind.COMPANY, company_id)
        if linked is None:
            raise TransientError("organization not linked yet", partner=self.name)
        org_id = _object_id(linked, "organization")
        note = await self.client.add_note(payloads.note_body(content, org_id=org_id))
        return _Written(note.status_code, str(note.data["id"]))

    async def _delete(self, kind: EntityKind, queast_id: str) -> _Written:
        linked = await self.identity.linked(kind, queast_id)
        if linked is None:
            return _Written(_NOTHING_TO_DO_STATUS, None)
        object_id = _object_id(linked, kind.value)
        deleted = await self.client.delete(_KIND_OBJECT[kind], object_id)
        self._forget(_KIND_OBJECT[kind], object_id)
        return _Written(404 if deleted is None else deleted.status_code, str(object_id))


def _object_id(value: str, what: str) -> int:
    """A stored Pipedrive id as the integer the API wants; ``PermanentError`` if it is not."""
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or int(text) <= 0:
        raise PermanentError(f"linked {what} id is not a pipedrive id", partner="pipedrive")
    return int(text)


def _gone(collection: PipedriveObject) -> PermanentError:
    return PermanentError(
        f"linked {collection.value} object no longer exists in pipedrive",
        partner="pipedrive",
        status_code=404,
    )

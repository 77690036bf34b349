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
  search bodies as fit 3,000 characters (:func:`~connectors.hubspot.search.search_requests`),
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

Where each part lives: :mod:`~connectors.hubspot.run` (grouping and outcomes),
:mod:`~connectors.hubspot.writer` (the calls every step makes), the steps in
:mod:`~connectors.hubspot.entities` (with :mod:`~connectors.hubspot.lookup` for first-link
lookups), :mod:`~connectors.hubspot.associations`, :mod:`~connectors.hubspot.deletions` and
:mod:`~connectors.hubspot.notes_writer`; the HTTP calls and pacing in
:mod:`~connectors.hubspot.client`. This module holds the sink's lifecycle and the order of
the steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import httpx

from connectors.base.attempts import ms_since
from connectors.base.context import SinkContext
from connectors.base.contract import ContractViolation
from connectors.base.errors import BackpressureError, ConnectorError, PermanentError
from connectors.base.identity import EntityKind, IdentityResolver
from connectors.base.ratelimit import RateLimit
from connectors.base.sink import BatchingSink, BatchOutcome, OutboundRecord
from connectors.hubspot.associations import associate
from connectors.hubspot.auth import token_source_for
from connectors.hubspot.client import HubSpotClient, HubSpotRateLimiter, SearchBatcher
from connectors.hubspot.config import HubSpotConnectionConfig, limits_for
from connectors.hubspot.deletions import delete
from connectors.hubspot.entities import write_entities
from connectors.hubspot.exports import invalid_payload
from connectors.hubspot.notes_writer import write_notes
from connectors.hubspot.run import Run, group_batch
from connectors.hubspot.search import search_properties
from connectors.hubspot.writer import OBJECT_TYPES, Writer

__all__ = ["HubSpotSink"]


class HubSpotSink(BatchingSink[HubSpotConnectionConfig]):
    """Delivers contract records to one tenant's HubSpot account; see the module docstring.

    ``setup`` checks the config (``base_url`` over plain HTTP only with
    ``allow_private_networks``) and that the context carries an identity resolver, sizes
    the rate limiter from the tier and opens the HTTP client; ``close`` closes it.
    An OAuth connection keeps its renewed grants in the context's ``grant_store`` (see
    :mod:`connectors.base.oauth`).

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
        max_rate_limit_wait: float | None = None,
        max_search_wait: float | None = None,
    ) -> None:
        super().__init__(context)
        self._max_wait = (
            self.max_rate_limit_wait if max_rate_limit_wait is None else max_rate_limit_wait
        )
        self._max_search_wait = self.max_search_wait if max_search_wait is None else max_search_wait
        self._http: httpx.AsyncClient | None = None
        self._client: HubSpotClient | None = None
        self._identity: IdentityResolver | None = None
        self._searches: dict[EntityKind, SearchBatcher] = {}
        self._writer: Writer | None = None

    @property
    def client(self) -> HubSpotClient:
        """The HubSpot client (after ``setup``)."""
        if self._client is None:
            msg = "HubSpotSink.setup() must be called before write()"
            raise RuntimeError(msg)
        return self._client

    def contract_error(
        self, record: OutboundRecord, violation: ContractViolation
    ) -> ConnectorError | None:
        """The ``PermanentError`` :func:`~connectors.hubspot.payloads.export_for` gives a record
        that fails its model: the event type and at most five offending fields."""
        return PermanentError(str(invalid_payload(record.event_type, violation)), partner=self.name)

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
            tokens=token_source_for(config, http_client=self._http, context=context),
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
            for kind, object_type in OBJECT_TYPES.items()
        }
        self._writer = Writer(context, self._client, self._identity, self._searches, self.name)

    async def close(self) -> None:
        """Called once at shutdown: stop the shared searches, close the HTTP client."""
        for searches in self._searches.values():
            await searches.close()
        self._searches = {}
        self._writer = None
        if self._http is not None:
            await self._http.aclose()
        self._http = None
        self._client = None

    # -- write --------------------------------------------------------------------------

    async def write(self, batch: Sequence[OutboundRecord]) -> BatchOutcome:
        """Write ``batch``; per-record outcomes, never a raised ``ConnectorError``."""
        client = self.client
        writer = self._writer
        if writer is None:  # pragma: no cover - set with the client
            msg = "HubSpotSink.setup() must be called before write()"
            raise RuntimeError(msg)
        clock = self.context.clock
        run = Run(records=batch, started=clock.monotonic(), monotonic=clock.monotonic)
        quota = client.quota_error()
        wait = client.limiter.peek("burst")
        if quota is not None:
            run.stop = quota
        elif wait > self._max_wait:
            run.stop = BackpressureError(
                "burst rate limit wait too long", retry_after=wait, partner=self.name
            )
        else:
            companies, people, deletions, notes = group_batch(
                run,
                batch,
                queast_id_property=self.config.queast_id_property,
                partner=self.name,
            )
            await write_entities(writer, run, EntityKind.COMPANY, companies)
            await write_entities(writer, run, EntityKind.PERSON, people)
            await associate(writer, run, companies, people)
            await delete(writer, run, deletions)
            await write_notes(writer, run, notes)
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
                "duration_ms": ms_since(run.started, clock),
            },
        )
        return outcome

"""The calls every step of a HubSpot write makes, on behalf of its groups of records.

A :class:`Writer` holds what one connection's steps share (the HubSpot client, the
identity resolver, the shared searches, the sink's context) and the four ways a step
talks to the outside:

- :meth:`Writer.call`: one HubSpot request for some groups. The request carries those
  groups' records (their correlation ids, :mod:`connectors.base.tracing`); a failure
  fails them, and stops the run when it concerns the connection (a deferral stops it
  without failing anyone);
- :meth:`Writer.identity_call`: one identity-resolver call for one group; a failure fails
  that group only;
- :meth:`Writer.linked` / :meth:`Writer.link`: read a link (cached for the write) and
  record one the connector made;
- :meth:`Writer.settle`: turn a batch write's per-input outcomes into the groups' results.

The steps themselves live in :mod:`~connectors.hubspot.entities` (companies and people,
with :mod:`~connectors.hubspot.lookup`), :mod:`~connectors.hubspot.associations`,
:mod:`~connectors.hubspot.deletions` and :mod:`~connectors.hubspot.notes_writer`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from connectors.base.context import SinkContext
from connectors.base.errors import ConnectorError
from connectors.base.identity import EntityKind, IdentityResolver
from connectors.base.tracing import carrying
from connectors.hubspot.client import (
    BatchWriteResponse,
    HubSpotClient,
    ObjectType,
    RequestDeferred,
    SearchBatcher,
)
from connectors.hubspot.config import HubSpotConnectionConfig
from connectors.hubspot.exports import CompanyWrite, Export, PersonWrite
from connectors.hubspot.run import Group, Run, is_request_scoped

__all__ = ["IDENTITY_LOOKUPS_AT_ONCE", "OBJECT_TYPES", "Writer"]

IDENTITY_LOOKUPS_AT_ONCE: Final[int] = 8
"""Identity calls a step makes at a time: four lanes of 100 records must not take a Redis
connection each (the service's pool is finite)."""
OBJECT_TYPES: Final[Mapping[EntityKind, ObjectType]] = {
    EntityKind.COMPANY: "companies",
    EntityKind.PERSON: "contacts",
}
_T = TypeVar("_T")
_E = TypeVar("_E", bound=Export)


@dataclass(slots=True)
class Writer:
    """What the steps of one connection's writes share; see the module docstring."""

    context: SinkContext[HubSpotConnectionConfig]
    client: HubSpotClient
    resolver: IdentityResolver
    searches: Mapping[EntityKind, SearchBatcher]
    partner: str = "hubspot"

    @property
    def config(self) -> HubSpotConnectionConfig:
        return self.context.config

    async def call(self, run: Run, groups: Sequence[Group], call: Awaitable[_T]) -> _T | None:
        """Await one HubSpot call for ``groups``; on failure record it and return ``None``."""
        try:
            with carrying([r for g in groups for r in g.records]):
                return await call
        except (RequestDeferred, ConnectorError) as error:
            self.failed(run, groups, error)
        return None

    def failed(
        self, run: Run, groups: Sequence[Group], error: RequestDeferred | ConnectorError
    ) -> None:
        """A call for ``groups`` failed: fail them, and stop the run if it concerns the
        connection (a deferral stops it without failing anyone: all come back later)."""
        if isinstance(error, RequestDeferred):
            run.stop = error.error
            return
        for group in groups:
            run.fail(group, error)
        if not is_request_scoped(error):
            run.stop = error
        self.context.logger.warning(
            "hubspot.request.failed",
            extra={**self.context.log_fields(), **error.log_fields(), "records": len(groups)},
        )

    async def identity_call(self, run: Run, group: Group, call: Awaitable[_T]) -> _T | None:
        """Await one identity call for ``group``; on failure fail it and return ``None``."""
        try:
            return await call
        except ConnectorError as error:
            run.fail(group, error)
            return None

    async def linked(self, run: Run, kind: EntityKind, queast_id: str) -> str | None:
        """The linked object id of an entity, cached for the write."""
        cached = run.links.get((kind, queast_id))
        if cached is not None:
            return cached
        found = await self.resolver.linked(kind, queast_id)
        if found is not None:
            run.links[(kind, queast_id)] = found
        return found

    async def linked_exports(
        self,
        run: Run,
        groups: Sequence[Group],
        export_type: type[_E],
        target: Callable[[_E], tuple[EntityKind, str]],
    ) -> AsyncIterator[tuple[Group, _E, str | None]]:
        """For each open group whose export is an ``export_type``: the group, its export and
        the object id its ``target`` entity is linked to (``None``: not linked). A group
        whose identity call failed is failed and skipped."""
        for group in run.open(groups):
            export = group.export
            if not isinstance(export, export_type):
                continue
            kind, queast_id = target(export)
            object_id = await self.identity_call(run, group, self.linked(run, kind, queast_id))
            if group.winner.delivery_id not in run.results:
                yield group, export, object_id

    async def link(self, kind: EntityKind, queast_id: str, object_id: str) -> bool:
        """Record the link to an object the connector created; ``True`` once recorded."""
        await self.resolver.link(kind, queast_id, object_id, strategy="created")
        return True

    def settle(
        self, run: Run, kind: EntityKind, groups: Sequence[Group], response: BatchWriteResponse
    ) -> None:
        """Deliver or fail each of ``groups`` from its input's outcome in ``response``."""
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

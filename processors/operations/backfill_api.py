"""HTTP endpoints of backfills (:mod:`processors.operations.backfill`).

::

    POST /v1/tenants/{tenant_id}/backfills                         202  {"backfill_id", ...}
    GET  /v1/tenants/{tenant_id}/backfills/{backfill_id}           200  status and counts
    POST /v1/tenants/{tenant_id}/backfills/{backfill_id}/cancel    202  cancel requested

The same rules as the replay routes (:mod:`.replay_api`, code shared in :mod:`.run_routes`):
a ``tenant_admin`` of that tenant or a ``platform_admin`` (401/403 before the body is read); a
backfill id of another tenant, of another kind of run, or expired is 404 ``backfill_not_found``.

The POST body is ``connector`` (optional: every connection of the tenant without it), where to
start, ``since`` (ISO 8601 with a zone) or ``from_offset`` (0 or more, on the tenant's
partition of the domain events), not both, an optional ``until`` and ``dry_run``. A time
without a zone, both starts or neither, a negative offset, an unknown connector or one the
tenant has no connection of, a tenant off the allowlist, ``until`` not after ``since``, or a
window from ``since`` over ``QI_REPLAY_MAX_WINDOW_SECONDS`` is 422 with ``details`` naming the
field; nothing is started. Another backfill of the tenant's connection (or of all its
connections) still running is 409 ``backfill_active``. A tenant may start
``QI_REPLAY_RUNS_PER_HOUR`` backfills (dry runs included) in any hour, counted apart from its
replays: past that, 429 ``rate_limited`` with ``Retry-After``; a refused request does not count.

The run is carried out by a task of the API process, the Kafka work in a worker thread: the POST
answers once the run is recorded (``queued``); the GET follows it (``running``, then
``completed``, ``cancelled`` or ``failed``). ``exported`` counts the exports appended (a dry
run: that would be), ``invalid`` the events the live path dead-lettered, ``unrouted`` those no
connection takes today; ``delivered``, ``failed`` and ``skipped`` grow as the workers deliver
the exports (``skipped``: already delivered, or older than the partner's version). A run whose
API process died reads ``failed`` (``stale: ...``) after ``QI_REPLAY_HEARTBEAT_STALE_SECONDS``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

from fastapi import Depends, Path, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from processors.auth import TenantAccess, TenantId
from processors.operations.backfill import KIND, BackfillRequest, BackfillService
from processors.operations.reinject import RUN_ID
from processors.operations.run_routes import RunRoutes, run_fields, run_service
from processors.operations.runs import ALL_CONNECTORS, RunRecord, RunStatus

__all__ = ["BackfillBody", "BackfillOut", "get_backfill_service", "router"]

BackfillId = Annotated[str, Path(pattern=RUN_ID.pattern, examples=["bf_3f2a"])]

_ROUTES: Final = RunRoutes(KIND, "backfills")
router = _ROUTES.router


class BackfillBody(BaseModel):
    """What to backfill: the tenant's domain events from a time or an offset, mapped again."""

    model_config = ConfigDict(extra="forbid")

    connector: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        examples=["webhook"],
        description="only this connection's exports (every connection of the tenant if absent)",
    )
    since: AwareDatetime | None = Field(default=None, description="first event time")
    from_offset: int | None = Field(
        default=None, ge=0, description="first offset of the tenant's partition (not with since)"
    )
    until: AwareDatetime | None = Field(
        default=None, description="last event time (default: the end when the run starts)"
    )
    dry_run: bool = False


class BackfillOut(BaseModel):
    """A backfill run: what was asked, where it is, and its counts."""

    backfill_id: str
    tenant_id: str
    connector: str | None = Field(description="null: every connection of the tenant")
    status: RunStatus
    dry_run: bool
    since: datetime | None
    until: datetime | None
    from_offset: int | None
    matched: int = Field(description="domain events of the tenant read")
    exported: int = Field(description="exports appended (a dry run: that would be)")
    invalid: int = Field(description="events the live path dead-lettered (not again)")
    unrouted: int = Field(description="events no connection takes today")
    delivered: int = Field(description="exports delivered so far")
    failed: int = Field(description="exports dead-lettered")
    skipped: int = Field(description="exports skipped (already delivered, or an older version)")
    created_at: datetime
    finished_at: datetime | None
    error: str | None

    @classmethod
    def from_run(cls, run: RunRecord) -> BackfillOut:
        return cls(
            backfill_id=run.run_id,
            connector=None if run.connector == ALL_CONNECTORS else run.connector,
            **run_fields(cls, run, exclude={"connector"}),
        )


get_backfill_service = run_service(BackfillService)

Service = Annotated[BackfillService, Depends(get_backfill_service)]


@_ROUTES.starts("Map the tenant's past domain events again with today's connections")
async def start_backfill(
    tenant_id: TenantId,
    body: BackfillBody,
    actor: TenantAccess,
    service: Service,
    request: Request,
) -> BackfillOut:
    backfill = BackfillRequest(tenant_id=tenant_id, **body.model_dump())
    run = await _ROUTES.start(
        request,
        service,
        backfill,
        tenant_id=tenant_id,
        actor=actor,
        start=lambda: service.start(backfill, requested_by=actor.sub),
    )
    return BackfillOut.from_run(run)


@_ROUTES.reads("A backfill's status and counts")
async def get_backfill(
    tenant_id: TenantId, backfill_id: BackfillId, _actor: TenantAccess, service: Service
) -> BackfillOut:
    return BackfillOut.from_run(await _ROUTES.own(service.store, tenant_id, backfill_id))


@_ROUTES.cancels("Stop a running backfill between batches (exports already made stay)")
async def cancel_backfill(
    tenant_id: TenantId, backfill_id: BackfillId, actor: TenantAccess, service: Service
) -> BackfillOut:
    run = await _ROUTES.cancel(service.store, tenant_id, backfill_id, actor=actor)
    return BackfillOut.from_run(run)

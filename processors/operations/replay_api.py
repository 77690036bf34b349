"""HTTP endpoints of replays (:mod:`processors.operations.replay`).

::

    POST /v1/tenants/{tenant_id}/replays                         202  {"replay_id", "status", ...}
    GET  /v1/tenants/{tenant_id}/replays/{replay_id}             200  status and counts
    POST /v1/tenants/{tenant_id}/replays/{replay_id}/cancel      202  cancel requested

Access: a ``tenant_admin`` of that tenant or a ``platform_admin`` (401/403 before the body is
read, :class:`~processors.auth.routes.TenantRoute`). A replay id of another tenant, or one
that expired, is 404 ``replay_not_found``, the same answer as an id that never existed.

The POST body is ``connector``, ``since`` and ``until`` (ISO 8601 with a zone; a time without
one is 422), ``event_types`` and ``dry_run``. A window over the maximum, ``since`` not before
``until``, an unknown connector or event type, or a connector the tenant has no connection
delivering through, is 422 with ``details`` naming the field; nothing is started. Another
replay of the tenant's connection still running is 409 ``replay_active`` naming it. A tenant
may start ``QI_REPLAY_RUNS_PER_HOUR`` replays (dry runs included) in any hour: past that,
429 ``rate_limited`` with ``Retry-After`` (seconds); a request refused for another reason does
not count.

The run is carried out by a task of the API process (the Kafka reading in a worker thread):
the POST answers as soon as the run is recorded (``queued``), and the GET follows it
(``running``, then ``completed``, ``cancelled`` or ``failed``; ``delivered``, ``failed`` and
``skipped`` keep growing as the workers deliver the copies). If the API process dies
mid-run, the run stops beating: reading it after ``QI_REPLAY_HEARTBEAT_STALE_SECONDS`` marks it
``failed`` (``stale: ...``) and frees the connection for a new replay; the copies it queued
are delivered anyway. A dry run's GET carries its sample payloads for an hour.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

from fastapi import Depends, Path, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from processors.auth import TenantAccess, TenantId
from processors.operations.reinject import RUN_ID
from processors.operations.replay import KIND, ReplayRequest, ReplayService
from processors.operations.run_routes import RunRoutes, run_fields, run_service
from processors.operations.runs import RunRecord, RunStatus

__all__ = ["ReplayBody", "ReplayOut", "get_replay_service", "router"]

ReplayId = Annotated[str, Path(pattern=RUN_ID.pattern, examples=["rp_3f2a"])]

_ROUTES: Final = RunRoutes(KIND, "replays")
router = _ROUTES.router


class ReplayBody(BaseModel):
    """What to replay: one connector's artifacts of the tenant, in a window."""

    model_config = ConfigDict(extra="forbid")

    connector: str = Field(min_length=1, max_length=64, examples=["webhook"])
    since: AwareDatetime | None = Field(
        default=None, description="start of the window (default: an hour before `until`)"
    )
    until: AwareDatetime | None = Field(default=None, description="end of the window (now)")
    event_types: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=20, description="only these event types (all if empty)"
    )
    dry_run: bool = False


class ReplayOut(BaseModel):
    """A replay run: what was asked, where it is, and its counts."""

    replay_id: str
    tenant_id: str
    connector: str
    status: RunStatus
    dry_run: bool
    since: datetime | None
    until: datetime | None
    event_types: list[str]
    matched: int = Field(description="distinct artifacts of the tenant in the window")
    queued: int = Field(description="copies sent to be delivered again")
    delivered: int = Field(description="copies delivered so far")
    failed: int = Field(description="copies dead-lettered")
    skipped: int = Field(description="copies skipped (an older version than the partner's)")
    duplicates: int
    malformed: int
    created_at: datetime
    finished_at: datetime | None
    error: str | None
    samples: list[dict[str, object]] = Field(
        default_factory=list, description="a dry run's sample payloads (up to 5, for an hour)"
    )

    @classmethod
    def from_run(cls, run: RunRecord, samples: list[dict[str, object]] | None = None) -> ReplayOut:
        return cls(
            replay_id=run.run_id,
            samples=samples or [],
            **run_fields(cls, run, exclude={"samples"}),
        )


get_replay_service = run_service(ReplayService)

Service = Annotated[ReplayService, Depends(get_replay_service)]


@_ROUTES.starts("Deliver the tenant's exported artifacts of a connector again")
async def start_replay(
    tenant_id: TenantId, body: ReplayBody, actor: TenantAccess, service: Service, request: Request
) -> ReplayOut:
    asked = body.model_dump(exclude={"event_types"})
    replay = ReplayRequest(
        tenant_id=tenant_id, event_types=tuple(body.event_types), requested_by=actor.sub, **asked
    )
    run = await _ROUTES.start(
        request,
        service,
        replay,
        tenant_id=tenant_id,
        actor=actor,
        start=lambda: service.start(replay),  # validates again: the connection may be gone
    )
    return ReplayOut.from_run(run)


@_ROUTES.reads("A replay's status and counts")
async def get_replay(
    tenant_id: TenantId, replay_id: ReplayId, _actor: TenantAccess, service: Service
) -> ReplayOut:
    run = await _ROUTES.own(service.store, tenant_id, replay_id)
    samples = await service.store.samples(run.run_id) if run.dry_run else []
    return ReplayOut.from_run(run, samples)


@_ROUTES.cancels("Stop a running replay (copies already queued are still delivered)")
async def cancel_replay(
    tenant_id: TenantId, replay_id: ReplayId, actor: TenantAccess, service: Service
) -> ReplayOut:
    run = await _ROUTES.cancel(service.store, tenant_id, replay_id, actor=actor)
    return ReplayOut.from_run(run)

"""What the HTTP routes of operator runs share (:mod:`.replay_api`, :mod:`.backfill_api`).

A run route answers the same way whatever the run: the start's errors in OpenAPI (409 for an
active run of the connection, 429 with ``Retry-After`` for the tenant's hourly rate), the rate
counted only for a run actually started (:func:`start_counted`), the run carried out by a task
of the API process kept referenced until it ends (:func:`run_in_background`), and a run of
another tenant, of another kind or expired answered 404 like one that never existed
(:func:`own_run`). Each kind names its own error codes (``replay_active``,
``backfill_not_found``, ...) and its own rate key (:meth:`RunStore.take_rate_slot`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import Request

from processors.errors import Conflict, NotFound, ServiceError, error_responses
from processors.operations.runs import ActiveRunError, RunRecord, RunStore

__all__ = [
    "RateLimited",
    "cancel_run",
    "not_found_responses",
    "own_run",
    "run_in_background",
    "start_counted",
    "start_responses",
]

logger = logging.getLogger(__name__)


class RateLimited(ServiceError):
    """429: the tenant started its allowed runs this hour; ``Retry-After`` says when next."""

    def __init__(self, retry_after: float, *, runs: str = "replays") -> None:
        seconds = max(1, int(retry_after + 0.999))
        super().__init__(
            429,
            "rate_limited",
            f"too many {runs} this hour; try again in {seconds}s",
            headers={"Retry-After": str(seconds)},
        )


def start_responses(kind: str, runs: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI error answers of a route that starts a run of ``kind`` (``runs``: plural)."""
    responses = error_responses(
        400,
        408,
        413,
        415,
        409,
        429,
        descriptions={
            409: f"`{kind}_active`: another {kind} of this connection is running",
            429: f"`rate_limited`: too many {runs} this hour; `Retry-After` says when to retry",
        },
    )
    responses[429]["headers"] = {
        "Retry-After": {
            "description": f"seconds until a {kind} may start",
            "schema": {"type": "integer"},
        }
    }
    return responses


def not_found_responses(kind: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI 404 of a route that reads one run of ``kind``."""
    return error_responses(
        descriptions={404: f"`{kind}_not_found`: no {kind} of this tenant has this id"}
    )


async def start_counted(
    store: RunStore,
    tenant_id: str,
    kind: str,
    *,
    per_hour: int,
    runs: str,
    start: Callable[[], Awaitable[RunRecord]],
) -> RunRecord:
    """Count a start against the tenant's hourly rate of ``kind``, then ``start()`` the run.

    :class:`RateLimited` past the rate (nothing started); 409 ``{kind}_active`` if ``start``
    finds an active run. Any refusal gives the counted start back.
    """
    slot = uuid.uuid4().hex
    wait = await store.take_rate_slot(tenant_id, kind, per_hour=per_hour, slot=slot)
    if wait is not None:
        raise RateLimited(wait, runs=runs)
    try:
        return await start()
    except ActiveRunError as exc:
        await store.release_rate_slot(tenant_id, kind, slot=slot)
        raise Conflict(str(exc), code=f"{kind}_active") from None
    except BaseException:
        await store.release_rate_slot(tenant_id, kind, slot=slot)
        raise


def run_in_background(
    request: Request,
    run: RunRecord,
    carry_out: Callable[[], Coroutine[Any, Any, object]],
    *,
    expected: tuple[type[BaseException], ...] = (),
) -> None:
    """Carry ``run`` out in a task of this process (kept referenced until it ends).

    ``expected`` errors were recorded on the run and logged by its service; any other (Redis
    gone mid-run: the heartbeat then marks the run stale) is logged ``{kind}.run.aborted``.
    """
    tasks: set[asyncio.Task[None]] = getattr(request.app.state, f"{run.kind}_tasks", set())
    setattr(request.app.state, f"{run.kind}_tasks", tasks)

    async def task_body() -> None:
        try:
            await carry_out()
        except expected:
            pass
        except Exception as exc:
            logger.warning(
                f"{run.kind}.run.aborted",
                extra={f"{run.kind}_id": run.run_id, "error": type(exc).__name__},
            )

    task = asyncio.create_task(task_body(), name=f"{run.kind}-{run.run_id}")
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def own_run(store: RunStore, tenant_id: str, run_id: str, kind: str) -> RunRecord:
    """The run ``run_id`` of ``tenant_id`` and ``kind``; 404 ``{kind}_not_found`` otherwise."""
    run = await store.get(run_id)
    if run is None or run.tenant_id != tenant_id or run.kind != kind:
        raise NotFound(f"{kind} not found", code=f"{kind}_not_found")
    return run


async def cancel_run(store: RunStore, tenant_id: str, run_id: str, kind: str) -> RunRecord:
    """Ask the tenant's run to stop (404 as :func:`own_run`); the run as it is now."""
    await own_run(store, tenant_id, run_id, kind)
    run = await store.request_cancel(run_id)
    if run is None:
        raise NotFound(f"{kind} not found", code=f"{kind}_not_found")
    return run

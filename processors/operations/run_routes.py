"""What the HTTP routes of operator runs share (:mod:`.replay_api`, :mod:`.backfill_api`).

A run route answers the same way whatever the run, so each kind's module makes one
:class:`RunRoutes` and declares its routes on it:

- its router, under ``/v1/tenants/{tenant_id}``, tenant access checked before the body is read;
- its three routes' paths, status codes and errors in OpenAPI (:meth:`RunRoutes.starts`,
  :meth:`RunRoutes.reads`, :meth:`RunRoutes.cancels`): 409 for an active run of the
  connection and 429 with ``Retry-After`` for the tenant's hourly rate on a start, 404 on
  a read or cancel;
- :meth:`RunRoutes.start`: the request validated first (a field refused is 422 with
  ``details`` naming it, nothing counted), then the start counted against the tenant's hourly
  rate, only for a run actually started (:func:`start_counted`), the run carried out by a task
  of the API process kept referenced until it ends (:func:`run_in_background`), and
  ``{kind}.run.requested`` logged;
- :meth:`RunRoutes.own`: a run of another tenant, of another kind or expired answered 404 like
  one that never existed; :meth:`RunRoutes.cancel` the same, then ``cancel_requested`` set and
  ``{kind}.run.cancel_requested`` logged.

Each kind names its own error codes (``replay_active``, ``backfill_not_found``, ...) and its own
rate key (:meth:`RunStore.take_rate_slot`); an answer shows the fields of the stored run it
names (:func:`run_fields`); the service is built per request over the app's Redis and settings
(:func:`run_service`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request, status
from fastapi.types import DecoratedCallable
from pydantic import BaseModel

from processors.appstate import api_state
from processors.auth import Principal
from processors.auth.routes import tenant_api_router
from processors.errors import Conflict, NotFound, ServiceError, ValidationFailed, error_responses
from processors.operations.errors import RunFailedError, RunInputError, RunRequestError
from processors.operations.run_service import RunService
from processors.operations.runs import ActiveRunError, RunRecord, RunStore

__all__ = [
    "RateLimited",
    "RunRoutes",
    "run_fields",
    "run_in_background",
    "run_service",
    "start_counted",
]

logger = logging.getLogger(__name__)

RequestT = TypeVar("RequestT")
ServiceT = TypeVar("ServiceT", bound=RunService[Any])


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


class RunRoutes:
    """The routes of one kind of run (``kind``; ``runs``: its plural, as errors name it)."""

    def __init__(self, kind: str, runs: str) -> None:
        self.kind = kind
        self.runs = runs
        self.router = tenant_api_router(tag="operations")
        self.not_found = error_responses(
            descriptions={404: f"`{kind}_not_found`: no {kind} of this tenant has this id"}
        )
        self.start_errors = error_responses(
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
        self.start_errors[429]["headers"] = {
            "Retry-After": {
                "description": f"seconds until a {kind} may start",
                "schema": {"type": "integer"},
            }
        }

    def starts(self, summary: str) -> Callable[[DecoratedCallable], DecoratedCallable]:
        """Declare the route that starts a run: ``POST /{runs}``, 202, the start's errors."""
        return self.router.post(
            f"/{self.runs}",
            status_code=status.HTTP_202_ACCEPTED,
            summary=summary,
            responses=self.start_errors,
        )

    def reads(self, summary: str) -> Callable[[DecoratedCallable], DecoratedCallable]:
        """Declare the route that reads a run: ``GET /{runs}/{{kind}_id}``, 404 if not own."""
        return self.router.get(self._one, summary=summary, responses=self.not_found)

    def cancels(self, summary: str) -> Callable[[DecoratedCallable], DecoratedCallable]:
        """Declare the route that cancels a run: ``POST /{runs}/{{kind}_id}/cancel``, 202."""
        return self.router.post(
            f"{self._one}/cancel",
            status_code=status.HTTP_202_ACCEPTED,
            summary=summary,
            responses=self.not_found,
        )

    @property
    def _one(self) -> str:
        return f"/{self.runs}/{{{self.kind}_id}}"

    async def start(
        self,
        request: Request,
        service: RunService[RequestT],
        asked: RequestT,
        *,
        tenant_id: str,
        actor: Principal,
        start: Callable[[], Awaitable[RunRecord]],
    ) -> RunRecord:
        """Validate ``asked``, then ``start()`` it counted (:func:`start_counted`) and carry it out.

        A field refused is 422 naming it (nothing counted). A run's own refusals and failures
        (:class:`RunRequestError`, :class:`RunFailedError`) are recorded on the run and logged
        by its service, so the background task lets them go quietly.
        """
        try:
            await service.validate(asked)
            run = await start_counted(
                service.store,
                tenant_id,
                self.kind,
                per_hour=service.limits.runs_per_hour,
                runs=self.runs,
                start=start,
            )
        except RunInputError as exc:
            details = [{"loc": ["body", exc.field], "msg": exc.message}]
            raise ValidationFailed(details=details) from None
        expected = (RunRequestError, RunFailedError)
        run_in_background(request, run, lambda: service.execute(run), expected=expected)
        logger.info(
            f"{self.kind}.run.requested",
            extra={f"{self.kind}_id": run.run_id, "tenant_id": tenant_id, "actor_sub": actor.sub},
        )
        return run

    async def own(self, store: RunStore, tenant_id: str, run_id: str) -> RunRecord:
        """The run ``run_id`` of ``tenant_id`` and this kind; 404 ``{kind}_not_found`` otherwise."""
        run = await store.get(run_id)
        if run is None or run.tenant_id != tenant_id or run.kind != self.kind:
            raise self._not_found()
        return run

    async def cancel(
        self, store: RunStore, tenant_id: str, run_id: str, *, actor: Principal
    ) -> RunRecord:
        """Ask the tenant's run to stop (404 as :meth:`own`); the run as it is now."""
        await self.own(store, tenant_id, run_id)
        run = await store.request_cancel(run_id)
        if run is None:
            raise self._not_found()
        logger.info(
            f"{self.kind}.run.cancel_requested",
            extra={f"{self.kind}_id": run_id, "tenant_id": tenant_id, "actor_sub": actor.sub},
        )
        return run

    def _not_found(self) -> NotFound:
        return NotFound(f"{self.kind} not found", code=f"{self.kind}_not_found")


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


def run_service(service: type[ServiceT]) -> Callable[[Request], ServiceT]:
    """A route dependency: the run service over the app's Redis and settings (``app.state``)."""

    def of_app(request: Request) -> ServiceT:
        redis, settings = api_state(request)
        return service(settings, redis)

    return of_app


def run_fields(out: type[BaseModel], run: RunRecord, *, exclude: set[str]) -> dict[str, Any]:
    """The fields of ``run`` that the answer model ``out`` shows under the same name."""
    shown = set(out.model_fields) & set(RunRecord.model_fields)
    return run.model_dump(include=shown - exclude)

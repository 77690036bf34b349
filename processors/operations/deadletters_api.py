"""HTTP view of a tenant's dead letters, and their redrive.

::

    GET  /v1/tenants/{tenant_id}/dead-letters?connector=&since=&error=&limit=&cursor=
         200 {"items": [row, ...], "next_cursor": str | null}
    POST /v1/tenants/{tenant_id}/dead-letters/redrive
         body {"connector", "since"?, "error"?, "ids"?, "dry_run"?}
         202 {"redrive_id", "matched", "queued", "dry_run", "from_original", "unrecoverable",
              "not_found"}
         (200 for a dry run)

Same access rule as the connections and the delivery records: a ``tenant_admin`` of that
tenant or a ``platform_admin`` (401/403 before anything is read, the body included). Rows are
those of :mod:`.deadletters`, oldest first, never with a payload. ``connector`` must be a
registered connector, ``since`` a time with a time zone and ``error`` an error kind
(:data:`~.deadletters.ERROR_KIND`); anything else is 422. ``cursor`` is the ``next_cursor`` of
the previous page (the next offset); anything else is 400 ``invalid_cursor``.

A redrive through the API is bounded: at most ``QI_DLQ_API_MAX_REDRIVE`` distinct records
(10,000 by default) per call. When more match, nothing is queued and the answer is 422
``too_many_dead_letters``, asking to narrow the filter (``since``, ``error``) or to run
``queast-integrations dlq redrive``, which has no bound. A connector whose dead-letter topic
does not exist has no dead letters (an empty page, nothing matched); a broker that does not
answer, or a topic that cannot be read to its end, is 503 ``service_unavailable``.
Some of them, picked one by one: ``ids`` lists dead letters by the ``id`` the listing shows
(``"<partition>:<offset>"``), 1 to 500 distinct ones; an id of another shape, an empty list or
more than 500 ids is 422 with ``details`` naming ``ids`` (nothing is read). Only the ids that
are dead letters of this tenant in this connector's topic (and match ``since`` and ``error``
when given) are sent; any other id (another tenant's dead letter, another partition, an offset
that holds none) is never sent and is counted in ``not_found``, the same whether it was forged
or has aged out, so the answer tells nothing of other tenants.

The redrive id and counts are in the answer and in the log (``operations.redrive.*``); every
delivery record of a redriven copy carries the redrive id as ``replay_id``.

Kafka is read and written by blocking clients; the endpoints run them in a worker thread.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Annotated, Any, Final

from confluent_kafka import KafkaException
from fastapi import Depends, Query, Request, Response, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.concurrency import run_in_threadpool

from processors.appstate import api_state
from processors.auth import TenantAccess, TenantId
from processors.auth.routes import tenant_api_router
from processors.errors import (
    ServiceUnavailable,
    ValidationFailed,
    error_responses,
    invalid_cursor,
)
from processors.operations.deadletters import (
    DEAD_LETTER_ID,
    ERROR_KIND,
    MAX_SELECTED,
    DeadLetterFilter,
    DeadLetterRow,
    DeadLetterService,
    NoSuchTopicError,
    RedriveReport,
    TooManyDeadLettersError,
    new_run_id,
    parse_dead_letter_id,
)
from processors.operations.history import HistoryError
from processors.operations.reinject import ReinjectError
from processors.paging import OffsetCursor, PageLimit, paged_responses
from processors.tenants.models import Connector
from processors.topics import TopicMap

__all__ = ["DeadLetterApiSettings", "get_dead_letter_api_settings", "router"]

_log = logging.getLogger(__name__)

_CURSOR: Final = re.compile(r"^[0-9]{1,19}$")


class DeadLetterApiSettings(BaseSettings):
    """Bounds of the dead-letter API (``QI_DLQ_API_*``)."""

    model_config = SettingsConfigDict(env_prefix="QI_DLQ_API_", frozen=True, extra="ignore")

    max_redrive: int = Field(default=10_000, ge=1, le=1_000_000)
    """The most distinct dead letters one ``POST …/redrive`` sends."""


@lru_cache(maxsize=1)
def get_dead_letter_api_settings() -> DeadLetterApiSettings:
    """Read from the environment once per process (tests override the dependency)."""
    return DeadLetterApiSettings()


def get_dead_letter_service(request: Request) -> DeadLetterService:
    """The service over the app's Kafka settings and topic prefix (``app.state``)."""
    _redis, settings = api_state(request)
    return DeadLetterService(settings.kafka, TopicMap(settings.topics.prefix))


Service = Annotated[DeadLetterService, Depends(get_dead_letter_service)]
ApiSettings = Annotated[DeadLetterApiSettings, Depends(get_dead_letter_api_settings)]
ErrorKind = Annotated[str, Field(pattern=ERROR_KIND.pattern, examples=["PermanentError"])]
DeadLetterId = Annotated[str, Field(pattern=DEAD_LETTER_ID.pattern, examples=["0:42"])]


class DeadLetterPageOut(BaseModel):
    """One page of dead letters, oldest first; ``next_cursor`` fetches the next one."""

    items: list[DeadLetterRow]
    next_cursor: str | None


class RedriveIn(BaseModel):
    """Which of the tenant's dead letters to send again."""

    model_config = ConfigDict(extra="forbid")

    connector: Connector
    since: AwareDatetime | None = None
    error: ErrorKind | None = None
    ids: list[DeadLetterId] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SELECTED,
        description="only these dead letters (the listing's `id`); all matching if absent",
    )
    dry_run: bool = False

    def selected(self) -> frozenset[tuple[int, int]] | None:
        """The ids as (partition, offset) pairs (``None``: no selection)."""
        return None if self.ids is None else frozenset(map(parse_dead_letter_id, self.ids))


class RedriveOut(BaseModel):
    """What a redrive did: ``matched`` distinct records, ``queued`` copies sent (none on a dry
    run), ``from_original`` whose payload came from their export, ``unrecoverable`` left."""

    redrive_id: str
    matched: int
    queued: int
    dry_run: bool
    from_original: int
    unrecoverable: int
    not_found: int = Field(
        default=0, description="selected ids that are no dead letter of the tenant (not sent)"
    )


router = tenant_api_router(
    tag="dead letters",
    descriptions={
        503: "`service_unavailable`: Kafka does not answer; "
        "`store_unavailable`: Redis does not answer",
    },
)


def _unavailable(exc: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(f"the dead letters cannot be read now: {type(exc).__name__}")


@router.get(
    "/dead-letters",
    summary="The tenant's dead letters of a connector, oldest first",
    responses=paged_responses(),
)
async def list_dead_letters(
    tenant_id: TenantId,
    _actor: TenantAccess,
    service: Service,
    *,
    connector: Annotated[Connector, Query()],
    since: Annotated[AwareDatetime | None, Query()] = None,
    error: Annotated[str | None, Query(pattern=ERROR_KIND.pattern)] = None,
    limit: PageLimit = 50,
    cursor: OffsetCursor = None,
) -> DeadLetterPageOut:
    if cursor is not None and not _CURSOR.fullmatch(cursor):
        raise invalid_cursor()
    chosen = DeadLetterFilter(tenant_id, connector.value, since=since, error=error)
    offset = None if cursor is None else int(cursor)
    try:
        page = await run_in_threadpool(service.listing, chosen, limit=limit, from_offset=offset)
    except NoSuchTopicError:
        return DeadLetterPageOut(items=[], next_cursor=None)  # nothing was dead-lettered
    except (HistoryError, KafkaException) as exc:
        raise _unavailable(exc) from None
    next_cursor = None if page.next_offset is None else str(page.next_offset)
    return DeadLetterPageOut(items=page.rows, next_cursor=next_cursor)


_REDRIVE_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {"description": "A dry run: counted, nothing sent", "model": RedriveOut},
    **error_responses(
        400,
        408,
        413,
        415,
        descriptions={
            422: "`validation_failed`: the body is invalid; `too_many_dead_letters`: more "
            "records match than one call may redrive (narrow the filter or use the CLI)"
        },
    ),
}


@router.post(
    "/dead-letters/redrive",
    summary="Send the tenant's dead letters of a connector again",
    status_code=status.HTTP_202_ACCEPTED,
    responses=_REDRIVE_RESPONSES,
)
async def redrive_dead_letters(
    tenant_id: TenantId,
    *,
    body: RedriveIn,
    actor: TenantAccess,
    service: Service,
    bounds: ApiSettings,
    response: Response,
) -> RedriveOut:
    chosen = DeadLetterFilter(
        tenant_id,
        body.connector.value,
        since=body.since,
        error=body.error,
        selected=body.selected(),
    )
    try:
        report = await run_in_threadpool(
            service.redrive, chosen, dry_run=body.dry_run, max_records=bounds.max_redrive
        )
    except TooManyDeadLettersError as exc:
        raise ValidationFailed(
            f"more than {exc.limit} dead letters match: narrow the filter (since, error) or "
            "run `queast-integrations dlq redrive`",
            code="too_many_dead_letters",
        ) from None
    except NoSuchTopicError:
        report = RedriveReport(new_run_id("rd"), body.dry_run)  # nothing was dead-lettered
        report.not_found = len(chosen.selected or ())
    except (HistoryError, ReinjectError, KafkaException) as exc:
        raise _unavailable(exc) from None
    _log.info(
        "operations.redrive.requested",
        extra={"redrive_id": report.redrive_id, "tenant_id": tenant_id, "actor_sub": actor.sub},
    )
    if body.dry_run:
        response.status_code = status.HTTP_200_OK
    return RedriveOut.model_validate(report.summary())

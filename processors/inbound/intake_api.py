"""The route partners call: ``POST /webhooks/{connector}/{tenant_id}``.

No bearer token: partners authenticate with their own signatures or credentials, which the
connector's adapter checks (:mod:`processors.inbound.intake` holds the service, the order of
the checks and every answer). This router only hands the request over, as received, and the
service reads the body (bounded by :class:`processors.api.BoundedBodyMiddleware`, mounted on
``/webhooks/``). No storage is touched here.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from processors.appstate import api_state
from processors.errors import error_responses
from processors.inbound.intake import (
    DedupeStore,
    InboundConnections,
    InboundIntake,
    InboundProducer,
    ReceivedRequest,
)
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap

__all__ = ["IntakeAnswer", "inbound_producer", "router"]

router = APIRouter(tags=["inbound"])

_PATH_PARAMETERS = [
    {
        "name": "connector",
        "in": "path",
        "required": True,
        "description": "The name of the registered connector the partner calls through.",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
    },
    {
        "name": "tenant_id",
        "in": "path",
        "required": True,
        "description": "The tenant whose connection receives the webhook.",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
    },
]
"""Declared by hand: the route reads them from the path itself, so that a tenant id outside its
pattern is answered like an unknown tenant (401), never 422."""


class IntakeAnswer(BaseModel):
    """What a 202 says: highlights produced, and those already received before."""

    accepted: int = Field(ge=0)
    duplicates: int = Field(ge=0)


_RESPONSES = error_responses(
    400,
    401,
    403,
    404,
    408,
    413,
    503,
    descriptions={
        400: "`malformed_payload`: authenticated, but not a payload the connector reads;"
        " `bad_content_length`",
        401: "`unauthorized`: no inbound-enabled connection of this tenant, or a missing, bad or"
        " stale signature or credentials (one answer for all)",
        403: "`forbidden`: the source address is outside the connection's IP allowlist",
        404: "`not_found`: no connector of that name receives webhooks",
        408: "`request_timeout`: the body did not arrive in time",
        413: "`payload_too_large`: the body is over `QI_INBOUND_MAX_BODY_BYTES`",
        503: "`service_unavailable` (Kafka did not take the events in time), `in_flight` (the"
        " same event is being received), `store_unavailable`: try again after `Retry-After`",
    },
)
_RESPONSES[401].pop("headers", None)  # no bearer scheme here: partners sign their requests


def inbound_producer(request: Request) -> InboundProducer:
    """The app's producer of ``integrations.inbound`` (``app.state.inbound_producer``)."""
    made = getattr(request.app.state, "inbound_producer", None)
    if not isinstance(made, InboundProducer):
        msg = "the app has no inbound producer; build it with processors.api.create_api"
        raise RuntimeError(msg)
    return made


def _intake(request: Request) -> InboundIntake:
    redis, settings = api_state(request)
    intake = settings.intake
    return InboundIntake(
        connections=InboundConnections(
            ConnectionRepository(redis, key_prefix=settings.redis.key_prefix),
            box=settings.secrets.secret_box(),
        ),
        dedupe=DedupeStore.for_settings(redis, key_prefix=settings.redis.key_prefix, intake=intake),
        publisher=inbound_producer(request),
        settings=intake,
        topic=TopicMap(settings.topics.prefix).inbound,
    )


@router.post(
    "/webhooks/{connector}/{tenant_id}",
    status_code=202,
    response_model=IntakeAnswer,
    summary="Receive a partner webhook",
    openapi_extra={"parameters": _PATH_PARAMETERS},
    responses=_RESPONSES,
)
async def receive_webhook(
    request: Request,
    intake: Annotated[InboundIntake, Depends(_intake)],
) -> JSONResponse:
    client = request.client
    received = ReceivedRequest(
        method=request.method,
        base_url=str(request.base_url),
        raw_path=request.scope.get("raw_path", request.url.path.encode()).decode("latin-1"),
        query=request.scope.get("query_string", b"").decode("latin-1"),
        headers=[
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in request.scope.get("headers", ())
        ],
        peer=client.host if client is not None else None,
        read_body=request.body,
    )
    params = request.path_params
    result = await intake.receive(str(params["connector"]), str(params["tenant_id"]), received)
    return JSONResponse(
        IntakeAnswer(accepted=result.accepted, duplicates=result.duplicates).model_dump(),
        status_code=202,
    )

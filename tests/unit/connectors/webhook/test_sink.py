"""WebhookSink end to end through ``httpx.MockTransport``: no network, no DNS."""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from connectors.base import (
    USER_AGENT,
    AuthenticationError,
    BackpressureError,
    ConnectorError,
    EndpointGoneError,
    OutboundRecord,
    PermanentError,
    SinkContext,
    TransientError,
    http_client_factory,
)
from connectors.webhook import WebhookConnectionConfig, WebhookSink
from connectors.webhook.client import Resolver
from connectors.webhook.payloads import build_body
from tests.unit.connectors.fakes import FakeClock, make_record, make_records

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
URL = "https://hooks.example.com/queast/in?token=tok-in-query"
Handler = Callable[[httpx.Request], httpx.Response]


class Endpoint:
    """A mock receiver: records every request and answers with ``respond``."""

    def __init__(self, respond: Handler | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self._respond = respond or (lambda _: httpx.Response(200))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._respond(request)


def _answer(status: int, headers: dict[str, str] | None = None) -> Endpoint:
    return Endpoint(lambda _: httpx.Response(status, headers=headers or {}))


def _resolver(*answers: str) -> Resolver:
    async def resolve(host: str, port: int) -> Sequence[str]:
        return list(answers)

    return resolve


@asynccontextmanager
async def open_sink(
    endpoint: Endpoint,
    *,
    clock: FakeClock | None = None,
    allow_private_networks: bool = False,
    resolved: Sequence[str] = ("93.184.216.34",),
    factory_calls: list[dict[str, Any]] | None = None,
    **config: Any,
) -> AsyncIterator[WebhookSink]:
    settings = WebhookConnectionConfig.validate_for_connection(
        {"url": URL, "secret": SECRET, **config},
        allow_private_networks=allow_private_networks,
    )

    def client_factory(
        *,
        timeout_seconds: float = 15.0,
        connect_timeout_seconds: float = 5.0,
        max_connections: int = 10,
        headers: dict[str, str] | None = None,
    ) -> httpx.AsyncClient:
        if factory_calls is not None:
            factory_calls.append({"timeout_seconds": timeout_seconds})
        return http_client_factory(
            timeout_seconds=timeout_seconds,
            connect_timeout_seconds=connect_timeout_seconds,
            max_connections=max_connections,
            headers=headers,
            transport=httpx.MockTransport(endpoint),
        )

    context = SinkContext(
        tenant_id="t_42",
        connection_id="c_1",
        connector="webhook",
        config=settings,
        allow_private_networks=allow_private_networks,
        clock=clock or FakeClock(),
        http_client_factory=client_factory,
    )
    async with WebhookSink(context, resolver=_resolver(*resolved)) as sink:
        yield sink


async def _deliver_one(endpoint: Endpoint, **options: Any) -> ConnectorError | int:
    """Deliver one record; return its error, or the delivered status code."""
    async with open_sink(endpoint, **options) as sink:
        outcome = await sink.deliver([make_record()])
    if outcome.failed:
        return outcome.failed[0].error
    return outcome.delivered[0].status_code


def _http_date(unix: float) -> str:
    return email.utils.format_datetime(datetime.fromtimestamp(unix, tz=UTC), usegmt=True)


WALL = FakeClock().wall


@pytest.mark.parametrize("status", [200, 201, 202, 204])
async def test_2xx_is_delivered(status: int) -> None:
    endpoint = _answer(status)
    assert await _deliver_one(endpoint) == status
    assert len(endpoint.requests) == 1


@pytest.mark.parametrize(
    ("status", "headers", "expected", "retry_after"),
    [
        (301, {"location": "https://elsewhere.example/"}, PermanentError, None),
        (302, {"location": "https://elsewhere.example/"}, PermanentError, None),
        (307, {"location": "https://elsewhere.example/"}, PermanentError, None),
        (400, {}, PermanentError, None),
        (401, {}, AuthenticationError, None),
        (403, {}, PermanentError, None),
        (404, {}, PermanentError, None),
        (408, {}, TransientError, None),
        (408, {"retry-after": "7"}, TransientError, 7.0),
        (410, {}, EndpointGoneError, None),
        (422, {}, PermanentError, None),
        (423, {}, TransientError, 2.0),
        (429, {}, BackpressureError, 5.0),
        (429, {"retry-after": "30"}, BackpressureError, 30.0),
        (429, {"retry-after": _http_date(WALL + 60)}, BackpressureError, 60.0),
        (500, {}, TransientError, None),
        (502, {}, BackpressureError, 5.0),
        (503, {}, TransientError, None),
        (503, {"retry-after": "120"}, TransientError, 120.0),
        (503, {"retry-after": _http_date(WALL + 90)}, TransientError, 90.0),
        (504, {}, BackpressureError, 5.0),
    ],
)
async def test_each_failure_status_has_its_outcome(
    status: int,
    headers: dict[str, str],
    expected: type[ConnectorError],
    retry_after: float | None,
) -> None:
    endpoint = _answer(status, headers)
    error = await _deliver_one(endpoint)
    assert type(error) is expected
    assert isinstance(error, ConnectorError)
    assert error.status_code == status
    assert error.partner == "webhook"
    assert error.endpoint == "hooks.example.com"
    assert getattr(error, "retry_after", None) == retry_after
    assert len(endpoint.requests) == 1  # no redirect followed, no retry inside the sink


@pytest.mark.parametrize(
    "raised",
    [
        httpx.ConnectTimeout("connect timed out"),
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectError("connection refused"),
        httpx.ReadError("connection reset"),
        httpx.RemoteProtocolError("server disconnected"),
    ],
)
async def test_timeouts_and_connection_errors_are_transient(raised: Exception) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise raised

    error = await _deliver_one(Endpoint(fail))
    assert type(error) is TransientError
    assert error.__cause__ is raised
    assert error.status_code is None


async def test_the_request_is_signed_and_verifies_with_the_reference_library() -> None:
    endpoint = Endpoint()
    clock = FakeClock(wall=time.time())
    record = make_record(idempotency_key="ik_company_7_v3", correlation_id="corr-77")
    async with open_sink(endpoint, clock=clock) as sink:
        outcome = await sink.deliver([record])
    assert [r.delivery_id for r in outcome.delivered] == [record.delivery_id]
    (request,) = endpoint.requests
    assert request.method == "POST"
    assert str(request.url) == URL
    assert request.content == build_body(record)
    assert {
        name: request.headers[name]
        for name in (
            "content-type",
            "user-agent",
            "webhook-id",
            "webhook-timestamp",
            "x-correlation-id",
        )
    } == {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": "ik_company_7_v3",
        "webhook-timestamp": str(int(clock.wall)),
        "x-correlation-id": "corr-77",
    }
    assert request.headers["webhook-signature"].startswith("v1,")
    parsed = Webhook(SECRET).verify(request.content, dict(request.headers))
    assert parsed == {
        "type": record.event_type,
        "timestamp": record.occurred_at,
        "data": record.payload,
    }


async def test_webhook_id_is_stable_across_attempts_while_the_timestamp_moves() -> None:
    endpoint = _answer(503)
    clock = FakeClock()
    first = make_record(idempotency_key="ik_stable")
    retry = first.model_copy(update={"attempt": 2, "delivery_id": "d_retry"})
    async with open_sink(endpoint, clock=clock) as sink:
        await sink.deliver([first])
        clock.advance(300)
        await sink.deliver([retry])
    one, two = endpoint.requests
    assert one.headers["webhook-id"] == two.headers["webhook-id"] == "ik_stable"
    assert int(two.headers["webhook-timestamp"]) - int(one.headers["webhook-timestamp"]) == 300
    assert one.headers["webhook-signature"] != two.headers["webhook-signature"]
    assert one.content == two.content


async def test_a_delivery_reports_its_status_and_duration() -> None:
    clock = FakeClock()

    def slow(request: httpx.Request) -> httpx.Response:
        clock.advance(0.25)
        return httpx.Response(201)

    record = make_record()
    async with open_sink(Endpoint(slow), clock=clock) as sink:
        outcome = await sink.deliver([record])
    (result,) = outcome.delivered
    assert result.delivery_id == record.delivery_id
    assert result.status_code == 201
    assert result.duration_ms == 250.0
    assert result.partner_object_id is None
    assert result.outcome == "delivered"


async def test_a_large_response_body_is_not_read_in_full() -> None:
    pulled: list[int] = []

    async def endless_body() -> AsyncIterator[bytes]:
        for number in range(1000):
            pulled.append(number)
            yield b"x" * 16_384

    endpoint = Endpoint(lambda _: httpx.Response(200, content=endless_body()))
    assert await _deliver_one(endpoint) == 200
    assert len(pulled) == 4  # 64 KiB, then the response is closed


@pytest.mark.parametrize("address", ["10.0.0.1", "127.0.0.1", "169.254.169.254", "::1"])
async def test_a_private_destination_is_refused_before_any_request(address: str) -> None:
    endpoint = Endpoint()
    error = await _deliver_one(endpoint, resolved=[address])
    assert type(error) is PermanentError
    assert error.reason == "destination address not allowed"
    assert endpoint.requests == []


async def test_a_private_destination_is_allowed_with_the_flag() -> None:
    endpoint = Endpoint()
    assert await _deliver_one(endpoint, resolved=["10.0.0.1"], allow_private_networks=True) == 200
    assert len(endpoint.requests) == 1


async def test_plain_http_needs_the_flag_in_the_context_too() -> None:
    settings = WebhookConnectionConfig.validate_for_connection(
        {"url": "http://localhost:8080/hook", "secret": SECRET}, allow_private_networks=True
    )
    context = SinkContext(tenant_id="t", connection_id="c", connector="webhook", config=settings)
    sink = WebhookSink(context)
    with pytest.raises(PermanentError, match="https"):
        await sink.setup()
    await sink.close()


async def test_write_before_setup_is_a_bug() -> None:
    settings = WebhookConnectionConfig.validate_for_connection({"url": URL, "secret": SECRET})
    context = SinkContext(tenant_id="t", connection_id="c", connector="webhook", config=settings)
    with pytest.raises(RuntimeError, match="setup"):
        await WebhookSink(context).deliver([make_record()])


async def test_the_configured_timeout_reaches_the_client() -> None:
    calls: list[dict[str, Any]] = []
    await _deliver_one(Endpoint(), factory_calls=calls, timeout_seconds=25)
    assert calls == [{"timeout_seconds": 25.0}]


async def test_a_short_rate_limit_wait_is_slept() -> None:
    endpoint = Endpoint()
    clock = FakeClock()
    async with open_sink(endpoint, clock=clock, rate_limit_per_second=2) as sink:
        outcome = await sink.deliver(make_records(3))
    assert len(outcome.delivered) == 3
    assert len(endpoint.requests) == 3
    assert clock.slept == [pytest.approx(0.5)]  # burst of 2, then one token every 0.5 s


async def test_a_long_rate_limit_wait_defers_the_records() -> None:
    endpoint = Endpoint()
    clock = FakeClock()
    async with open_sink(endpoint, clock=clock, rate_limit_per_second=0.5) as sink:
        outcome = await sink.deliver(make_records(3))
    assert len(outcome.delivered) == 1
    assert len(endpoint.requests) == 1
    errors = [f.error for f in outcome.failed]
    assert all(isinstance(e, BackpressureError) for e in errors)
    assert [f.attempted for f in outcome.failed] == [True, False]
    assert isinstance(errors[0], BackpressureError)
    assert errors[0].retry_after == pytest.approx(2.0)
    assert clock.slept == []


async def test_a_transient_failure_stops_the_rest_of_the_batch() -> None:
    endpoint = _answer(500)
    async with open_sink(endpoint) as sink:
        outcome = await sink.deliver(make_records(3))
    assert len(endpoint.requests) == 1
    assert [f.attempted for f in outcome.failed] == [True, False, False]


async def test_a_permanent_failure_does_not_stop_the_rest_of_the_batch() -> None:
    statuses = iter([422, 200, 200])
    endpoint = Endpoint(lambda _: httpx.Response(next(statuses)))
    records = make_records(3)
    async with open_sink(endpoint) as sink:
        outcome = await sink.deliver(records)
    assert len(endpoint.requests) == 3
    assert [f.delivery_id for f in outcome.failed] == [records[0].delivery_id]
    assert [r.delivery_id for r in outcome.delivered] == [r.delivery_id for r in records[1:]]


async def test_logs_carry_ids_but_no_secret_payload_or_url_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="connectors")
    record: OutboundRecord = make_record(payload={"email": "jane@example.com"})
    async with open_sink(_answer(500)) as sink:
        await sink.deliver([record])
    failed = [r for r in caplog.records if r.getMessage() == "delivery.attempt.failed"]
    assert len(failed) == 1
    assert failed[0].__dict__["delivery_id"] == record.delivery_id
    assert failed[0].__dict__["status_code"] == 500
    assert failed[0].__dict__["endpoint"] == "hooks.example.com"
    everything = " ".join(repr(r.__dict__) for r in caplog.records)
    for forbidden in ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "jane@example.com", "tok-in-query"):
        assert forbidden not in everything

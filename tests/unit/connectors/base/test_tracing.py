"""The request headers that tie a partner request to the records it carries."""

from __future__ import annotations

import asyncio
import logging

import pytest

from connectors.base.tracing import carried, carrying, trace_headers
from tests.unit.connectors.fakes import make_record

LOGGER = logging.getLogger("test.tracing")


def _headers() -> dict[str, str]:
    return trace_headers(partner="acme", endpoint="/x", logger=LOGGER, log_fields={"c": 1})


@pytest.mark.parametrize(
    ("correlation_ids", "expected"),
    [
        ((), None),  # carries no record: request id only
        (("corr-1",), "corr-1"),
        (("corr-1", "corr-1"), None),  # a batch: request id only
        (("corr-1", "corr-2"), None),
        (("two words",), None),  # not a header value: left out
        (("x" * 257,), None),
        (("",), None),
    ],
)
def test_trace_headers(correlation_ids: tuple[str, ...], expected: str | None) -> None:
    records = [make_record(correlation_id=c) for c in correlation_ids]
    with carrying(records):
        headers = _headers()
    assert headers.get("X-Correlation-Id") == expected
    assert len(headers["X-Request-Id"]) == 32
    assert set(headers) <= {"X-Correlation-Id", "X-Request-Id"}


def test_request_ids_differ_per_request() -> None:
    with carrying([make_record()]):
        assert len({_headers()["X-Request-Id"] for _ in range(50)}) == 50


def test_a_batch_logs_its_distinct_correlation_ids_at_debug_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    records = [make_record(correlation_id=c) for c in ("b", "a", "b")]
    with carrying(records), caplog.at_level(logging.INFO, logger="test.tracing"):
        _headers()
    assert caplog.records == []
    with carrying(records), caplog.at_level(logging.DEBUG, logger="test.tracing"):
        headers = _headers()
    (entry,) = caplog.records
    assert entry.msg == "acme.request.records"
    assert entry.__dict__["correlation_ids"] == ["a", "b"]
    assert entry.__dict__["records"] == 3
    assert entry.__dict__["request_id"] == headers["X-Request-Id"]
    assert entry.__dict__["c"] == 1


async def test_each_task_sees_the_records_it_carries() -> None:
    async def send(correlation_id: str) -> str | None:
        with carrying([make_record(correlation_id=correlation_id)]):
            await asyncio.sleep(0)  # the other task sets its own records meanwhile
            return _headers().get("X-Correlation-Id")

    assert list(await asyncio.gather(send("one"), send("two"))) == ["one", "two"]
    assert carried() == ()

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import pytest
from pydantic import ValidationError

from connectors.base import (
    AuthenticationError,
    BackpressureError,
    BaseSink,
    BatchingSink,
    BatchOutcome,
    ConnectionConfig,
    ConnectorError,
    DeliveryResult,
    EndpointGoneError,
    OutboundRecord,
    PermanentError,
    RecordFailure,
    SinkContext,
    TransientError,
)
from tests.unit.connectors.fakes import make_record, make_records


class FakeConfig(ConnectionConfig):
    pass


class FakeBulkSink(BatchingSink[FakeConfig]):
    """Accepts 100 records per call; fails the ids in ``fail_ids``; raises ``raise_on``."""

    name: ClassVar[str] = "fake"
    config_class: ClassVar[type[ConnectionConfig]] = FakeConfig
    max_batch_size: ClassVar[int] = 100

    def __init__(self, context: SinkContext[FakeConfig]) -> None:
        super().__init__(context)
        self.calls: list[list[str]] = []
        self.fail_ids: set[str] = set()
        self.raise_on: dict[int, ConnectorError] = {}
        self.events: list[str] = []

    async def setup(self) -> None:
        self.events.append("setup")

    async def close(self) -> None:
        self.events.append("close")

    async def write(self, batch: Sequence[OutboundRecord]) -> BatchOutcome:
        self.calls.append([r.delivery_id for r in batch])
        error = self.raise_on.get(len(self.calls))
        if error is not None:
            raise error
        return BatchOutcome(
            delivered=tuple(
                DeliveryResult(delivery_id=r.delivery_id, status_code=200, duration_ms=1.0)
                for r in batch
                if r.delivery_id not in self.fail_ids
            ),
            failed=tuple(
                RecordFailure(r.delivery_id, PermanentError("invalid property", status_code=400))
                for r in batch
                if r.delivery_id in self.fail_ids
            ),
        )


class FakeSingleSink(BaseSink[FakeConfig]):
    name: ClassVar[str] = "single"
    config_class: ClassVar[type[ConnectionConfig]] = FakeConfig

    def __init__(self, context: SinkContext[FakeConfig], outcome: BatchOutcome) -> None:
        super().__init__(context)
        self.outcome = outcome

    async def write(self, batch: Sequence[OutboundRecord]) -> BatchOutcome:
        return self.outcome


def _context() -> SinkContext[FakeConfig]:
    return SinkContext(tenant_id="t_42", connection_id="c_1", connector="fake", config=FakeConfig())


@pytest.fixture
def sink() -> FakeBulkSink:
    return FakeBulkSink(_context())


def _ids(records: Sequence[OutboundRecord]) -> list[str]:
    return [r.delivery_id for r in records]


async def test_250_records_go_out_as_100_100_50_and_outcomes_merge(sink: FakeBulkSink) -> None:
    records = make_records(250)
    outcome = await sink.deliver(records)
    assert [len(call) for call in sink.calls] == [100, 100, 50]
    assert [d for call in sink.calls for d in call] == _ids(records)
    assert [r.delivery_id for r in outcome.delivered] == _ids(records)
    assert outcome.failed == ()


async def test_a_record_failure_inside_a_chunk_touches_only_that_record(
    sink: FakeBulkSink,
) -> None:
    records = make_records(250)
    sink.fail_ids = {records[150].delivery_id}
    outcome = await sink.deliver(records)
    assert len(sink.calls) == 3
    assert len(outcome.delivered) == 249
    assert [f.delivery_id for f in outcome.failed] == [records[150].delivery_id]
    assert isinstance(outcome.failed[0].error, PermanentError)
    assert outcome.failed[0].attempted


async def test_a_permanent_chunk_failure_lets_the_next_chunks_go_on(sink: FakeBulkSink) -> None:
    records = make_records(250)
    error = PermanentError("bad request", status_code=400)
    sink.raise_on = {1: error}
    outcome = await sink.deliver(records)
    assert len(sink.calls) == 3
    assert _ids(records[:100]) == [f.delivery_id for f in outcome.failed]
    assert all(f.error is error and f.attempted for f in outcome.failed)
    assert [r.delivery_id for r in outcome.delivered] == _ids(records[100:])


@pytest.mark.parametrize(
    "error",
    [
        TransientError("server error", status_code=503),
        BackpressureError(retry_after=10, status_code=429),
        AuthenticationError(status_code=401),
        EndpointGoneError(status_code=410),
    ],
)
async def test_a_connection_level_failure_stops_the_remaining_chunks(
    sink: FakeBulkSink, error: ConnectorError
) -> None:
    records = make_records(250)
    sink.raise_on = {2: error}
    outcome = await sink.deliver(records)
    assert len(sink.calls) == 2
    assert [r.delivery_id for r in outcome.delivered] == _ids(records[:100])
    assert [f.delivery_id for f in outcome.failed] == _ids(records[100:])
    assert all(f.error is error for f in outcome.failed)
    assert [f.attempted for f in outcome.failed] == [True] * 100 + [False] * 50


async def test_an_empty_call_writes_nothing(sink: FakeBulkSink) -> None:
    assert await sink.deliver([]) == BatchOutcome()
    assert sink.calls == []


async def test_records_of_several_connections_are_refused(sink: FakeBulkSink) -> None:
    with pytest.raises(ValueError, match="one connection"):
        await sink.deliver([make_record(), make_record(connection_id="c_2")])


async def test_duplicate_delivery_ids_are_refused(sink: FakeBulkSink) -> None:
    record = make_record()
    with pytest.raises(ValueError, match="unique"):
        await sink.deliver([record, record])


async def test_a_record_without_reported_outcome_becomes_transient() -> None:
    first, second = make_records(2)
    stray = DeliveryResult(delivery_id="not-in-batch", status_code=200, duration_ms=1)
    reported = BatchOutcome(
        delivered=(
            DeliveryResult(delivery_id=first.delivery_id, status_code=200, duration_ms=1),
            stray,
        )
    )

    class PairSink(FakeSingleSink):
        max_batch_size: ClassVar[int] = 2

    outcome = await PairSink(_context(), reported).deliver([first, second])
    assert [r.delivery_id for r in outcome.delivered] == [first.delivery_id]
    assert [f.delivery_id for f in outcome.failed] == [second.delivery_id]
    assert type(outcome.failed[0].error) is TransientError


async def test_base_sink_refuses_more_than_its_batch_size() -> None:
    sink = FakeSingleSink(_context(), BatchOutcome())
    with pytest.raises(ValueError, match="at most 1"):
        await sink.deliver(make_records(2))


async def test_base_sink_turns_a_raised_error_into_record_failures() -> None:
    class RaisingSink(FakeSingleSink):
        async def write(self, batch: Sequence[OutboundRecord]) -> BatchOutcome:
            raise TransientError("timeout")

    record = make_record()
    outcome = await RaisingSink(_context(), BatchOutcome()).deliver([record])
    assert [f.delivery_id for f in outcome.failed] == [record.delivery_id]


async def test_a_bug_in_write_propagates() -> None:
    class BuggySink(FakeSingleSink):
        async def write(self, batch: Sequence[OutboundRecord]) -> BatchOutcome:
            raise KeyError("oops")

    with pytest.raises(KeyError):
        await BuggySink(_context(), BatchOutcome()).deliver([make_record()])


async def test_async_with_runs_setup_and_close(sink: FakeBulkSink) -> None:
    async with sink as opened:
        assert opened is sink
        assert sink.events == ["setup"]
    assert sink.events == ["setup", "close"]


async def test_a_failed_setup_still_closes() -> None:
    class FailingSetup(FakeBulkSink):
        async def setup(self) -> None:
            await super().setup()
            raise PermanentError("misconfigured")

    sink = FailingSetup(_context())
    with pytest.raises(PermanentError):
        async with sink:
            pass
    assert sink.events == ["setup", "close"]


def test_outbound_record_is_frozen_and_strict() -> None:
    record = make_record()
    with pytest.raises(ValidationError):
        record.attempt = 2  # type: ignore[misc]
    with pytest.raises(ValidationError):
        make_record(attempt=0)
    with pytest.raises(ValidationError):
        make_record(unexpected="x")
    assert "payload" not in record.log_fields()


def test_outcome_merge_keeps_order() -> None:
    a = BatchOutcome(delivered=(DeliveryResult(delivery_id="1", status_code=200, duration_ms=1),))
    b = BatchOutcome(failed=(RecordFailure("2", PermanentError()),))
    merged = a.merge(b)
    assert merged.delivery_ids == {"1", "2"}
    assert merged.delivered == a.delivered
    assert merged.failed == b.failed

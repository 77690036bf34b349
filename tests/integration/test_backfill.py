"""Backfill: a connection added after the events were published gets them, once.

Real worker, Kafka, Redis and webhook receiver; the backfill runs through the CLI's ``main``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from processors.cli import main
from processors.operations.history import HistoryReader
from processors.operations.runs import RunRecord, RunStatus, RunStore
from processors.redis_client import redis_client
from processors.samples import sample_events
from processors.settings import Settings, get_settings
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap
from tests.integration.conftest import PARTITIONS, start_worker
from tests.integration.test_delivery import (
    FAST_RETRIES,
    _applied,
    _connect,
    _expected_keys,
    _one_version_each,
    _publish,
    _wait,
)
from tests.sandboxes.webhook_receiver import ReceiverServer
from tests.support.kafka_io import ConsumedRecord, TopicReader
from tests.support.worker import WorkerProcess


@pytest.fixture
def receiver() -> Iterator[ReceiverServer]:
    with ReceiverServer() as server:
        yield server


@pytest.fixture
def cli_env(qi_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The CLI in this process reads the test's settings from the environment."""
    env = {**qi_env, **FAST_RETRIES}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


async def _backfill(
    capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, dict[str, object]]:
    """Run the command as an operator would (its own event loop: in a thread here)."""
    code = await asyncio.to_thread(main, ["backfill", *args])
    out = capsys.readouterr().out.strip().splitlines()
    return code, (json.loads(out[-1]) if code == 0 else {})


def _export_ends(settings: Settings, topics: TopicMap) -> dict[str, int]:
    with HistoryReader(settings.kafka) as reader:
        return {
            f"{topic}[{p}]": reader.span(topic, p).end
            for topic in (topics.exports("webhook"), topics.exports("hubspot"))
            for p in range(PARTITIONS)
        }


async def test_a_connection_added_later_gets_the_past_events_once(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    cli_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    receiver: ReceiverServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await _connect(repository, settings, receiver, ["t_live"])
    await repository.allow("t_late")  # on the allowlist, but no connection yet
    events = _one_version_each(sample_events(["t_live", "t_late"], 300, seed=47))
    late = [e for e in events if e["tenant_id"] == "t_late"]
    live = [e for e in events if e["tenant_id"] == "t_live"]
    _publish(settings, topics, events)
    start_worker(worker_factory, cli_env, tmp_path)
    assert await _wait(lambda: len(_applied(receiver, ["t_live"])) >= len(live), within=120)
    assert _applied(receiver, ["t_late"]) == Counter(), "no connection, nothing sent"

    await _connect(repository, settings, receiver, ["t_late"])
    code, dry = await _backfill(
        capsys, "--tenant", "t_late", "--from-offset", "0", "--dry-run", "--json"
    )
    assert code == 0
    assert dry["dry_run"] is True
    assert dry["matched"] == len(late)
    assert dry["exported"] == len(late)
    ends_after_dry_run = _export_ends(settings, topics)

    code, first = await _backfill(capsys, "--tenant", "t_late", "--from-offset", "0", "--json")
    assert code == 0
    assert (first["matched"], first["exported"], first["dry_run"]) == (len(late), len(late), False)
    expected = _expected_keys(late)
    assert await _wait(lambda: len(_applied(receiver, ["t_late"])) >= len(expected), within=120)

    code, second = await _backfill(capsys, "--tenant", "t_late", "--from-offset", "0", "--json")
    assert code == 0
    assert second["exported"] == len(late)
    assert second["backfill_id"] != first["backfill_id"]

    reader = TopicReader(settings.kafka.bootstrap_servers, [topics.delivery_records], PARTITIONS)

    def settled(raw: list[ConsumedRecord]) -> bool:
        runs = Counter(
            r["replay_id"]
            for r in (json.loads(m.value or b"{}") for m in raw)
            if r.get("tenant_id") == "t_late" and r["status"] in {"delivered", "duplicate_skipped"}
        )
        return runs[second["backfill_id"]] >= len(late)

    records = [
        json.loads(r.value or b"{}") for r in reader.wait_until(settled, timeout=120, settle=1.0)
    ]
    reader.close()
    applied = _applied(receiver, ["t_late"])
    assert set(applied) == expected
    assert max(applied.values()) == 1, "the second backfill sent an artifact again"
    mine = [r for r in records if r["tenant_id"] == "t_late"]
    first_run = Counter(r["status"] for r in mine if r["replay_id"] == first["backfill_id"])
    second_run = Counter(r["status"] for r in mine if r["replay_id"] == second["backfill_id"])
    assert first_run["delivered"] == len(late)
    assert second_run["duplicate_skipped"] == len(late)
    assert second_run["delivered"] == 0
    assert all(r["replay_id"] is None for r in records if r["tenant_id"] == "t_live")
    assert _export_ends(settings, topics) != ends_after_dry_run, "the backfills appended exports"
    assert _applied(receiver, ["t_live"]) == Counter(dict.fromkeys(_expected_keys(live), 1))

    # Each backfill is a recorded run whose delivery counts come from its delivery records.
    runs = await _recorded_runs(
        settings,
        [str(dry["backfill_id"]), str(first["backfill_id"]), str(second["backfill_id"])],
        settled=lambda rs: rs[1].delivered + rs[2].skipped >= 2 * len(late),
    )
    for run, summary in zip(runs, (dry, first, second), strict=True):
        assert (run.kind, run.tenant_id, run.connector) == ("backfill", "t_late", "*")
        assert run.status is RunStatus.COMPLETED
        assert (run.matched, run.exported, run.dry_run) == (
            summary["matched"],
            summary["exported"],
            summary["dry_run"],
        )
        assert (run.invalid, run.unrouted, run.from_offset) == (0, 0, 0)
    dry_run, first_run_record, second_run_record = runs
    assert (dry_run.delivered, dry_run.failed, dry_run.skipped) == (0, 0, 0)
    assert (first_run_record.delivered, first_run_record.failed) == (len(late), 0)
    assert (second_run_record.delivered, second_run_record.skipped) == (0, len(late))


async def _recorded_runs(
    settings: Settings, run_ids: list[str], *, settled: Callable[[list[RunRecord]], bool]
) -> list[RunRecord]:
    """The runs as the store holds them, once ``settled`` (or after 60 s); deleted after."""
    redis = redis_client(settings.redis)
    store = RunStore(redis, key_prefix=settings.redis.key_prefix)
    try:
        deadline = time.monotonic() + 60
        while True:
            runs = [await store.get(run_id) for run_id in run_ids]
            found = [run for run in runs if run is not None]
            assert len(found) == len(run_ids), "every backfill is recorded"
            if settled(found) or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.25)
    finally:
        for run_id in run_ids:
            await store.delete(run_id)
        await redis.aclose()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "t_late", "--from-offset", "0", "--connector", "nope"], "invalid choice"),
        (["--tenant", "t late", "--from-offset", "0"], "tenant id"),
        (["--tenant", "t_late"], "one of the arguments"),
        (["--tenant", "t_late", "--since", "2026-12-04T10:00:00"], "no time zone"),
        (["--tenant", "t_late", "--since", "yesterday"], "not an ISO 8601 time"),
        (
            ["--tenant", "t_late", "--from-offset", "0", "--since", "2026-12-04T10:00:00Z"],
            "not allowed",
        ),
        (["--tenant", "t_nobody", "--from-offset", "0"], "not on the allowlist"),
        (
            ["--tenant", "t_late", "--from-offset", "0", "--connector", "hubspot"],
            "no hubspot connection",
        ),
        (
            [
                "--tenant",
                "t_late",
                "--since",
                "2026-12-04T10:00:00Z",
                "--until",
                "2026-12-04T09:00:00Z",
            ],
            "before its start",
        ),
    ],
)
async def test_bad_backfills_exit_2_and_produce_nothing(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    cli_env: dict[str, str],
    receiver: ReceiverServer,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    await _connect(repository, settings, receiver, ["t_late"])
    _publish(settings, topics, sample_events(["t_late"], 20, seed=5))
    before = _export_ends(settings, topics)
    try:
        code = await asyncio.to_thread(main, ["backfill", *args])
    except SystemExit as exc:  # argparse refuses bad usage itself
        code = int(exc.code or 0)
    assert code == 2
    assert message in capsys.readouterr().err
    assert _export_ends(settings, topics) == before


async def test_a_backfill_while_another_runs_exits_1_and_produces_nothing(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    cli_env: dict[str, str],
    receiver: ReceiverServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await _connect(repository, settings, receiver, ["t_late"])
    _publish(settings, topics, sample_events(["t_late"], 20, seed=5))
    before = _export_ends(settings, topics)
    redis = redis_client(settings.redis)
    store = RunStore(redis, key_prefix=settings.redis.key_prefix)
    try:
        await store.create(
            RunRecord(
                run_id="bf_running",
                kind="backfill",
                tenant_id="t_late",
                connector="*",
                from_offset=0,
                status=RunStatus.RUNNING,
                created_at=datetime.now(UTC),
            )
        )
        code = await asyncio.to_thread(
            main, ["backfill", "--tenant", "t_late", "--from-offset", "0"]
        )
        assert code == 1
        assert "bf_running" in capsys.readouterr().err
        dry = await asyncio.to_thread(
            main, ["backfill", "--tenant", "t_late", "--from-offset", "0", "--dry-run", "--json"]
        )
        assert dry == 0, "a dry run produces nothing and takes no slot"
        assert _export_ends(settings, topics) == before
    finally:
        await redis.aclose()

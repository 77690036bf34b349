"""``queast-integrations replay``: exit codes and the ``--json`` last line, against the real
Kafka and Redis of the test (its own topics and keys)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from processors.cli import main
from processors.operations.runs import RunRecord, RunStatus, RunStore
from processors.settings import Settings, get_settings
from processors.tenants.models import ConnectionRecord, Connector
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap
from tests.support.leaders import end_offsets
from tests.support.worker import free_port


@pytest.fixture
def cli_env(qi_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The test's settings in the environment of an in-process ``main``."""
    for name, value in qi_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("QI_REPLAY_KAFKA_TIMEOUT_SECONDS", "2")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def _connected(repository: ConnectionRepository, tenant: str = "t_1") -> None:
    await repository.allow(tenant)
    await repository.put(ConnectionRecord(tenant_id=tenant, connector=Connector("webhook")))


async def _cli(*args: str) -> int:
    """``queast-integrations ARGS`` in a thread (it runs its own event loop); argparse's
    refusals are its ``SystemExit`` code."""

    def run() -> int:
        try:
            return main(list(args))
        except SystemExit as exc:
            return int(exc.code or 0)

    return await asyncio.to_thread(run)


async def _replay(*args: str) -> int:
    return await _cli("replay", "--tenant", "t_1", "--connector", "webhook", *args)


async def _run_keys(settings: Settings) -> list[bytes]:
    client = Redis.from_url(settings.redis.url)
    try:
        return [k async for k in client.scan_iter(match=f"{settings.redis.key_prefix}run:*")]
    finally:
        await client.aclose()


@pytest.mark.usefixtures("cli_env")
async def test_a_dry_run_ends_with_its_json_line_and_sends_nothing(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await _connected(repository)
    retry = topics.retry("webhook")
    before = await end_offsets(settings.kafka, retry)
    await end_offsets(settings.kafka, topics.exports("webhook"))
    assert await _replay("--dry-run", "--json") == 0
    out = capsys.readouterr().out.strip().splitlines()
    last = json.loads(out[-1])
    assert set(last) == {"replay_id", "matched", "queued", "dry_run"}
    assert last["replay_id"].startswith("rp_")
    assert (last["matched"], last["queued"], last["dry_run"]) == (0, 0, True)
    assert await end_offsets(settings.kafka, retry) == before

    assert await _replay("--json") == 0, "a run over an empty window completes"
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["dry_run"] is False


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--since", "2026-12-04T10:00:00"], "no time zone"),
        (["--until", "tomorrow"], "not an ISO 8601 time"),
        (["--since", "2026-01-01T00:00Z", "--until", "2026-03-01T00:00Z"], "maximum"),
        (["--since", "2026-03-01T00:00Z", "--until", "2026-03-01T00:00Z"], "before until"),
        (["--event-type", "company.exploded"], "unknown event type"),
    ],
)
async def test_bad_input_is_exit_2_with_a_message_and_starts_nothing(
    settings: Settings,
    repository: ConnectionRepository,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    says: str,
) -> None:
    await _connected(repository)
    assert await _replay(*args) == 2
    assert says in capsys.readouterr().err
    assert await _run_keys(settings) == []


@pytest.mark.usefixtures("cli_env")
async def test_unknown_connectors_and_missing_connections_are_exit_2(
    settings: Settings, repository: ConnectionRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _replay() == 2
    assert "no connection" in capsys.readouterr().err
    assert await _cli("replay", "--tenant", "t_1", "--connector", "fax") == 2
    assert "unknown connector" in capsys.readouterr().err
    assert await _run_keys(settings) == []
    _ = repository


@pytest.mark.usefixtures("cli_env")
async def test_a_running_replay_of_the_connection_is_exit_1_naming_it(
    settings: Settings,
    repository: ConnectionRepository,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await _connected(repository)
    client = Redis.from_url(settings.redis.url)
    try:
        await RunStore(client, key_prefix=settings.redis.key_prefix).create(
            RunRecord(
                run_id="rp_busy",
                kind="replay",
                tenant_id="t_1",
                connector="webhook",
                status=RunStatus.RUNNING,
                created_at=datetime.now(UTC),
            )
        )
    finally:
        await client.aclose()
    assert await _replay() == 1
    assert "rp_busy" in capsys.readouterr().err


async def test_an_unreachable_broker_is_exit_1_and_the_run_is_marked_failed(
    cli_env: None,
    settings: Settings,
    repository: ConnectionRepository,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await _connected(repository)
    monkeypatch.setenv("QI_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    get_settings.cache_clear()
    assert await _replay("--json") == 1
    captured = capsys.readouterr()
    assert "failed" in captured.err
    assert captured.out == ""
    client = Redis.from_url(settings.redis.url)
    try:
        store = RunStore(client, key_prefix=settings.redis.key_prefix)
        [key] = [k for k in await _run_keys(settings) if k.count(b":") == 2]
        run = await store.get(key.decode().rsplit(":", 1)[-1])
    finally:
        await client.aclose()
    assert run is not None
    assert run.status is RunStatus.FAILED


async def test_an_unreachable_redis_is_exit_1(
    cli_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QI_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    get_settings.cache_clear()
    assert await _replay() == 1
    assert "Redis error" in capsys.readouterr().err

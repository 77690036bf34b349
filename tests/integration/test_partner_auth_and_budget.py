"""OAuth renewal and Pipedrive's daily budget, end to end: real worker, Kafka, Redis, sandboxes.

- (a) "an access token expiring mid-run is refreshed with no failed delivery": a HubSpot OAuth
  connection whose access tokens live :data:`TOKEN_LIFETIME_SECONDS` while events trickle in
  for several lifetimes; the renewals are persisted in the grant store.
- (b) "Pipedrive's daily budget running out parks deliveries until the reset, none
  dead-lettered": a Pipedrive account with a small daily token budget. The connector counts
  the day in UTC (``DailyBudget``), so the worker's connector clock is moved (a
  ``sitecustomize`` in the worker's ``PYTHONPATH`` shifts ``SystemClock.time``, the clock
  seam every sink context uses) to :data:`SECONDS_TO_MIDNIGHT` before a UTC midnight when a
  sink first reads it; the test resets the sandbox's day once the budget has run out, before
  that midnight.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest
from redis.asyncio import Redis

from processors.deliveries.models import DeliveryRecord, DeliveryStatus
from processors.oauthgrants import OAuthTokenStore, credentials_fingerprint
from processors.samples import sample_sync
from processors.settings import Settings
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap
from tests.integration.conftest import start_worker
from tests.integration.partners import connect, delivery_reader, partner_env, publish
from tests.sandboxes.hubspot import HubSpotSandbox
from tests.sandboxes.pipedrive import AccountLimits, PipedriveSandbox
from tests.support.infrastructure import REPO_ROOT
from tests.support.worker import WorkerProcess

FAST_DEFERS = {  # on top of partner_env's fast retries
    "QI_DELIVERY_DEFER_MIN_SECONDS": "0.5",
    "QI_DELIVERY_DEFER_MAX_SECONDS": "2",
}
SETTLED = {
    DeliveryStatus.DELIVERED,
    DeliveryStatus.PARKED,
    DeliveryStatus.DEAD_LETTERED,
    DeliveryStatus.HELD_FOR_REVIEW,
}

TOKEN_LIFETIME_SECONDS = 6
"""HubSpot sandbox access tokens; the token source renews them at half-life (3 s)."""
HUBSPOT_WAVES = 10
HUBSPOT_WAVE_GAP_SECONDS = 1.0

PIPEDRIVE_DAILY_BUDGET = 300
"""Pipedrive tokens per day: a dozen first links by search (20 + 5 each) or some fifty
through the list-based candidate index (5 each plus list pages)."""
PIPEDRIVE_WAVE = 5
"""Events in the first wave, and spare events in the wave meant to exhaust the budget."""
SECONDS_TO_MIDNIGHT = 15
"""Where the worker's connector clock stands, before a UTC midnight, when a sink first
reads it: long enough for the budget to run out on that day (a few seconds), short enough
for a quick test."""

_SHIFTED_CLOCK = '''\
"""Test hook (tests/integration/test_partner_auth_and_budget.py): the connectors' clock.

``SystemClock.time`` (every sink context's wall clock) reads
QI_TEST_CLOCK_SECONDS_TO_MIDNIGHT seconds before a UTC midnight on its first call, then
runs at the real rate. Nothing else in the worker (Kafka, the engine, the retry queue)
is shifted: they only see the durations the connectors compute.
"""

import math
import os
import sys
import time

from connectors.base import context as _context

_LEAD = float(os.environ["QI_TEST_CLOCK_SECONDS_TO_MIDNIGHT"])
_offset: list[float] = []


def _shifted_time(self: object) -> float:
    now = time.time()
    if not _offset:
        midnight = math.floor((now + _LEAD) / 86400) * 86400  # the latest one, going back
        _offset.append(midnight - _LEAD - now)
        print(f"test clock: connectors' time shifted by {_offset[0]:.3f} s", file=sys.stderr)
    return now + _offset[0]


_context.SystemClock.time = _shifted_time  # type: ignore[method-assign]
'''


# -- helpers ------------------------------------------------------------------------------------


class DeliveryRecords:
    """Everything on ``integrations.delivery-records``, read as the test goes."""

    def __init__(self, settings: Settings, topics: TopicMap) -> None:
        self._reader = delivery_reader(settings, topics)
        self.all: list[DeliveryRecord] = []

    async def poll(self, seconds: float) -> None:
        await asyncio.to_thread(self._reader.poll_for, seconds)
        fresh = self._reader.records[len(self.all) :]
        self.all.extend(DeliveryRecord.model_validate_json(r.value or b"{}") for r in fresh)

    async def wait_for(self, condition: Callable[[], bool], *, within: float) -> bool:
        deadline = time.monotonic() + within
        while not condition():
            if time.monotonic() > deadline:
                return False
            await self.poll(0.3)
        return True

    async def wait_until_all(
        self, event_ids: set[str], statuses: set[DeliveryStatus], *, within: float
    ) -> bool:
        """Whether every event reached one of ``statuses`` (at any attempt) in time."""
        return await self.wait_for(lambda: event_ids <= self.events_with(statuses), within=within)

    def with_status(self, status: DeliveryStatus) -> list[DeliveryRecord]:
        return [r for r in self.all if r.status is status]

    def events_with(self, statuses: set[DeliveryStatus]) -> set[str]:
        return {r.event_id for r in self.all if r.status in statuses}

    def statuses(self) -> Counter[str]:
        return Counter(r.status.value for r in self.all)

    def close(self) -> None:
        self._reader.close()


@pytest.fixture
def records(settings: Settings, topics: TopicMap) -> Iterator[DeliveryRecords]:
    reader = DeliveryRecords(settings, topics)
    yield reader
    reader.close()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis.url)
    yield client
    await client.aclose()


def _ids(events: Sequence[dict[str, Any]]) -> set[str]:
    return {e["event_id"] for e in events}


def _queast_ids(events: Sequence[dict[str, Any]], event_type: str, key: str) -> set[str]:
    return {e["data"][key] for e in events if e["event_type"] == event_type}


def _due(parked: Sequence[DeliveryRecord]) -> dict[str, float]:
    """When each parked delivery is due again (Unix seconds): its worker's reset."""
    due: dict[str, float] = {}
    for record in parked:
        wait = record.last_error.retry_after_s if record.last_error is not None else None
        at = record.finished_at.timestamp() + (wait or 0.0)
        due[record.delivery_id] = max(due.get(record.delivery_id, 0.0), at)
    return due


# -- (a) HubSpot OAuth ------------------------------------------------------------------------


async def test_an_access_token_expiring_mid_run_is_refreshed_with_no_failed_delivery(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    hubspot: HubSpotSandbox,
    records: DeliveryRecords,
    redis: Redis,
    tmp_path: Path,
) -> None:
    tenant = "t_hs_oauth"
    hubspot.add_oauth_app("qi-app", "qi-app-secret", expires_in=TOKEN_LIFETIME_SECONDS)
    portal = hubspot.add_portal()
    hubspot.add_refresh_token(portal, "qi-app", "rt-install-1")
    auth = {
        "type": "oauth",
        "client_id": "qi-app",
        "client_secret": "qi-app-secret",
        "refresh_token": "rt-install-1",
    }
    connection = await connect(repository, settings, tenant, "hubspot", {"auth": auth})
    events = sample_sync([tenant], companies=150, people=150, seed=23)
    size = len(events) // HUBSPOT_WAVES
    waves = [events[i : i + size] for i in range(0, len(events), size)]

    publish(settings, topics, waves[0])
    env = partner_env(qi_env, connectors=["hubspot"], hubspot=hubspot) | FAST_DEFERS
    start_worker(worker_factory, env, tmp_path)
    first_wave = _ids(waves[0])
    delivered = {DeliveryStatus.DELIVERED}
    assert await records.wait_until_all(first_wave, delivered, within=90), records.statuses()

    store = OAuthTokenStore(
        redis, box=settings.secrets.secret_box(), key_prefix=settings.redis.key_prefix
    )
    credentials = credentials_fingerprint(auth)
    assert credentials is not None
    coordinates = {"tenant_id": tenant, "connection_id": connection.connection_id}
    first = await store.load(credentials=credentials, **coordinates)
    assert first is not None, "the first access token was persisted"

    # The rest trickles in for several token lifetimes, so tokens expire while deliveries run.
    for wave in waves[1:]:
        publish(settings, topics, wave)
        await records.poll(HUBSPOT_WAVE_GAP_SECONDS)
    everything = _ids(events)
    assert await records.wait_until_all(everything, delivered, within=120), records.statuses()
    await records.poll(1.0)  # anything late (a retry, a failure) shows up now

    stats = hubspot.stats(portal)
    statuses = records.statuses()
    auth_failures = [
        r
        for r in records.all
        if r.last_error is not None
        and (r.last_error.status_code == 401 or r.last_error.error_class == "AuthenticationError")
    ]
    print(
        f"hubspot oauth: {len(events)} events, token refreshes {stats.token_requests}, "
        f"401 answers {stats.by_status.get(401, 0)}, requests {stats.requests}, "
        f"records {dict(statuses)}"
    )
    # Every event delivered; no record failed for authentication, none parked or dead-lettered.
    assert statuses[DeliveryStatus.DEAD_LETTERED] == 0, statuses
    assert statuses[DeliveryStatus.PARKED] == 0, statuses
    assert auth_failures == []
    # Tokens were renewed ahead of expiry, several times. A 401 can still happen when a
    # request waits (rate limiter, a busy machine) past the remaining half-life of its token:
    # the client then renews once and retries, so it must never surface as a failed
    # delivery (asserted above) nor park the connection (asserted here).
    assert stats.token_requests >= 2
    assert await redis.exists(f"{settings.redis.key_prefix}connstate:conn_{tenant}") == 0
    # Each company and contact once, with its Queast id.
    kinds: tuple[tuple[Literal["companies", "contacts"], str, str], ...] = (
        ("companies", "company.upserted", "company_id"),
        ("contacts", "person.upserted", "person_id"),
    )
    for object_type, event_type, key in kinds:
        found = hubspot.objects(portal, object_type)
        stored = Counter(o["properties"].get("queast_id") for o in found)
        assert set(stored) == _queast_ids(events, event_type, key)
        assert max(stored.values()) == 1
    # The renewals were persisted, sealed: the store holds a newer token than the first.
    latest = await store.load(credentials=credentials, **coordinates)
    assert latest is not None
    assert latest.access_token.get_secret_value() != first.access_token.get_secret_value()
    assert latest.expires_at > first.expires_at
    raw = await redis.get(f"{settings.redis.key_prefix}oauth:{connection.connection_id}")
    assert raw is not None
    assert latest.access_token.get_secret_value().encode() not in raw
    assert b"rt-install-1" not in raw


# -- (b) Pipedrive's daily budget ---------------------------------------------------------------


async def test_pipedrive_budget_running_out_parks_deliveries_until_the_reset(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    pipedrive: PipedriveSandbox,
    records: DeliveryRecords,
    tmp_path: Path,
) -> None:
    tenant = "t_pd_budget"
    token = "pd-api-token-budget"
    info = pipedrive.add_account(
        "acme", api_tokens=[token], limits=AccountLimits(daily_budget=PIPEDRIVE_DAILY_BUDGET)
    )
    await connect(
        repository,
        settings,
        tenant,
        "pipedrive",
        {
            "auth": {"type": "api_token", "token": token},
            "domain_field_key": info.domain_field_key,
            "queast_id_field_key": info.queast_id_field_key,
        },
    )
    events = sample_sync([tenant], companies=60, people=60, seed=29)
    hook = tmp_path / "clock"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_SHIFTED_CLOCK)
    env = (
        partner_env(
            qi_env,
            connectors=["pipedrive"],
            pipedrive=pipedrive,
            QI_TEST_CLOCK_SECONDS_TO_MIDNIGHT=str(SECONDS_TO_MIDNIGHT),
            # The checkout first: the hook imports connectors before the worker's working
            # directory is on sys.path, and must get this checkout's, not an installed one.
            PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(hook)]),
        )
        | FAST_DEFERS
    )
    start_worker(worker_factory, env, tmp_path)

    # Wave after wave, each once the previous one has settled, until the budget runs out. A
    # wave is sized from the tokens left and the cost per event so far, plus a few spare
    # events: few are in flight when the budget runs out, so the next day's budget covers
    # them, whatever a first link costs (a search, or the list-based candidate index).
    published: list[dict[str, Any]] = []
    size = PIPEDRIVE_WAVE
    while not records.with_status(DeliveryStatus.PARKED):
        wave = events[len(published) : len(published) + size]
        if not wave:
            pytest.fail(f"the daily budget never ran out: {pipedrive.stats()}")
        publish(settings, topics, wave)
        published.extend(wave)
        assert await records.wait_until_all(_ids(published), SETTLED, within=90), records.statuses()
        spent = pipedrive.state.spent("acme")
        per_event = max(spent / len(published), 1.0)
        size = math.ceil(max(PIPEDRIVE_DAILY_BUDGET - spent, 0) / per_event) + PIPEDRIVE_WAVE
    # Pipedrive's day ends: its budget is back. The worker waits for its own reset (the
    # shifted midnight), sending nothing before it, not even for events arriving meanwhile.
    day_one = pipedrive.stats()
    spent_on_day_one = pipedrive.state.spent("acme")
    pipedrive.reset_day()
    late = events[len(published) : len(published) + PIPEDRIVE_WAVE]
    publish(settings, topics, late)
    published.extend(late)
    reset_at = min(_due(records.with_status(DeliveryStatus.PARKED)).values())
    await records.wait_for(lambda: time.time() >= reset_at - 1.0, within=SECONDS_TO_MIDNIGHT)
    quiet, looked_at = pipedrive.stats().requests, time.time()

    everything = _ids(published)
    delivered_status = {DeliveryStatus.DELIVERED}
    assert await records.wait_until_all(everything, delivered_status, within=90), records.statuses()
    await records.poll(1.0)

    statuses = records.statuses()
    parked = records.with_status(DeliveryStatus.PARKED)
    delivered = records.with_status(DeliveryStatus.DELIVERED)
    for record in parked:
        assert record.last_error is not None
        assert record.last_error.error_class == "QuotaExhaustedError"
        # parked until the (shifted) midnight, not for a day: a day means the budget ran out
        # only after that midnight (the machine was too slow for SECONDS_TO_MIDNIGHT)
        assert record.last_error.retry_after_s is not None
        assert 0 < record.last_error.retry_after_s <= SECONDS_TO_MIDNIGHT, record.last_error
    due = _due(parked)
    after_reset = [r for r in delivered if r.delivery_id in due]
    drained_at = max(r.finished_at.timestamp() for r in after_reset)
    stats = pipedrive.stats()
    print(
        f"pipedrive budget: {len(published)} events, {len(due)} parked "
        f"({len(parked)} parked records), {len(after_reset)} delivered after the reset, "
        f"drained {drained_at - reset_at:.2f}s after it; day one spent {spent_on_day_one} "
        f"tokens in {day_one.requests} requests, {day_one.throttled_by_reason} refused; "
        f"records {dict(statuses)}; sandbox {stats.by_route}"
    )
    assert statuses[DeliveryStatus.DEAD_LETTERED] == 0, statuses
    assert due, "no delivery was parked"
    # every parked delivery went out after the reset, and only then (10 ms: timestamp rounding)
    assert {r.delivery_id for r in after_reset} == set(due)
    for record in after_reset:
        assert record.started_at.timestamp() >= due[record.delivery_id] - 0.01
    # Once it knew the budget was spent the worker stopped calling Pipedrive until its reset
    # (looked at up to a second before it), and after the reset nothing was refused again.
    if looked_at < reset_at:
        assert quiet == day_one.requests, "requests sent while the budget was known spent"
    refused = stats.throttled_by_reason.get("budget", 0)
    assert refused == day_one.throttled_by_reason.get("budget", 0)
    # each organization and person exists once, with its Queast id
    key = info.queast_id_field_key
    for found, event_type, id_key in (
        (pipedrive.organizations("acme"), "company.upserted", "company_id"),
        (pipedrive.persons("acme"), "person.upserted", "person_id"),
    ):
        stored = Counter(o["custom_fields"].get(key) for o in found)
        assert set(stored) == _queast_ids(published, event_type, id_key)
        assert max(stored.values()) == 1

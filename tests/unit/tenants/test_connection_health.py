"""The state the connections API shows, from a connection and its destinations' health."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from processors.connection_health import Breaker, ConnectionHealth, ConnectionState
from processors.tenants.health import ConnectionStatus, DestinationHealth, connection_status
from processors.tenants.models import ConnectionRecord

SAVED = 1_800_000_000.0
FAILING = Breaker(
    failures=20,
    first_failure_at=SAVED + 10,
    last_error="503",
    failing_since=SAVED + 20,
    next_probe_at=SAVED + 50,
    probe_interval=30,
)


def _record(**overrides: Any) -> ConnectionRecord:
    return ConnectionRecord.model_validate(
        {
            "tenant_id": "t_1",
            "connector": "hubspot",
            "connection_id": "conn_1",
            "delivery_mode": "both",
            "updated_at": datetime.fromtimestamp(SAVED, UTC),
            **overrides,
        }
    )


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def test_nothing_stored_is_enabled() -> None:
    found = [DestinationHealth("", None, Breaker()), DestinationHealth("webhook", None, Breaker())]
    assert connection_status(_record(), found) == ConnectionStatus()


def test_failing_shows_the_run_and_the_last_error() -> None:
    status = connection_status(_record(), [DestinationHealth("", None, FAILING)])
    assert status.state == "failing"
    assert status.since == _at(SAVED + 20)
    assert status.reason is not None
    assert status.reason.endswith("last error: 503")


def test_the_most_severe_destination_wins_and_a_copy_is_named() -> None:
    gone = ConnectionState(ConnectionHealth.GONE, "410", SAVED + 5)
    status = connection_status(
        _record(),
        [DestinationHealth("", None, FAILING), DestinationHealth("webhook", gone, Breaker())],
    )
    assert status == ConnectionStatus("parked", "webhook copy: 410", _at(SAVED + 5))
    reauth = ConnectionState(ConnectionHealth.NEEDS_REAUTH, "401", SAVED + 6)
    disabled = ConnectionState(ConnectionHealth.DISABLED, "failed for 72 hours", SAVED + 7)
    assert (
        connection_status(
            _record(),
            [DestinationHealth("", reauth, Breaker()), DestinationHealth("webhook", gone, FAILING)],
        ).state
        == "needs_reauth"
    )
    assert (
        connection_status(
            _record(),
            [
                DestinationHealth("", reauth, Breaker()),
                DestinationHealth("webhook", disabled, FAILING),
            ],
        ).state
        == "disabled"
    )


def test_health_and_runs_from_before_the_last_save_are_over() -> None:
    old_health = ConnectionState(ConnectionHealth.DISABLED, "failed", SAVED - 1)
    old_run = Breaker(failures=20, first_failure_at=SAVED - 100, failing_since=SAVED - 50)
    found = [DestinationHealth("", old_health, old_run)]
    assert connection_status(_record(), found) == ConnectionStatus()


def test_a_connection_the_tenant_disabled_is_disabled_whatever_its_health() -> None:
    status = connection_status(_record(enabled=False), [DestinationHealth("", None, FAILING)])
    assert status == ConnectionStatus("disabled", "disabled by the tenant", _at(SAVED))

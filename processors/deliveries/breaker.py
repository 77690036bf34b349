"""The failing-destination breaker (Svix-style): pure state and transitions, no I/O.

A *destination* (a connection as delivered by one connector, keyed like its connection
health, see :func:`~processors.deliveries.envelope.destination_key`) has one
:class:`~processors.connection_health.Breaker` (the record, shared with the connections
API), kept in Redis next to its health (:mod:`processors.deliveries.state` stores and updates
it atomically; the delivery engine acts on it). Every function here takes
the time as ``now`` (epoch seconds), so the window and probe logic runs with an injected
clock in tests.

States and transitions (``policy`` is a :class:`BreakerPolicy` built from the delivery
settings, ``QI_DELIVERY_BREAKER_*``)::

    closed ──(a transient failure)──▶ closed, counting
    closed, counting ──(a success)──▶ closed (count cleared)
    closed, counting ──(failures ≥ threshold, or window since the first failure)──▶ failing
    failing ──(a probe's success, or any success)──▶ closed ("resumed")
    failing ──(a probe's transient failure)──▶ failing, next probe after twice the interval
    failing ──(disable_after since the first failure)──▶ disabled (connection health)
    disabled ──(an admin saves the connection)──▶ closed

- *Counting*: only an attempted batch whose every attempted record failed transiently (a
  timeout, a connection error, 408, 429 or 5xx, a connector crash) counts, once per batch.
  A deferral (the partner not called), a spent quota, a 401, a 410, a permanent refusal and a
  record held for review neither count nor clear: they say nothing about whether the
  destination is up, or have their own handling (``needs_reauth``, ``gone``). Any delivered
  record clears the count.
- *Failing*: the destination's records are not sent; each waits on the retry topic (status
  ``waiting``, no attempt spent, the age budget still running) and comes back at the latest
  after ``park_recheck_seconds``. One record at a time is the *probe*:
  :func:`take_probe` grants it to the first caller after ``next_probe_at`` and moves
  ``next_probe_at`` one interval on at once, so other lanes and workers wait. The interval
  starts at ``probe_initial_seconds`` and doubles after each failed probe up to
  ``probe_max_seconds``. The age budget keeps running while a record waits: with the
  defaults (27 hours of budget, 3 days to disabling) a record still waiting when its budget
  ends is dead-lettered (``ConnectionFailing``, with the breaker's last error), where a
  dead-letter redrive can send it once the destination is back.
- *Disabled*: still failing ``disable_after_seconds`` after the first failure of the run, the
  destination's health becomes ``disabled`` (with the reason and the time), the breaker is
  cleared, and the destination's records are parked like a gone one's until an admin saves
  the connection (which also clears every breaker and health entry of it).

A breaker older than the connection's last update (``updated_at``) is treated as closed:
saving a connection is the admin's "try again".
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Final, Self

from processors.connection_health import Breaker
from processors.settings import DeliverySettings

__all__ = [
    "Breaker",
    "BreakerPolicy",
    "Transition",
    "disabled_reason",
    "on_failure",
    "on_success",
    "take_probe",
]

_REASON_LIMIT = 300


class Transition(StrEnum):
    """A change of a destination's state caused by one outcome."""

    NONE = "none"
    FAILING = "failing"
    RESUMED = "enabled"
    DISABLED = "disabled"


_SETTING: Final = "breaker_"


def _setting_default(name: str) -> float:
    """The default of the delivery setting ``breaker_{name}`` (a number)."""
    default = DeliverySettings.model_fields[_SETTING + name].default
    if not isinstance(default, int | float):
        msg = f"the setting {_SETTING + name} has no numeric default"
        raise TypeError(msg)
    return default


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a destination trips, how often it is probed, and when it is disabled.

    Each field ``x`` is the delivery setting ``breaker_x`` (``QI_DELIVERY_BREAKER_X``): its
    default is that setting's default, and :meth:`from_settings` reads it from there.
    """

    threshold: int = int(_setting_default("threshold"))
    window_seconds: float = _setting_default("window_seconds")
    probe_initial_seconds: float = _setting_default("probe_initial_seconds")
    probe_max_seconds: float = _setting_default("probe_max_seconds")
    disable_after_seconds: float = _setting_default("disable_after_seconds")

    @classmethod
    def from_settings(cls, settings: DeliverySettings) -> Self:
        return cls(**{f.name: getattr(settings, _SETTING + f.name) for f in fields(cls)})


def on_failure(
    breaker: Breaker, *, now: float, reason: str, probe: bool, policy: BreakerPolicy
) -> tuple[Breaker, Transition]:
    """Count one batch that failed transiently; ``probe`` when it was the failing
    destination's probe. Returns the new breaker and the transition it caused; on
    :attr:`Transition.DISABLED` the caller stores the health ``disabled`` (with
    :func:`disabled_reason` of the returned breaker) and drops the breaker."""
    first = breaker.first_failure_at if breaker.counting else now
    counted = replace(
        breaker,
        failures=breaker.failures + 1,
        first_failure_at=first,
        last_error=reason[:_REASON_LIMIT],
    )
    if counted.failing:
        if now - first >= policy.disable_after_seconds:
            return counted, Transition.DISABLED
        if not probe:  # a batch sent before the trip: counted, the probe schedule stays
            return counted, Transition.NONE
        interval = min(counted.probe_interval * 2, policy.probe_max_seconds)
        interval = max(interval, policy.probe_initial_seconds)
        return replace(counted, probe_interval=interval, next_probe_at=now + interval), (
            Transition.NONE
        )
    if counted.failures >= policy.threshold or now - first >= policy.window_seconds:
        interval = policy.probe_initial_seconds
        return replace(
            counted, failing_since=now, probe_interval=interval, next_probe_at=now + interval
        ), Transition.FAILING
    return counted, Transition.NONE


def on_success(breaker: Breaker) -> tuple[Breaker, Transition]:
    """A delivered record: the run is over (and a failing destination resumes)."""
    return Breaker(), Transition.RESUMED if breaker.failing else Transition.NONE


def take_probe(breaker: Breaker, *, now: float) -> tuple[Breaker, bool]:
    """Whether the caller may send one probe record now; the breaker with the next probe
    moved one interval on when it may (so nobody else probes meanwhile)."""
    if not breaker.failing:
        return breaker, False
    if now < breaker.next_probe_at:
        return breaker, False
    return replace(breaker, next_probe_at=now + breaker.probe_interval), True


def disabled_reason(breaker: Breaker, *, policy: BreakerPolicy) -> str:
    """Why a destination was disabled, for the tenant admin (no payloads)."""
    hours = policy.disable_after_seconds / 3600
    return (f"every delivery failed for {hours:g} hours; last error: {breaker.last_error}")[
        :_REASON_LIMIT
    ]

"""The steered clock the sandboxes' unit tests share with the sandboxes they serve."""

from __future__ import annotations

import time

from tests.unit.sandboxes.clocks import SteeredClock


def test_follows_real_time_plus_its_offset_until_frozen() -> None:
    clock = SteeredClock()
    before = time.time()
    clock.advance(100)
    assert before + 100 <= clock.time() <= time.time() + 100
    mono = time.monotonic()
    assert mono + 100 <= clock.monotonic() <= time.monotonic() + 100


def test_frozen_it_moves_only_when_advanced_and_release_returns_to_real_time() -> None:
    clock = SteeredClock()
    clock.freeze()
    wall, mono = clock.time(), clock.monotonic()
    time.sleep(0.01)
    assert (clock.time(), clock.monotonic()) == (wall, mono)
    clock.advance(0.45)
    assert (clock.time(), clock.monotonic()) == (wall + 0.45, mono + 0.45)
    clock.release()
    before = time.time()
    assert before <= clock.time() <= time.time()


async def test_sleep_advances_a_frozen_clock_instead_of_waiting() -> None:
    clock = SteeredClock()
    clock.freeze()
    mono = clock.monotonic()
    await clock.sleep(3600)
    assert clock.monotonic() == mono + 3600

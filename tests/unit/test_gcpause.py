"""GC pause observation and the start-up freeze."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from processors.gcpause import freeze_long_lived_objects, observe_gc_pauses


def _collections(generation: int) -> float:
    value = REGISTRY.get_sample_value("qi_gc_pause_seconds_count", {"generation": str(generation)})
    return value or 0.0


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_every_full_collection_is_timed() -> None:
    observe_gc_pauses()
    observe_gc_pauses()  # a second call adds no second callback
    before = _collections(2)
    gc.collect()
    assert _collections(2) == before + 1


def test_freezing_moves_survivors_out_of_full_collections(unfrozen: None) -> None:
    kept = [[n] for n in range(10_000)]  # long-lived container objects
    frozen = freeze_long_lived_objects()
    assert frozen >= len(kept)
    # Frozen objects that die later leave the permanent generation (another thread of the
    # test process may drop some at any moment), so the count can only have gone down.
    assert len(kept) <= gc.get_freeze_count() <= frozen
    in_full_collections = {id(o) for o in gc.get_objects(generation=2)}
    assert not any(id(x) in in_full_collections for x in kept)

"""Garbage-collector pauses of the worker: measured, and kept short.

A full (generation 2) collection walks every tracked object of the process. After start-up the
worker holds several hundred thousand of them (Faust, aiokafka, pydantic and fastavro
internals, compiled schemas), and each full collection stopped the event loop for 55 to 75 ms
on the 2-core reference machine; those pauses were the whole of the worker's p99 latency tail
(deliveries sent during one arrived 60 to 100 ms late). None of those objects ever become
garbage, so once the worker has started they are moved to the permanent generation with
:func:`gc.freeze`: full collections then walk only what was allocated since, and cost a few
milliseconds. Collection itself stays on; reference cycles made later are still collected.

Pauses are exported as ``qi_gc_pause_seconds{generation}`` so an operator sees them on the
dashboard next to delivery latency.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import Histogram

__all__ = ["GC_PAUSE_SECONDS", "freeze_long_lived_objects", "observe_gc_pauses"]

GC_PAUSE_SECONDS = Histogram(
    "qi_gc_pause_seconds",
    "Time the garbage collector stopped the process, by generation.",
    ["generation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
)

_installed = False


def observe_gc_pauses() -> None:
    """Record every collection's duration in :data:`GC_PAUSE_SECONDS` (idempotent)."""
    global _installed  # noqa: PLW0603  (one callback per process)
    if _installed:
        return
    started: list[float] = [0.0]
    children = {str(gen): GC_PAUSE_SECONDS.labels(str(gen)) for gen in range(3)}

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        child = children.get(str(info.get("generation")))
        if child is not None:
            child.observe(time.perf_counter() - started[0])

    gc.callbacks.append(callback)
    _installed = True


def freeze_long_lived_objects() -> int:
    """Collect once, then move every surviving object to the permanent generation.

    Returns how many objects were frozen (for the log line). Call it once the process has
    started and its long-lived state exists; calling it again freezes what was added since.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()

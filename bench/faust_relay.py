"""A bare Faust relay: the worker's app and settings with one agent that copies records.

``python -m bench.faust_relay SOURCE SINK`` builds :func:`processors.app.worker_app` from the
environment's settings (the same producer, consumer, batching and commit settings as the
worker) and registers one agent that takes batches from ``SOURCE`` exactly as the routing
agent does (``take_events`` with the routing batch size and window, an extra reference per
message, every record sent before any acknowledgement is awaited) and produces each value to
``SINK`` unchanged. No parsing, no Redis, no encoding.

``bench/routing.py`` runs it beside the bare confluent-kafka loop: what it reaches is the
ceiling of a Faust agent on this machine, so the routing agent's own cost is the gap between
this relay and the worker.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable
from typing import NoReturn

import faust

from processors.agents.streams import concrete_stream, hold_batches, raw_topic
from processors.app import worker_app
from processors.records import ConsumedRecord
from processors.settings import Settings


def relay_app(settings: Settings, source: str, sink: str) -> faust.App:
    """The worker's app with one relay agent from ``source`` to ``sink``."""
    app = worker_app(settings)

    async def copy(records: list[ConsumedRecord]) -> None:
        acks: list[Awaitable[object]] = [
            await app.producer.send(sink, record.key, record.value, None, None, None)
            for record in records
        ]
        await asyncio.gather(*acks)

    @app.agent(raw_topic(app, source), name="relay")
    async def relay(stream: faust.StreamT[bytes]) -> None:
        await hold_batches(
            concrete_stream(stream).take_events(
                settings.routing.batch_size, within=settings.routing.batch_within_seconds
            ),
            copy,
        )

    return app


def main() -> NoReturn:
    parser = argparse.ArgumentParser(prog="python -m bench.faust_relay", description=__doc__)
    parser.add_argument("source")
    parser.add_argument("sink")
    parser.add_argument("--loglevel", default="warning")
    args = parser.parse_args()
    app = relay_app(Settings(), args.source, args.sink)
    worker = faust.Worker(app, loglevel=args.loglevel, override_logging=False, quiet=True)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()

"""``queast-integrations preview --tenant T --connector C [--json] FILE``.

Shows what the tenant's connection to the connector would send for the domain event in
``FILE`` (one JSON object, as published to ``queast.domain-events``; ``-`` reads standard
input), through :class:`~processors.operations.preview.PreviewService`: nothing is sent to the
partner and nothing is written. On a terminal the answer is drawn with rich; with ``--json``
the last line of standard output is the answer as one JSON object (the API's body).

Exit codes (:mod:`processors.operations.commands`): 0 the preview was made (whatever its
outcome, a skip included); 2 bad input: a missing, unreadable or oversized file (over
``QI_ROUTING_MAX_EVENT_BYTES``, the router's limit), an event the router would refuse (its
reason), a malformed tenant id, an unregistered connector, or a tenant without that
connection; 1 Redis unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from rich.console import Console
from rich.markup import escape

from processors.operations.commands import EXIT_OK, EXIT_USAGE, SubCommands
from processors.settings import Settings

if TYPE_CHECKING:
    from processors.operations.preview import Preview

__all__ = ["register"]

_TENANT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class _InputError(Exception):
    """Bad input, said on stderr with exit code 2."""


def register(commands: SubCommands) -> None:
    """Add ``preview`` to ``commands``."""
    parser = commands.add_parser(
        "preview",
        help="show what a connection would send for one domain event (nothing is sent)",
    )
    parser.add_argument("--tenant", required=True, help="the tenant id")
    parser.add_argument("--connector", required=True, help="the connection's connector")
    parser.add_argument(
        "--json", action="store_true", dest="as_json", help="print the answer as one JSON line"
    )
    parser.add_argument("file", help="a file holding one domain event as JSON ('-': stdin)")
    parser.set_defaults(handler=_cmd_preview)


def _read_limited(stream: BinaryIO, limit: int) -> bytes:
    data = stream.read(limit + 1)
    if len(data) > limit:
        msg = f"the event is over {limit} bytes (QI_ROUTING_MAX_EVENT_BYTES)"
        raise _InputError(msg)
    return data


def _read_event(name: str, limit: int) -> bytes:
    if name == "-":
        return _read_limited(sys.stdin.buffer, limit)
    path = Path(name)
    if not path.is_file():
        msg = f"no such file: {path}"
        raise _InputError(msg)
    try:
        with path.open("rb") as stream:
            return _read_limited(stream, limit)
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror or type(exc).__name__}"
        raise _InputError(msg) from None


def _cmd_preview(settings: Settings, args: argparse.Namespace) -> int:
    from connectors.registry import registered  # noqa: PLC0415  (heavy: every connector)
    from processors.operations.preview import ConnectionNotFoundError  # noqa: PLC0415
    from processors.routing import InvalidEventError  # noqa: PLC0415

    err = Console(stderr=True, soft_wrap=True)
    tenant, connector = str(args.tenant), str(args.connector)
    try:
        if not _TENANT_ID.fullmatch(tenant):
            msg = "--tenant must be 1 to 64 letters, digits, '_' or '-'"
            raise _InputError(msg)
        if connector not in registered():
            msg = f"--connector must be one of {', '.join(registered())}"
            raise _InputError(msg)
        event = _read_event(str(args.file), settings.routing.max_event_bytes)
        preview = asyncio.run(_preview(settings, tenant, connector, event))
    except _InputError as exc:
        err.print(f"[red]preview:[/] {escape(str(exc))}")
        return EXIT_USAGE
    except InvalidEventError as exc:
        err.print(
            f"[red]preview: the router would refuse this event:[/] {exc.reason.value}: "
            f"{escape(exc.detail)}"
        )
        return EXIT_USAGE
    except ConnectionNotFoundError:
        err.print(f"[red]preview:[/] tenant {tenant} has no {connector} connection")
        return EXIT_USAGE
    if args.as_json:
        print(preview.model_dump_json())
    else:
        _show(Console(soft_wrap=True), preview)
    return EXIT_OK


async def _preview(settings: Settings, tenant: str, connector: str, event: bytes) -> Preview:
    from processors.operations.preview import PreviewService  # noqa: PLC0415
    from processors.redis_client import redis_client  # noqa: PLC0415
    from processors.tenants.models import Connector  # noqa: PLC0415

    redis = redis_client(settings.redis)
    try:
        service = PreviewService(redis, settings=settings)
        return await service.preview(tenant, Connector(connector), event)
    finally:
        await redis.aclose()


def _show(console: Console, preview: Preview) -> None:
    """The preview for a person: outcome first, then each destination and its requests."""
    reason = f" ({escape(preview.reason)})" if preview.reason else ""
    console.print(
        f"[bold]{preview.tenant_id}[/] / [bold]{preview.connector}[/]"
        f" {preview.connection_id or ''}: {preview.event_type} {preview.event_id}"
        f" -> [bold]{preview.outcome.value}[/]{reason}"
    )
    if preview.detail:
        console.print(f"  {escape(preview.detail)}")
    for destination in preview.destinations:
        copy = " (webhook copy)" if destination.webhook_copy else ""
        reason = f" ({escape(destination.reason)})" if destination.reason else ""
        console.rule(f"{destination.connector}{copy}: {destination.outcome.value}{reason}")
        console.print(
            f"topic {destination.topic}, {destination.contract} {destination.schema_version},"
            f" idempotency key {destination.idempotency_key}"
        )
        console.print_json(json.dumps(destination.record))
        for number, request in enumerate(destination.requests, start=1):
            console.print(
                f"[bold]{number}. {request.method} {escape(request.url)}[/] ({request.purpose})"
            )
            if request.note:
                console.print(f"   [italic]{escape(request.note)}[/]")
            for name, value in request.headers.items():
                console.print(f"   {escape(name)}: {escape(value)}")
            if request.body is not None:
                console.print_json(json.dumps(request.body))
        for note in destination.identity:
            console.print(f"identity: {escape(note)}")
    for note in preview.notes:
        console.print(f"[dim]{escape(note)}[/]")

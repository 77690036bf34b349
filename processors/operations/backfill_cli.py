"""``queast-integrations backfill``: map a tenant's past domain events again (see :mod:`.backfill`).

``backfill --tenant T [--connector C] (--since ISO8601 | --from-offset N) [--until ISO8601]
[--dry-run] [--json]``. A progress bar on a terminal; with ``--json`` the last line of stdout
is ``{"backfill_id": str, "matched": int, "exported": int, "dry_run": bool}``. Exit codes as
in :mod:`.commands`: 2 for a request that cannot be run (nothing read or produced), 1 for a run
that failed (:mod:`.errors`), for one refused because another backfill of the tenant's
connection is running, and for one cancelled (through the API) before its end; the last two say
so on stderr. The run is recorded like one the API starts (``GET …/backfills/{id}``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from dataclasses import fields

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from connectors.registry import registered
from processors.operations.backfill import (
    BackfillReport,
    BackfillRequest,
    run_backfill,
)
from processors.operations.commands import EXIT_FAILED, EXIT_OK, SubCommands, aware_time
from processors.operations.runs import ActiveRunError, RunStatus
from processors.routing import service as routing_service
from processors.settings import Settings

__all__ = ["register"]


def register(commands: SubCommands) -> None:
    """Add ``backfill`` to the command table."""
    parser = commands.add_parser(
        "backfill", help="map a tenant's past domain events again with today's connections"
    )
    parser.add_argument("--tenant", dest="tenant_id", required=True, help="the tenant id")
    parser.add_argument("--connector", choices=registered(), help="only this connection")
    start = parser.add_mutually_exclusive_group(required=True)
    start.add_argument("--since", type=aware_time, help="first event time (ISO 8601, with zone)")
    start.add_argument("--from-offset", type=int, help="first offset of the tenant's partition")
    parser.add_argument("--until", type=aware_time, help="last event time (default: now)")
    parser.add_argument("--dry-run", action="store_true", help="map and count; produce nothing")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.set_defaults(handler=_run)


def _run(settings: Settings, args: argparse.Namespace) -> int:
    # The live path logged each invalid event when it first saw it; a backfill counts them.
    logging.getLogger(routing_service.__name__).setLevel(logging.ERROR)
    request = BackfillRequest(**{f.name: getattr(args, f.name) for f in fields(BackfillRequest)})
    try:
        if args.json or not sys.stdout.isatty():
            report = asyncio.run(run_backfill(settings, request))
        else:
            report = _with_progress(settings, request)
    except ActiveRunError as exc:
        print(f"backfill: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(report.summary()))
    else:
        _print(report)
    if report.status is not RunStatus.COMPLETED:
        print(f"backfill {report.backfill_id} {report.status.value}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _with_progress(settings: Settings, request: BackfillRequest) -> BackfillReport:
    columns = (
        TextColumn("backfill"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("offsets"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("backfill", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return asyncio.run(run_backfill(settings, request, progress=advance))


def _print(report: BackfillReport) -> None:
    verb = "would export" if report.dry_run else "exported"
    per = ", ".join(f"{name}: {count}" for name, count in sorted(report.by_connector.items()))
    print(
        f"backfill {report.backfill_id}: {report.matched} event(s) of the tenant read, "
        f"{verb} {report.exported}{f' ({per})' if per else ''}, "
        f"{report.invalid} invalid, {report.skipped} taken by no connection"
    )

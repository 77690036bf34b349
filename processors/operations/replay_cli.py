"""``queast-integrations replay``: deliver a tenant's exported artifacts of a connector again.

::

    queast-integrations replay --tenant T --connector C [--since ISO8601] [--until ISO8601]
                               [--event-type E ...] [--dry-run] [--json]

What it reads and sends: :mod:`processors.operations.replay`. Times are ISO 8601 with a zone
(``2026-12-04T10:00:00Z``); ``--until`` defaults to now, ``--since`` to an hour before
``--until`` (``QI_REPLAY_DEFAULT_WINDOW_SECONDS``). The run's id is said on stderr when it
starts (follow it with ``GET /v1/tenants/T/replays/ID``).

Output: on a terminal, a progress bar on stderr (not with ``--json``, not when stderr is not a
terminal), then a summary on stdout; a dry run also prints up to five sample payloads. With
``--json`` stdout holds JSON lines only: a dry run's samples, ``{"sample": {...}}`` each, and
always as the last line ``{"replay_id": str, "matched": int, "queued": int, "dry_run": bool}``.

Exit codes (:mod:`processors.operations.commands`): 0 the run completed; 1 the broker or Redis
is unreachable, the copies were refused, another replay of the connection is running (named on
stderr), or the run was cancelled; 2 bad input (a time without a zone, a window over the
maximum, an unknown connector or event type, a connection the tenant does not have). The
operator's rate of the API (``QI_REPLAY_RUNS_PER_HOUR``) does not bind this command.

The command's module is imported with every ``queast-integrations`` start (the parser is built
from it), so the replay service and its Kafka and Redis clients are imported when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import TYPE_CHECKING

from rich.console import Console

from processors.operations.commands import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    SubCommands,
    aware_time,
)

if TYPE_CHECKING:
    from processors.operations.replay import ReplayOutcome, ReplayService
    from processors.operations.runs import RunRecord
    from processors.settings import Settings

__all__ = ["register"]

_err = Console(stderr=True, soft_wrap=True, highlight=False)


def register(commands: SubCommands) -> None:
    """Add ``replay`` to the command table."""
    parser = commands.add_parser(
        "replay",
        help="deliver a tenant's exported artifacts of a connector again",
        description="Deliver a tenant's exported artifacts again, from history, with a replay id.",
    )
    parser.add_argument("--tenant", required=True, help="tenant id")
    parser.add_argument("--connector", required=True, help="connector (its export topic)")
    parser.add_argument("--since", type=aware_time, help="ISO 8601 with zone (default: 1 h ago)")
    parser.add_argument("--until", type=aware_time, help="ISO 8601 with zone (default: now)")
    parser.add_argument(
        "--event-type",
        action="append",
        default=[],
        dest="event_types",
        metavar="E",
        help="only this event type (repeatable)",
    )
    parser.add_argument("--dry-run", action="store_true", help="count and show samples only")
    parser.add_argument("--json", action="store_true", help="JSON lines on stdout")
    parser.set_defaults(handler=_cmd_replay)


def _cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_replay(settings, args))


async def _replay(settings: Settings, args: argparse.Namespace) -> int:
    # imported here: the service pulls in the clients
    from processors.operations.replay import (  # noqa: PLC0415  (see above)
        ReplayFailedError,
        ReplayInputError,
        ReplayRequest,
        ReplayService,
    )
    from processors.operations.runs import ActiveRunError, RunStatus  # noqa: PLC0415
    from processors.redis_client import redis_client  # noqa: PLC0415

    request = ReplayRequest(
        tenant_id=args.tenant,
        connector=args.connector,
        since=args.since,
        until=args.until,
        event_types=tuple(args.event_types),
        dry_run=args.dry_run,
        requested_by="cli",
    )
    redis = redis_client(settings.redis)
    try:
        service = ReplayService(settings, redis)
        try:
            run = await service.start(request)
        except ReplayInputError as exc:
            _err.print(f"[red]replay:[/] {exc.field}: {exc.message}")
            return EXIT_USAGE
        except ActiveRunError as exc:
            _err.print(f"[red]replay:[/] {exc}")
            return EXIT_FAILED
        _err.print(f"replay {run.run_id} started{' (dry run)' if run.dry_run else ''}")
        try:
            outcome = await _execute(service, run, show_progress=not args.json)
        except ReplayFailedError as exc:
            _err.print(f"[red]replay {run.run_id} failed:[/] {exc}")
            return EXIT_FAILED
    finally:
        await redis.aclose()
    _report(outcome, as_json=args.json)
    if outcome.run.status is not RunStatus.COMPLETED:
        _err.print(f"[red]replay {run.run_id} {outcome.run.status.value}[/]")
        return EXIT_FAILED
    return EXIT_OK


async def _execute(service: ReplayService, run: RunRecord, *, show_progress: bool) -> ReplayOutcome:
    from rich.progress import (  # noqa: PLC0415  (terminal only)
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    if not (show_progress and _err.is_terminal):
        return await service.execute(run)
    columns = (
        TextColumn("reading history"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=_err, transient=True) as progress:
        task = progress.add_task("replay", total=None)

        def advance(read: int, total: int) -> None:
            progress.update(task, completed=read, total=total)

        return await service.execute(run, on_progress=advance)


def _report(outcome: ReplayOutcome, *, as_json: bool) -> None:
    run = outcome.run
    if as_json:
        for sample in outcome.samples:
            print(json.dumps({"sample": sample}, default=str))
        summary = {
            "replay_id": run.run_id,
            "matched": run.matched,
            "queued": run.queued,
            "dry_run": run.dry_run,
        }
        print(json.dumps(summary))
        return
    verb = "would send" if run.dry_run else "queued"
    count = run.matched if run.dry_run else run.queued
    print(
        f"replay {run.run_id} {run.status.value}: {run.matched} artifact(s) matched,"
        f" {verb} {count} (duplicates {run.duplicates}, malformed {run.malformed})"
    )
    for sample in outcome.samples:
        print(json.dumps(sample, indent=2, default=str))
    if not run.dry_run:
        print(f"follow it: GET /v1/tenants/{run.tenant_id}/replays/{run.run_id}")

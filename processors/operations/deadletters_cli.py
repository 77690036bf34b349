"""``queast-integrations dlq``: list and redrive dead letters, repair invalid input.

::

    dlq list --tenant T --connector C [--since ISO8601] [--error KIND] [--limit N]
             [--from-offset N] [--json]
    dlq list --invalid [--tenant T] [--since ISO8601] [--limit N] [--json]
    dlq redrive --tenant T --connector C [--since ISO8601] [--error KIND] [--id P:O ...]
                [--dry-run] [--json]
    dlq export-invalid --out FILE [--tenant T] [--since ISO8601] [--json]
    dlq republish FILE [--tenant T] [--dry-run] [--json]

What each does is in :mod:`.deadletters` and :mod:`.deadletters_invalid`. Output:

- ``list`` prints a table (rich) and never a record's value; with ``--json`` it prints one
  line, one JSON object: ``{"items": [row, ...], "next_cursor": str | null}`` for dead letters
  (the API's page; ``next_cursor`` is the offset to pass as ``--from-offset``), and
  ``{"items": [...], "more": bool}`` for invalid input. The rows are at most ``--limit``
  (default 100); a note on stderr says when more match.
- ``redrive``, ``republish``: with ``--json`` the last line of stdout is the summary object
  (``{"redrive_id", "matched", "queued", "dry_run", "from_original", "unrecoverable"}``,
  ``{"republish_id", "matched", "queued", "dry_run", "refused"}``); what could not be sent, or
  is refused, is listed on stderr (offset or line, and why).
- ``redrive --id P:O`` (repeatable, at most 500) sends only those dead letters (the ``id`` a
  listing shows); an id that is no dead letter of the tenant matching the filter is counted
  as ``not_found`` in the summary and never sent.
- ``export-invalid`` writes payloads, to the new file ``--out`` only (mode 0600, an existing
  file is refused); its summary names how many were written and each skipped record.

Exit codes (:mod:`.commands`): 2 for bad input (an unknown connector, a time without a time
zone, a malformed error kind or tenant, a missing or existing file, a republish file with a line
the router would refuse: nothing is published then); 1 when Kafka cannot be read or written, or
when a redrive (not a dry run) left unrecoverable dead letters; 0 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Final

from rich.console import Console
from rich.table import Table

from connectors.registry import registered
from processors.auth import TENANT_ID_PATTERN
from processors.operations.commands import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    SubCommands,
    aware_time,
)
from processors.operations.deadletters import (
    MAX_SELECTED,
    DeadLetterFilter,
    DeadLetterService,
    error_kind,
    parse_dead_letter_id,
    rows_json,
)
from processors.operations.history import HistoryError
from processors.operations.reinject import ReinjectError
from processors.publishing import PublishError
from processors.settings import Settings
from processors.topics import TopicMap

__all__ = ["register"]

_err = Console(stderr=True, soft_wrap=True)

_MAX_LINE_BYTES: Final = 1024 * 1024
"""The longest line ``republish`` reads (the ``publish`` command's default)."""


def _tenant(text: str) -> str:
    if not re.fullmatch(TENANT_ID_PATTERN, text):
        msg = "a tenant id is 1 to 64 letters, digits, '_' or '-'"
        raise argparse.ArgumentTypeError(msg)
    return text


def _kind(text: str) -> str:
    try:
        return error_kind(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        msg = f"not a positive integer: {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return number


def _offset(text: str) -> int:
    if not text.isdigit():
        msg = f"not an offset: {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


def _dead_letter_id(text: str) -> tuple[int, int]:
    try:
        return parse_dead_letter_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _topics(settings: Settings) -> TopicMap:
    return TopicMap(settings.topics.prefix)


def _service(settings: Settings) -> DeadLetterService:
    return DeadLetterService(settings.kafka, _topics(settings))


def _filter(args: argparse.Namespace) -> DeadLetterFilter:
    return DeadLetterFilter(
        tenant_id=args.tenant, connector=args.connector, since=args.since, error=args.error
    )


def _time(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def _cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    if args.invalid:
        return _list_invalid(settings, args)
    if args.tenant is None or args.connector is None:
        _err.print("[red]dlq list:[/] --tenant and --connector are required (or --invalid)")
        return EXIT_USAGE
    try:
        page = _service(settings).listing(
            _filter(args), limit=args.limit, from_offset=args.from_offset
        )
    except HistoryError as exc:
        _err.print(f"[red]dlq list:[/] {exc}")
        return EXIT_FAILED
    cursor = None if page.next_offset is None else str(page.next_offset)
    if args.json:
        print(json.dumps({"items": rows_json(page.rows), "next_cursor": cursor}))
    elif not page.rows:
        print(f"no dead letters of {args.tenant} ({args.connector}) in that window")
    else:
        table = Table(title=f"dead letters of {args.tenant} ({args.connector})")
        for column in (
            "offset",
            "error",
            "status",
            "attempts",
            "last error",
            "first attempt",
            "last attempt",
            "idempotency key",
            "event type",
            "entity",
        ):
            table.add_column(column)
        for row in page.rows:
            table.add_row(
                str(row.offset),
                row.error_class or "",
                "" if row.status_code is None else str(row.status_code),
                "" if row.attempts is None else str(row.attempts),
                row.error_reason or "",
                _time(row.first_attempt_at),
                _time(row.last_attempt_at),
                row.idempotency_key or "",
                row.event_type or "",
                row.entity_id or "",
            )
        Console(soft_wrap=True).print(table)
    if cursor is not None:
        _err.print(f"more dead letters match: continue with --from-offset {cursor}")
    return EXIT_OK


def _list_invalid(settings: Settings, args: argparse.Namespace) -> int:
    from processors.operations.deadletters_invalid import list_invalid  # noqa: PLC0415

    if args.connector is not None or args.error is not None or args.from_offset is not None:
        _err.print("[red]dlq list --invalid:[/] takes --tenant, --since and --limit only")
        return EXIT_USAGE
    try:
        rows, more = list_invalid(
            settings.kafka,
            _topics(settings),
            tenant_id=args.tenant,
            since=args.since,
            limit=args.limit,
        )
    except HistoryError as exc:
        _err.print(f"[red]dlq list --invalid:[/] {exc}")
        return EXIT_FAILED
    if args.json:
        items = [json.loads(row.model_dump_json()) for row in rows]
        print(json.dumps({"items": items, "more": more}))
    elif not rows:
        print("no invalid events in that window")
    else:
        table = Table(title=f"invalid events{'' if args.tenant is None else ' of ' + args.tenant}")
        for column in ("partition", "offset", "reason", "detail", "bytes", "original"):
            table.add_column(column)
        for row in rows:
            table.add_row(
                str(row.partition),
                str(row.offset),
                row.reason or "",
                row.detail or "",
                "" if row.value_bytes is None else str(row.value_bytes),
                row.original or "",
            )
        Console(soft_wrap=True).print(table)
    if more:
        _err.print("more invalid events match: narrow with --since or raise --limit")
    return EXIT_OK


def _cmd_redrive(settings: Settings, args: argparse.Namespace) -> int:
    service = _service(settings)
    chosen = _filter(args)
    if args.ids:
        if len(set(args.ids)) > MAX_SELECTED:
            _err.print(f"[red]dlq redrive:[/] at most {MAX_SELECTED} --id")
            return EXIT_USAGE
        chosen = dataclasses.replace(chosen, selected=frozenset(args.ids))
    try:
        with _err.status("reading dead letters...") as status:
            report = service.redrive(
                chosen,
                dry_run=args.dry_run,
                on_progress=lambda n: status.update(f"queued {n:,} copies..."),
            )
    except (HistoryError, ReinjectError) as exc:
        _err.print(f"[red]dlq redrive:[/] {exc}")
        return EXIT_FAILED
    _warn_each(
        "unrecoverable",
        (f"offset {u.offset} key {u.idempotency_key}: {u.reason}" for u in report.unrecoverable),
    )
    if args.json:
        print(json.dumps(report.summary()))
    else:
        verb = "would queue" if report.dry_run else "queued"
        count = report.matched - len(report.unrecoverable) if report.dry_run else report.queued
        print(
            f"redrive {report.redrive_id}: {report.matched} dead letter(s) matched, {verb}"
            f" {count} ({report.from_original} from their export),"
            f" {len(report.unrecoverable)} unrecoverable"
            + (f", {report.not_found} selected id(s) not found" if args.ids else "")
        )
    return EXIT_FAILED if report.unrecoverable and not report.dry_run else EXIT_OK


def _warn_each(label: str, lines: Iterable[str]) -> None:
    """One yellow ``label:`` line on stderr per record a command left out."""
    for line in lines:
        _err.print(f"[yellow]{label}:[/] {line}")


def _cmd_export_invalid(settings: Settings, args: argparse.Namespace) -> int:
    from processors.operations.deadletters_invalid import export_invalid  # noqa: PLC0415

    out = Path(args.out)
    if out.exists() or out.is_symlink():
        _err.print(f"[red]dlq export-invalid:[/] {out} exists; choose a new file")
        return EXIT_USAGE
    if not out.parent.is_dir():
        _err.print(f"[red]dlq export-invalid:[/] no such directory: {out.parent}")
        return EXIT_USAGE
    try:
        report = export_invalid(
            settings.kafka, _topics(settings), tenant_id=args.tenant, out=out, since=args.since
        )
    except FileExistsError:
        _err.print(f"[red]dlq export-invalid:[/] {out} exists; choose a new file")
        return EXIT_USAGE
    except HistoryError as exc:
        _err.print(f"[red]dlq export-invalid:[/] {exc}")
        return EXIT_FAILED
    _warn_each(
        "skipped",
        (f"partition {s.partition} offset {s.offset}: {s.reason}" for s in report.skipped),
    )
    summary = {"out": str(out), "exported": report.exported, "skipped": len(report.skipped)}
    print(json.dumps(summary) if args.json else f"wrote {report.exported} event(s) to {out}")
    return EXIT_OK


def _cmd_republish(settings: Settings, args: argparse.Namespace) -> int:
    from processors.operations.deadletters_invalid import republish  # noqa: PLC0415

    path = Path(args.file)
    if not path.is_file():
        _err.print(f"[red]dlq republish:[/] no such file: {path}")
        return EXIT_USAGE
    try:
        report = republish(
            path,
            kafka=settings.kafka,
            topics=_topics(settings),
            max_event_bytes=settings.routing.max_event_bytes,
            max_line_bytes=_MAX_LINE_BYTES,
            tenant_id=args.tenant,
            dry_run=args.dry_run,
        )
    except PublishError as exc:
        _err.print(f"[red]dlq republish:[/] {exc}")
        return EXIT_USAGE if "line is" in str(exc) or "cannot read" in str(exc) else EXIT_FAILED
    for refusal in report.refused:
        _err.print(f"[red]refused:[/] {path}:{refusal.line}: {refusal.reason}: {refusal.detail}")
    if report.refused:
        _err.print(f"{len(report.refused)} line(s) refused: nothing was published")
    if args.json:
        print(json.dumps(report.summary()))
    else:
        verb = "would publish" if report.dry_run or report.refused else "published"
        count = report.matched if report.dry_run else report.queued
        print(f"republish {report.republish_id}: {report.matched} line(s), {verb} {count}")
    return EXIT_USAGE if report.refused else EXIT_OK


def register(commands: SubCommands) -> None:
    """Add ``dlq`` and its actions to the command table."""
    dlq = commands.add_parser("dlq", help="list and redrive dead letters, repair invalid input")
    actions = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    connectors = sorted(registered())

    listing = actions.add_parser("list", help="list a tenant's dead letters (no payloads)")
    listing.add_argument("--tenant", type=_tenant)
    listing.add_argument("--connector", choices=connectors)
    listing.add_argument("--invalid", action="store_true", help="list invalid input instead")
    listing.add_argument("--since", type=aware_time, help="ISO 8601 time with a time zone")
    listing.add_argument("--error", type=_kind, help="error class, status code or reason code")
    listing.add_argument("--limit", type=_positive, default=100)
    listing.add_argument("--from-offset", type=_offset, help="continue a listing (next_cursor)")
    listing.add_argument("--json", action="store_true", help="one JSON object on one line")
    listing.set_defaults(handler=_cmd_list)

    redrive = actions.add_parser("redrive", help="send a tenant's dead letters again")
    redrive.add_argument("--tenant", type=_tenant, required=True)
    redrive.add_argument("--connector", choices=connectors, required=True)
    redrive.add_argument("--since", type=aware_time, help="ISO 8601 time with a time zone")
    redrive.add_argument("--error", type=_kind, help="error class, status code or reason code")
    redrive.add_argument(
        "--id",
        dest="ids",
        action="append",
        type=_dead_letter_id,
        metavar="P:O",
        help="only this dead letter (the id a listing shows); repeatable",
    )
    redrive.add_argument("--dry-run", action="store_true", help="count and resolve, send nothing")
    redrive.add_argument("--json", action="store_true", help="last line: the summary as JSON")
    redrive.set_defaults(handler=_cmd_redrive)

    export = actions.add_parser(
        "export-invalid", help="write invalid input's raw values to a new file (mode 0600)"
    )
    export.add_argument("--out", required=True, help="a new file; an existing one is refused")
    export.add_argument("--tenant", type=_tenant)
    export.add_argument("--since", type=aware_time, help="ISO 8601 time with a time zone")
    export.add_argument("--json", action="store_true", help="last line: the summary as JSON")
    export.set_defaults(handler=_cmd_export_invalid)

    again = actions.add_parser(
        "republish", help="publish fixed domain events from a JSON-lines file"
    )
    again.add_argument("file")
    again.add_argument("--tenant", type=_tenant, help="refuse lines of any other tenant")
    again.add_argument("--dry-run", action="store_true", help="check every line, publish nothing")
    again.add_argument("--json", action="store_true", help="last line: the summary as JSON")
    again.set_defaults(handler=_cmd_republish)

"""``queast-integrations tenant purge T [--dry-run] [--json] [--yes]``: offboard one tenant.

Removes the tenant's Redis state (:mod:`processors.operations.purge`: what is removed and what
is not). ``--dry-run`` lists the key families and counts and deletes nothing. Without
``--yes`` the command shows the same list and asks on a terminal; with no terminal to ask on
it refuses (exit 2) rather than delete unasked. A declined prompt deletes nothing (exit 1).
With ``--json`` the last line of stdout is ``{"tenant_id", "deleted", "families",
"dry_run"}``. An empty or invalid tenant id, or a tenant Redis knows nothing of, is exit 2
with nothing deleted.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.prompt import Confirm
from rich.table import Table

from processors.operations.commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from processors.operations.purge import PurgeError, PurgeReport, TenantPurge
from processors.redis_client import redis_client

if TYPE_CHECKING:
    import argparse

    from processors.operations.commands import SubCommands
    from processors.settings import Settings

__all__ = ["register"]

_err = Console(stderr=True, soft_wrap=True)


def register(commands: SubCommands) -> None:
    """Add ``tenant purge`` to the command table."""
    tenant = commands.add_parser("tenant", help="offboard a tenant")
    actions = tenant.add_subparsers(dest="tenant_command", required=True, metavar="ACTION")
    purge = actions.add_parser(
        "purge", help="remove a tenant's Redis state (connections, secrets, grants, mappings)"
    )
    purge.add_argument("tenant_id", help="the tenant to remove")
    purge.add_argument("--dry-run", action="store_true", help="count the keys, delete nothing")
    purge.add_argument("--json", action="store_true", help="end with one JSON line on stdout")
    purge.add_argument("--yes", action="store_true", help="do not ask before deleting")
    purge.set_defaults(handler=run_purge)


def _show(report: PurgeReport, console: Console) -> None:
    verb = "would remove" if report.dry_run else "removed"
    table = Table(title=f"tenant {report.tenant_id}: keys {verb}")
    table.add_column("family")
    table.add_column("keys", justify="right")
    for family, count in report.families.items():
        table.add_row(family, str(count))
    console.print(table)


def run_purge(settings: Settings, args: argparse.Namespace) -> int:
    """The command's handler (see the module doc)."""
    tenant_id: str = args.tenant_id

    async def purge(*, dry_run: bool) -> PurgeReport:
        redis = redis_client(settings.redis)
        try:
            service = TenantPurge(redis, key_prefix=settings.redis.key_prefix)
            return await service.purge(tenant_id, dry_run=dry_run)
        finally:
            await redis.aclose()

    out = Console(soft_wrap=True)
    try:
        if not args.dry_run and not args.yes:
            if not sys.stdin.isatty():
                _err.print(
                    "[red]tenant purge:[/] refusing to delete without --yes: no terminal to"
                    " ask on (try --dry-run first)"
                )
                return EXIT_USAGE
            _show(asyncio.run(purge(dry_run=True)), _err)
            if not Confirm.ask(f"Delete these keys of tenant {tenant_id}?", console=_err):
                _err.print("tenant purge: nothing deleted")
                return EXIT_FAILED
        report = asyncio.run(purge(dry_run=args.dry_run))
    except PurgeError as exc:
        _err.print(f"[red]tenant purge:[/] {exc}; nothing deleted")
        return EXIT_USAGE
    if args.json:
        print(json.dumps(report.as_json(), sort_keys=True))
    else:
        _show(report, out)
        total = sum(report.families.values())
        print(f"{total} key(s) {'would be removed (dry run)' if report.dry_run else 'removed'}")
    return EXIT_OK

"""The ``queast-integrations`` command.

Commands (``queast-integrations COMMAND --help`` for each):

- ``worker``: run the Faust worker (routing agent) and its ``/metrics`` endpoint;
- ``api --port P``: run the HTTP API;
- ``topics ensure [--dry-run]``: create every topic with the configured partition count and
  retention, and set the retention of existing topics where it differs (idempotent);
- ``publish FILE``: publish domain events from a JSON-lines file, keyed by tenant id;
- ``connections seed FILE``: load the allowlist and connections from a JSON file;
- ``connections init``: write the configuration epoch alone (a deployment that starts empty);
- ``keys rotate``: re-wrap every stored secret under the newest key;
- ``demo``: the local end-to-end run behind ``make run``;
- the operator commands of :mod:`processors.operations.commands` (replay, backfill, dead
  letters, preview, ...).

Exit codes: 0 success, 1 the operation failed (broker or Redis unreachable, records refused),
2 bad usage or bad input (a missing or malformed file, invalid settings, or settings the
worker or the API refuse to start with outside ``QI_ENV=development``: see
:mod:`processors.startup`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from confluent_kafka import KafkaException
from pydantic import ValidationError
from redis.exceptions import RedisError
from rich.console import Console

from processors.operations.commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE, register_all
from processors.operations.errors import RunFailedError, RunRequestError
from processors.secrets import KeyRingError
from processors.settings import Settings, get_settings
from processors.startup import Component, UnsafeSettingsError, check_startup
from processors.topics import TopicMap

__all__ = ["main"]


_err = Console(stderr=True, soft_wrap=True)


def _warn_about_relaxed_settings(settings: Settings) -> None:
    """Log, at start of a long-running process, each safety default the settings turn off."""
    if settings.webhook.allow_private_networks:
        logging.getLogger("processors.settings").warning(
            "settings.webhook.private_networks_allowed",
            extra={
                "setting": "QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS",
                "effect": "webhook deliveries may reach loopback, private and link-local "
                "addresses; for local development and tests only",
            },
        )


def _refused(settings: Settings, *components: Component) -> bool:
    """Print why ``settings`` may not run ``components`` (see processors.startup), if so."""
    try:
        for component in components:
            check_startup(settings, component=component)
    except UnsafeSettingsError as exc:
        _err.print(f"[red]{exc}[/]")
        _err.print("(set QI_ENV=development to run with development secrets on purpose)")
        return True
    return False


def _cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    if _refused(settings, "worker"):
        return EXIT_USAGE
    return _run_worker(settings, args)


def _run_worker(settings: Settings, args: argparse.Namespace) -> int:
    import faust  # noqa: PLC0415  (heavy import, worker only)
    from prometheus_client import start_http_server  # noqa: PLC0415

    from processors.app import create_app  # noqa: PLC0415
    from processors.logs import configure_logging  # noqa: PLC0415

    configure_logging(args.loglevel, third_party_level=settings.log.third_party_level)
    _warn_about_relaxed_settings(settings)
    if settings.metrics.port:
        start_http_server(settings.metrics.port, addr=settings.metrics.host)
    app = create_app(settings)
    worker = faust.Worker(
        app,
        loglevel=args.loglevel,
        override_logging=False,
        redirect_stdouts=False,
        quiet=True,
    )
    worker.execute_from_commandline()


def _cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn  # noqa: PLC0415

    from processors.api import create_api  # noqa: PLC0415
    from processors.logs import configure_logging  # noqa: PLC0415

    if _refused(settings, "api"):
        return EXIT_USAGE
    configure_logging(args.loglevel, third_party_level=settings.log.third_party_level)
    _warn_about_relaxed_settings(settings)
    uvicorn.run(create_api(settings), host=args.host, port=args.port, log_config=None)
    return EXIT_OK


def _cmd_topics_ensure(settings: Settings, args: argparse.Namespace) -> int:
    from processors.kafka import TopicPartitionMismatchError  # noqa: PLC0415
    from processors.topicconfig import ensure_topic_configs, plan_topics  # noqa: PLC0415

    specs = TopicMap(settings.topics.prefix).all_specs(settings.topics.retention_days())
    try:
        if args.dry_run:
            plan = plan_topics(settings.kafka, settings.topics, specs)
        else:
            plan = ensure_topic_configs(settings.kafka, settings.topics, specs)
    except TopicPartitionMismatchError as exc:
        _err.print(f"[red]topics ensure: partition counts differ:[/] {exc}")
        return EXIT_FAILED
    create, change = ("would create", "would set") if args.dry_run else ("created", "set")
    for name in plan.created:
        print(f"{create:12} {name} ({settings.topics.partitions} partitions)")
    for result in plan.present:
        print(f"{'exists':12} {result.name} ({result.partitions} partitions)")
    for c in plan.changes:
        print(f"{change:12} {c.topic} {c.key}={c.wanted} (was {c.current})")
    for mismatch in plan.mismatched:
        _err.print(f"[red]partition count differs:[/] {mismatch}")
    print(
        f"{len(plan.created)} {create}, {len(plan.present)} already present,"
        f" {len(plan.changes)} configuration change(s){' (dry run)' if args.dry_run else ''}"
    )
    return EXIT_FAILED if plan.mismatched else EXIT_OK


def _cmd_publish(settings: Settings, args: argparse.Namespace) -> int:
    from processors.publishing import (  # noqa: PLC0415
        PublishError,
        iter_event_lines,
        publish_lines,
    )

    path = Path(args.file)
    if not path.is_file():
        _err.print(f"[red]publish:[/] no such file: {path}")
        return EXIT_USAGE
    topic = args.topic or TopicMap(settings.topics.prefix).domain_events
    try:
        lines = iter_event_lines(path, max_line_bytes=args.max_line_bytes)
        with _err.status("publishing...") as status:
            report = publish_lines(
                lines,
                kafka=settings.kafka,
                topic=topic,
                on_progress=lambda n: status.update(f"publishing... {n:,} records"),
            )
    except PublishError as exc:
        _err.print(f"[red]publish:[/] {exc}")
        return EXIT_USAGE if "line is" in str(exc) or "cannot read" in str(exc) else EXIT_FAILED
    print(
        f"published {report.published} record(s) to {topic}"
        f" ({report.without_key} without a tenant key)"
    )
    return EXIT_OK


def _cmd_connections_seed(settings: Settings, args: argparse.Namespace) -> int:
    from processors.tenants.seed import SeedError, seed_from_file  # noqa: PLC0415

    try:
        report = asyncio.run(seed_from_file(Path(args.file), settings=settings))
    except SeedError as exc:
        _err.print(f"[red]connections seed:[/] {exc}")
        return EXIT_USAGE
    print(f"allowlisted {report.allowlisted} tenant(s), stored {report.connections} connection(s)")
    return EXIT_OK


def _cmd_connections_init(settings: Settings, _args: argparse.Namespace) -> int:
    from processors.tenants.seed import initialise_configuration  # noqa: PLC0415

    epoch = asyncio.run(initialise_configuration(settings=settings))
    print(f"configuration epoch: {epoch}")
    return EXIT_OK


def _cmd_keys_rotate(settings: Settings, _args: argparse.Namespace) -> int:
    from processors.keyrotation import RotationReport, rotate_keys  # noqa: PLC0415
    from processors.redis_client import redis_client  # noqa: PLC0415

    async def run() -> RotationReport:
        redis = redis_client(settings.redis)
        try:
            return await rotate_keys(
                redis, key_prefix=settings.redis.key_prefix, box=settings.secrets.secret_box()
            )
        finally:
            await redis.aclose()

    report = asyncio.run(run())
    print(
        f"active key {report.newest_key_id}: {report.connections_scanned} connection(s) scanned,"
        f" {report.connections_updated} updated, {report.secrets_rewrapped} secret(s) re-wrapped,"
        f" {report.secrets_already_current} already current,"
        f" {report.secrets_sealed_from_plaintext} sealed from plaintext,"
        f" {report.grants_rewrapped} OAuth grant(s) re-sealed,"
        f" {report.grants_already_current} already current,"
        f" {report.grants_without_connection} without a connection (left as they are)"
    )
    for failure in report.failures:
        _err.print(
            f"[red]not re-wrapped:[/] tenant {failure.tenant_id} connector {failure.connector}"
            f" field {failure.path}: {failure.reason}"
        )
    return EXIT_OK if report.ok else EXIT_FAILED


def _cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from processors.demo import run_demo  # noqa: PLC0415

    if _refused(settings, "worker", "api"):
        return EXIT_USAGE
    return run_demo(settings, events=args.events, duration=args.duration)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="queast-integrations",
        description="Queast Integration Layer: Kafka stream processor and operator commands.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = commands.add_parser("worker", help="run the Faust worker")
    worker.add_argument("--loglevel", default="info", choices=["debug", "info", "warning"])
    worker.set_defaults(handler=_cmd_worker)

    api = commands.add_parser("api", help="run the HTTP API")
    api.add_argument("--port", type=int, default=8080)
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--loglevel", default="info", choices=["debug", "info", "warning"])
    api.set_defaults(handler=_cmd_api)

    topics = commands.add_parser("topics", help="manage topics")
    topic_commands = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    ensure = topic_commands.add_parser(
        "ensure", help="create every topic and set the configured retention (idempotent)"
    )
    ensure.add_argument("--dry-run", action="store_true", help="show the changes, make none")
    ensure.set_defaults(handler=_cmd_topics_ensure)

    publish = commands.add_parser("publish", help="publish domain events from a JSON-lines file")
    publish.add_argument("file")
    publish.add_argument("--topic", help="target topic (default: the domain events topic)")
    publish.add_argument("--max-line-bytes", type=int, default=1024 * 1024)
    publish.set_defaults(handler=_cmd_publish)

    connections = commands.add_parser("connections", help="manage connections")
    conn_commands = connections.add_subparsers(
        dest="connections_command", required=True, metavar="ACTION"
    )
    seed = conn_commands.add_parser("seed", help="load allowlist and connections from JSON")
    seed.add_argument("file")
    seed.set_defaults(handler=_cmd_connections_seed)
    init = conn_commands.add_parser(
        "init", help="write the configuration epoch (a deployment that starts with no tenants)"
    )
    init.set_defaults(handler=_cmd_connections_init)

    keys = commands.add_parser("keys", help="manage the secrets key ring")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    rotate = key_commands.add_parser(
        "rotate", help="re-wrap every stored secret and OAuth grant under the active key"
    )
    rotate.set_defaults(handler=_cmd_keys_rotate)

    demo = commands.add_parser("demo", help="the local end-to-end run (make run)")
    demo.add_argument("--events", type=int, default=200, help="valid sample events to publish")
    demo.add_argument(
        "--duration", type=float, default=0.0, help="stop after this many seconds (0: Ctrl-C)"
    )
    demo.set_defaults(handler=_cmd_demo)
    register_all(commands)
    return parser


def _failure(command: str, exc: Exception) -> tuple[str, str, int]:
    """How a command's error is said on stderr, and its exit code."""
    if isinstance(exc, KafkaException):
        return "Kafka error", str(exc.args[0]), EXIT_FAILED
    if isinstance(exc, RedisError):
        return "Redis error", f"{type(exc).__name__}: {exc}", EXIT_FAILED
    if isinstance(exc, RunRequestError):
        return command, str(exc), EXIT_USAGE
    return f"{command} failed", str(exc), EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValidationError as exc:
        for error in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(part) for part in error["loc"])
            _err.print(f"[red]invalid settings:[/] {where + ': ' if where else ''}{error['msg']}")
        return EXIT_USAGE
    except KeyRingError as exc:
        _err.print(f"[red]invalid QI_SECRETS_KEYS:[/] {exc}")
        return EXIT_USAGE
    try:
        code: int = args.handler(settings, args)
    except KeyboardInterrupt:
        return EXIT_OK
    except (KafkaException, RedisError, RunRequestError, RunFailedError) as exc:
        label, detail, exit_code = _failure(args.command, exc)
        _err.print(f"[red]{label}:[/] {detail}")
        return exit_code
    return code


if __name__ == "__main__":
    sys.exit(main())

"""The operator commands of ``queast-integrations``, each registered by its own module.

:mod:`processors.cli` builds the parser of the long-running processes and the setup
commands, then hands its sub-command table to :func:`register_all`, which imports every module
named in :data:`COMMAND_MODULES` and calls its ``register(commands)``: a function that adds
the module's command (with its arguments and its ``handler(settings, args) -> int``) to the
table. A new operator command is a module of this package plus one line here. (The modules are
imported by name because they import this one, for the exit codes.)

Exit codes are shared by every command: :data:`EXIT_OK` (0) success, :data:`EXIT_FAILED` (1)
the operation failed (broker or Redis unreachable, records refused), :data:`EXIT_USAGE` (2) bad
usage or bad input, said on stderr. A handler need not catch its service's errors:
:func:`processors.cli.main` turns :class:`~.errors.RunRequestError` into 2 and
:class:`~.errors.RunFailedError` into 1, with the message on stderr.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from datetime import datetime
from typing import Final, TypeAlias

__all__ = [
    "COMMAND_MODULES",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Registrar",
    "SubCommands",
    "aware_time",
    "register_all",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2

SubCommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""The sub-command table of ``queast-integrations`` a registrar adds its command to."""
Registrar: TypeAlias = Callable[[SubCommands], None]


def aware_time(text: str) -> datetime:
    """An ISO 8601 time with its zone, as an argparse ``type`` (bad ones exit with code 2)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        msg = f"not an ISO 8601 time: {text!r} (e.g. 2026-12-04T10:00:00Z)"
        raise argparse.ArgumentTypeError(msg) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        msg = f"{text!r} has no time zone (add Z or +01:00)"
        raise argparse.ArgumentTypeError(msg)
    return moment


COMMAND_MODULES: Final = (
    "processors.operations.backfill_cli",
    "processors.operations.purge_cli",
    "processors.operations.preview_cli",
    "processors.operations.replay_cli",
    "processors.operations.deadletters_cli",
)
"""The modules of the operator commands, in the order ``--help`` lists them."""


def register_all(commands: SubCommands) -> None:
    """Add every operator command to ``commands``."""
    for name in COMMAND_MODULES:
        register: Registrar = importlib.import_module(name).register
        register(commands)

"""The operator commands of ``queast-integrations``, each registered by its own module.

:mod:`processors.cli` builds the parser of the long-running processes and the setup
commands, then hands its sub-command table to every registrar in :data:`REGISTRARS`: a
function that adds one command (with its arguments and its ``handler(settings, args) -> int``)
to that table. A new operator command is a module of this package plus one line here.

Exit codes are shared by every command: :data:`EXIT_OK` (0) success, :data:`EXIT_FAILED` (1)
the operation failed (broker or Redis unreachable, records refused), :data:`EXIT_USAGE` (2) bad
usage or bad input, said on stderr.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Final, TypeAlias

from processors.operations.replay_cli import register_replay

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "REGISTRARS", "Registrar", "SubCommands"]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2

SubCommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""The sub-command table of ``queast-integrations`` a registrar adds its command to."""
Registrar: TypeAlias = Callable[[SubCommands], None]

REGISTRARS: Final[tuple[Registrar, ...]] = (register_replay,)
"""Registrars of the operator commands, in the order ``--help`` lists them."""

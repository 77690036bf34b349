from __future__ import annotations

import io
import shlex
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from processors.cli import _parser
from processors.demo import _print_operator_commands, _write_sample_event


def test_every_command_the_demo_suggests_is_a_real_command(tmp_path: Path) -> None:
    out = io.StringIO()
    sample = _write_sample_event(tmp_path)
    _print_operator_commands(
        Console(file=out, width=200), since=datetime(2026, 12, 4, 10, tzinfo=UTC), sample=sample
    )
    commands = [
        shlex.split(line.strip())
        for line in out.getvalue().splitlines()
        if line.strip().startswith("queast-integrations ")
    ]
    assert {argv[1] for argv in commands} == {"preview", "replay", "dlq", "backfill"}
    for argv in commands:
        args = _parser().parse_args(argv[1:])  # exits (fails the test) on a bad command
        assert callable(args.handler)
    assert sample.read_bytes().count(b"\n") == 1

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from processors.cli import main
from processors.deliveries.envelope import REQUIRED_HEADERS
from processors.operations.deadletters import (
    DeadLetter,
    DeadLetterFilter,
    TooManyDeadLettersError,
    dead_letter_id,
    error_kind,
    new_run_id,
    parse_dead_letter_id,
    plan_redrive,
    row_of,
)
from processors.operations.deadletters_api import RedriveIn
from processors.operations.deadletters_invalid import _one_line, check_lines
from processors.operations.reinject import RUN_ID
from processors.samples import sample_events, to_json_line


def _letter(
    n: int,
    *,
    tenant: str = "t_1",
    key: str | None = None,
    error_class: str = "PermanentError",
    status: str = "400",
    reason: str = "http 400",
    value: bytes = b"payload",
) -> DeadLetter:
    headers = {name: f"{name}-{n}" for name in REQUIRED_HEADERS}
    history = [
        {
            "attempt": 1,
            "at": "2026-12-04T09:00:00Z",
            "error_class": "TransientError",
            "reason": "timeout",
            "status_code": None,
        },
        {
            "attempt": 2,
            "at": "2026-12-04T09:05:00Z",
            "error_class": error_class,
            "reason": reason,
            "status_code": int(status) if status else None,
        },
    ]
    headers.update(
        {
            "qi.tenant_id": tenant,
            "qi.connector": "webhook",
            "qi.entity_version": "3",
            "qi.idempotency_key": key or f"qik_{n}",
            "qi.attempt": "2",
            "qi.errors": json.dumps(history),
            "qi.error.class": error_class,
            "qi.error.reason": reason,
            "qi.error.status": status,
            "qi.payload_included": "true" if value else "false",
        }
    )
    return DeadLetter(
        partition=1,
        offset=n,
        timestamp_ms=1_764_838_800_000,
        key=tenant.encode(),
        value=value,
        headers=headers,
    )


def test_error_kinds_are_names_codes_or_statuses() -> None:
    for kind in ("PermanentError", "400", "review_timeout", "a.b-c"):
        assert error_kind(kind) == kind
    for bad in ("", "two words", "x" * 65, "../etc", "a;b"):
        with pytest.raises(ValueError, match="error kind"):
            error_kind(bad)


def test_a_filter_refuses_naive_times_and_bad_kinds() -> None:
    with pytest.raises(ValueError, match="time zone"):
        DeadLetterFilter("t_1", "webhook", since=datetime(2026, 12, 4, 9, 0))
    with pytest.raises(ValueError, match="error kind"):
        DeadLetterFilter("t_1", "webhook", error="no such kind!")


def test_a_filter_matches_the_tenant_and_the_class_status_or_reason_code() -> None:
    letter = _letter(1, error_class="PermanentError", status="422", reason="review_timeout: 3d")
    assert DeadLetterFilter("t_1", "webhook").matches(letter)
    assert not DeadLetterFilter("t_2", "webhook").matches(letter)
    for kind in ("PermanentError", "permanenterror", "422", "review_timeout"):
        assert DeadLetterFilter("t_1", "webhook", error=kind).matches(letter), kind
    for kind in ("TransientError", "400", "review", "3d"):
        assert not DeadLetterFilter("t_1", "webhook", error=kind).matches(letter), kind


def test_a_row_shows_the_failure_and_never_the_payload() -> None:
    row = row_of(_letter(7, value=b'{"secret": "value"}'))
    assert (row.id, row.offset, row.partition, row.tenant_id, row.idempotency_key) == (
        "1:7",
        7,
        1,
        "t_1",
        "qik_7",
    )
    assert (row.error_class, row.status_code, row.attempts, row.errors) == (
        "PermanentError",
        400,
        2,
        2,
    )
    assert row.first_attempt_at == datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    assert row.last_attempt_at == datetime(2026, 12, 4, 9, 5, tzinfo=UTC)
    assert row.entity_version == 3
    assert row.payload_included
    assert "secret" not in row.model_dump_json()


def test_a_row_of_damaged_headers_shows_them_as_missing() -> None:
    letter = _letter(2, value=b"")
    letter.headers.update({"qi.errors": "not json", "qi.attempt": "x", "qi.error.status": ""})
    row = row_of(letter)
    assert (row.attempts, row.status_code, row.errors, row.first_attempt_at) == (
        None,
        None,
        0,
        None,
    )
    assert not row.payload_included


def test_a_redrive_plan_sends_each_key_once_from_its_latest_dead_letter() -> None:
    letters = [
        _letter(0, key="qik_a"),
        _letter(1, key="qik_b"),
        _letter(2, tenant="t_2", key="qik_c"),
        _letter(3, key="qik_a"),  # the same record dead-lettered again
        _letter(4, key="qik_d", error_class="RetryBudgetSpent", status=""),
    ]
    chosen = DeadLetterFilter("t_1", "webhook")
    assert [letter.offset for letter in plan_redrive(letters, chosen)] == [1, 3, 4]
    only_400 = DeadLetterFilter("t_1", "webhook", error="400")
    assert [letter.offset for letter in plan_redrive(letters, only_400)] == [1, 3]
    assert len(plan_redrive(letters, chosen, max_records=3)) == 3
    with pytest.raises(TooManyDeadLettersError, match="more than 2"):
        plan_redrive(letters, chosen, max_records=2)


def test_run_ids_fit_the_envelope() -> None:
    first, second = new_run_id("rd"), new_run_id("rd")
    assert first != second
    assert RUN_ID.fullmatch(first)
    assert first.startswith("rd_")


def test_the_command_is_registered(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["dlq", "--help"])
    assert exited.value.code == 0
    assert "redrive" in capsys.readouterr().out


def test_an_invalid_value_becomes_one_line_or_is_refused() -> None:
    assert _one_line(b'{"a": 1}') == b'{"a": 1}'
    assert _one_line(b'{\n  "a": "\\u00e9x"\n}') == '{"a":"éx"}'.encode()
    assert _one_line(b"garbage\nover lines") is None
    assert _one_line(b"\xff not utf-8 but one line") == b"\xff not utf-8 but one line"


def _event(tenant: str = "t_1", **changes: str) -> bytes:
    [event] = sample_events([tenant], 1, seed=5)
    return to_json_line({**event, **changes})


def test_republish_lines_are_checked_with_the_routers_parser(tmp_path: Path) -> None:
    path = tmp_path / "fixed.jsonl"
    good = _event()
    path.write_bytes(
        b"\n".join(
            [
                good,
                b"",
                b"{oops",
                b'{"tenant_id": "t_1", "event_type": "nope"}',
                _event(schema_version="2.0"),
                _event("t_2"),
            ]
        )
        + b"\n"
    )
    lines, refusals = check_lines(path, max_event_bytes=64 * 1024, max_line_bytes=1 << 20)
    assert len(lines) == 5
    assert [(r.line, r.reason) for r in refusals] == [
        (3, "unparseable"),
        (4, "unknown_event_type"),
        (5, "unsupported_schema_version"),
    ]
    _lines, scoped = check_lines(
        path, max_event_bytes=64 * 1024, max_line_bytes=1 << 20, tenant_id="t_1"
    )
    assert (6, "other_tenant") in [(r.line, r.reason) for r in scoped]
    _lines, small = check_lines(path, max_event_bytes=16, max_line_bytes=1 << 20)
    assert (1, "oversized") in [(r.line, r.reason) for r in small]


@pytest.mark.parametrize(
    "argv",
    [
        ["dlq", "list", "--tenant", "t_1", "--connector", "nope"],
        ["dlq", "list", "--tenant", "t_1", "--connector", "webhook", "--since", "2026-12-04"],
        ["dlq", "list", "--tenant", "t_1", "--connector", "webhook", "--since", "yesterday"],
        ["dlq", "list", "--tenant", "t 1", "--connector", "webhook"],
        ["dlq", "list", "--tenant", "t_1", "--connector", "webhook", "--limit", "0"],
        ["dlq", "redrive", "--tenant", "t_1", "--connector", "webhook", "--error", "a b"],
        ["dlq", "redrive", "--tenant", "t_1"],
        ["dlq", "redrive", "--connector", "webhook"],
        ["dlq", "export-invalid"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_bad_input_files_exit_2_before_anything_is_read_or_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dlq", "list", "--tenant", "t_1"]) == 2
    assert "--connector" in capsys.readouterr().err
    assert main(["dlq", "republish", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(_event() + b"\n{not json\n")
    for extra in ([], ["--dry-run"], ["--json"]):
        assert main(["dlq", "republish", str(bad), *extra]) == 2
        captured = capsys.readouterr()
        assert "bad.jsonl:2: unparseable" in captured.err
        assert "nothing was published" in captured.err
    assert main(["dlq", "republish", str(bad), "--json"]) == 2
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["matched"], summary["queued"], summary["refused"]) == (2, 0, 1)
    huge = tmp_path / "huge.jsonl"
    huge.write_bytes(b"x" * (1024 * 1024 + 1) + b"\n")
    assert main(["dlq", "republish", str(huge), "--dry-run"]) == 2
    assert "huge.jsonl:1: line is 1048577 bytes" in capsys.readouterr().err
    taken = tmp_path / "taken.jsonl"
    taken.write_text("")
    assert main(["dlq", "export-invalid", "--out", str(taken)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["dlq", "export-invalid", "--out", str(tmp_path / "no" / "dir.jsonl")]) == 2


def test_a_dead_letter_id_is_its_partition_and_offset() -> None:
    assert dead_letter_id(1, 42) == "1:42"
    assert parse_dead_letter_id("1:42") == (1, 42)
    for bad in ("", "1", "1:", ":2", "-1:2", "1:-2", "a:b", "1:2:3", "1:2 ", "1" * 10 + ":1"):
        with pytest.raises(ValueError, match="partition"):
            parse_dead_letter_id(bad)


def test_a_selection_keeps_only_the_tenants_selected_dead_letters() -> None:
    letters = [
        _letter(0, key="qik_a"),
        _letter(1, key="qik_b"),
        _letter(2, tenant="t_2", key="qik_c"),  # another tenant's: never selected
        _letter(3, key="qik_d", status="500"),
    ]
    chosen = DeadLetterFilter("t_1", "webhook", selected=frozenset({(1, 1), (1, 2), (1, 3)}))
    assert [letter.offset for letter in plan_redrive(letters, chosen)] == [1, 3]
    elsewhere = replace(letters[1], partition=0)
    assert not chosen.matches(elsewhere), "the same offset on another partition is another one"
    narrowed = DeadLetterFilter("t_1", "webhook", error="400", selected=frozenset({(1, 1), (1, 3)}))
    assert [letter.offset for letter in plan_redrive(letters, narrowed)] == [1]


def test_a_selection_is_bounded() -> None:
    with pytest.raises(ValueError, match="1 to 500"):
        DeadLetterFilter("t_1", "webhook", selected=frozenset())
    with pytest.raises(ValueError, match="1 to 500"):
        DeadLetterFilter("t_1", "webhook", selected=frozenset((0, n) for n in range(501)))
    assert DeadLetterFilter("t_1", "webhook", selected=frozenset((0, n) for n in range(500)))


def test_the_apis_redrive_body_reads_ids_and_refuses_bad_ones() -> None:
    body = RedriveIn.model_validate({"connector": "webhook", "ids": ["0:1", "0:1", "2:30"]})
    assert body.selected() == frozenset({(0, 1), (2, 30)})
    assert RedriveIn.model_validate({"connector": "webhook"}).selected() is None
    for ids in ([], ["0-1"], ["0:x"], [1], "0:1", [f"0:{n}" for n in range(501)]):
        with pytest.raises(ValidationError):
            RedriveIn.model_validate({"connector": "webhook", "ids": ids})


@pytest.mark.parametrize("bad", ["1", "a:b", "1:2:3"])
def test_a_malformed_id_on_the_command_line_exits_2(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["dlq", "redrive", "--tenant", "t_1", "--connector", "webhook", "--id", bad])
    assert exited.value.code == 2
    assert "dead letter id" in capsys.readouterr().err

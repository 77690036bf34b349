from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from processors.cli import main
from processors.logs import REDACTED, JsonFormatter
from processors.publishing import PublishError, iter_event_lines, tenant_key


def test_tenant_key_only_from_a_string_tenant_id() -> None:
    assert tenant_key(b'{"tenant_id": "t_1"}') == b"t_1"
    for line in (b"{oops", b"[1]", b'{"tenant_id": 5}', b'{"tenant_id": ""}', b"\xff"):
        assert tenant_key(line) is None


def test_lines_skip_blanks_and_refuse_oversized(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"a": 1}\n\n  \n{"b": 2}\r\n')
    assert list(iter_event_lines(path, max_line_bytes=100)) == [b'{"a": 1}', b'{"b": 2}']
    path.write_bytes(b"x" * 200 + b"\n")
    with pytest.raises(PublishError, match="line is 200 bytes"):
        list(iter_event_lines(path, max_line_bytes=100))


def test_publish_of_a_missing_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["publish", str(tmp_path / "nope.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_publish_refuses_an_oversized_line_before_sending(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"x" * 2048 + b"\n")
    assert main(["publish", str(path), "--max-line-bytes", "1024"]) == 2


def test_seed_of_a_malformed_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "seed.json"
    path.write_text("{nope")
    assert main(["connections", "seed", str(path)]) == 2
    assert "not JSON" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_json_logs_carry_event_names_and_redact_sensitive_fields() -> None:
    record = logging.LogRecord(
        "qi", logging.WARNING, __file__, 1, "delivery.attempt.failed", (), None
    )
    record.tenant_id = "t_1"
    record.webhook_secret = "whsec_abc"
    record.email = "ada@example.com"
    record.context = {"access_token": "tok", "attempt": 2}
    document = json.loads(JsonFormatter().format(record))
    assert document["event"] == "delivery.attempt.failed"
    assert document["tenant_id"] == "t_1"
    assert document["webhook_secret"] == REDACTED
    assert document["email"] == REDACTED
    assert document["context"] == {"access_token": REDACTED, "attempt": 2}

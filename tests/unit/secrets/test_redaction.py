from __future__ import annotations

import pydantic
import pytest

from processors.secrets import REDACTED, RedactedStr, redact

from .conftest import PLAINTEXT

WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, REDACTED),
        ("", REDACTED),
        ("x", REDACTED),
        (PLAINTEXT, REDACTED),
        (WEBHOOK_SECRET, "whsec_***redacted***"),
        ("whsec_", "whsec_***redacted***"),
        ("WHSEC_abc", REDACTED),
        ("xwhsec_abc", REDACTED),
    ],
)
def test_redact(value: str | None, expected: str) -> None:
    assert REDACTED == "***redacted***"
    assert redact(value) == expected


class Connection(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True)

    name: str
    api_token: RedactedStr
    webhook_secret: RedactedStr


def _connection() -> Connection:
    return Connection(
        name="crm",
        api_token=RedactedStr(PLAINTEXT),
        webhook_secret=RedactedStr(WEBHOOK_SECRET),
    )


def test_redacted_str_display() -> None:
    secret = RedactedStr(WEBHOOK_SECRET)
    assert str(secret) == "whsec_***redacted***"
    assert repr(secret) == "RedactedStr('whsec_***redacted***')"
    assert secret.get_secret_value() == WEBHOOK_SECRET


def test_model_repr_str_and_json_never_contain_plaintext() -> None:
    connection = _connection()
    for text in (
        repr(connection),
        str(connection),
        connection.model_dump_json(),
        repr(connection.model_dump()),
        f"{connection!r} {connection} {connection.api_token}",
    ):
        assert PLAINTEXT not in text
        assert WEBHOOK_SECRET not in text
        assert "MfKQ9r8" not in text
    assert connection.model_dump_json() == (
        '{"name":"crm","api_token":"***redacted***","webhook_secret":"whsec_***redacted***"}'
    )


def test_model_validates_plain_strings_into_redacted() -> None:
    connection = Connection.model_validate(
        {"name": "crm", "api_token": PLAINTEXT, "webhook_secret": WEBHOOK_SECRET}
    )
    assert isinstance(connection.api_token, RedactedStr)
    assert connection.api_token.get_secret_value() == PLAINTEXT
    assert connection == _connection()

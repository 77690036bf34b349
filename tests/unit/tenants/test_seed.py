from __future__ import annotations

import json
from pathlib import Path

import pytest

from processors.secrets import KeyRing, SecretBox
from processors.tenants.models import ConnectionRecord
from processors.tenants.secret_fields import (
    SEALED_PREFIX,
    open_settings,
    redact_settings,
    seal_settings,
)
from processors.tenants.seed import SeedError, load_seed_file

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(document))
    return path


def test_valid_seed_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {
            "allowlist": ["t_a"],
            "connections": [
                {
                    "tenant_id": "t_a",
                    "connector": "webhook",
                    "settings": {"url": "https://example.com/h", "secret": SECRET},
                },
                {
                    "tenant_id": "t_a",
                    "connector": "hubspot",
                    "event_types": {"job_ad.published": False},
                },
            ],
        },
    )
    seed = load_seed_file(path)
    assert seed.allowlist == ["t_a"]
    assert [c.connector.value for c in seed.connections] == ["webhook", "hubspot"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        ("[]", "not a valid seed file"),
        ('{"connections": [{"tenant_id": "t a", "connector": "webhook"}]}', "tenant_id"),
        ('{"connections": [{"tenant_id": "t_a", "connector": "salesforce"}]}', "connector"),
        (
            '{"connections": [{"tenant_id": "t_a", "connector": "webhook", "event_types": '
            '{"company.exploded": true}}]}',
            "event_types",
        ),
        ('{"allowlist": ["t_a"], "unknown": 1}', "unknown"),
    ],
)
def test_malformed_seed_files_change_nothing(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "seed.json"
    path.write_text(content)
    with pytest.raises(SeedError, match=message):
        load_seed_file(path)


def test_two_connections_for_one_connector_are_refused(tmp_path: Path) -> None:
    connection = {"tenant_id": "t_a", "connector": "webhook"}
    path = _write(tmp_path, {"connections": [connection, connection]})
    with pytest.raises(SeedError, match="two connections"):
        load_seed_file(path)


def test_oversized_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(SeedError, match="cannot read"):
        load_seed_file(tmp_path / "missing.json")
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (5 * 1024 * 1024))
    with pytest.raises(SeedError, match="limit"):
        load_seed_file(big)


def test_validation_errors_do_not_echo_secrets(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {"connections": [{"tenant_id": "t_a", "connector": "webhook", "bogus": SECRET}]},
    )
    with pytest.raises(SeedError) as info:
        load_seed_file(path)
    assert SECRET not in str(info.value)


def _box() -> SecretBox:
    return SecretBox(KeyRing.from_env_value("k1:" + KeyRing.generate_key()))


def test_secret_fields_are_sealed_bound_and_redacted() -> None:
    box = _box()
    block = {"url": "https://example.com", "secret": SECRET, "auth": {"refresh_token": "rt"}}
    sealed = seal_settings(block, box=box, tenant_id="t_a", connection_id="c1")
    assert sealed["url"] == block["url"]
    assert str(sealed["secret"]).startswith(SEALED_PREFIX)
    assert str(sealed["auth"]["refresh_token"]).startswith(SEALED_PREFIX)
    assert SECRET not in json.dumps(sealed)
    assert open_settings(sealed, box=box, tenant_id="t_a", connection_id="c1") == block
    assert seal_settings(sealed, box=box, tenant_id="t_a", connection_id="c1") == sealed
    assert redact_settings(sealed)["secret"] != sealed["secret"]
    assert "qi-enc" not in json.dumps(redact_settings(sealed))


def test_sealed_secret_moved_to_another_tenant_does_not_open() -> None:
    from processors.secrets import SecretDecryptionError  # noqa: PLC0415

    box = _box()
    sealed = seal_settings({"secret": SECRET}, box=box, tenant_id="t_a", connection_id="c1")
    with pytest.raises(SecretDecryptionError):
        open_settings(sealed, box=box, tenant_id="t_b", connection_id="c1")
    moved = {"token": sealed["secret"]}  # the same ciphertext under another field
    with pytest.raises(SecretDecryptionError):
        open_settings(moved, box=box, tenant_id="t_a", connection_id="c1")


def test_connection_event_switches() -> None:
    from processors.domain.events import ContractMode, EventType  # noqa: PLC0415

    connection = ConnectionRecord.model_validate(
        {
            "tenant_id": "t",
            "connector": "webhook",
            "event_types": {"person.upserted": False},
            "export_non_strict_signals": False,
        }
    )
    assert connection.exports(EventType.COMPANY_UPSERTED)
    assert not connection.exports(EventType.PERSON_UPSERTED)
    assert connection.exports(EventType.SIGNAL_EMITTED, contract_mode=ContractMode.STRICT)
    assert not connection.exports(EventType.SIGNAL_EMITTED, contract_mode=ContractMode.LEGACY)
    assert not connection.model_copy(update={"enabled": False}).exports(EventType.COMPANY_UPSERTED)

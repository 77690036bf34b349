"""Which settings fields are secret comes from the registered connectors' config classes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, SecretStr

from connectors.base import BaseSink, BatchOutcome, OutboundRecord
from connectors.base.config import ConnectionConfig
from connectors.registry import ConnectorSpec, extended, registered
from processors.secrets import REDACTED, KeyRing, SecretBox
from processors.tenants.secret_fields import (
    SEALED_PREFIX,
    iter_secret_paths,
    open_settings,
    redact_settings,
    seal_settings,
    secret_field_names,
)

SIGNING_KEY = "sk-vault-5b1e0f77"


class _VaultAuth(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    type: Literal["key"]
    signing_key: SecretStr


class VaultConfig(ConnectionConfig):
    """A connector whose only secret has a name no built-in connector uses."""

    auth: _VaultAuth
    region: str = "eu"


class VaultSink(BaseSink[VaultConfig]):
    name: ClassVar[str] = "vault"
    config_class: ClassVar[type[ConnectionConfig]] = VaultConfig
    max_batch_size: ClassVar[int] = 1

    async def write(self, batch: Sequence[OutboundRecord]) -> BatchOutcome:
        return BatchOutcome()


SPEC = ConnectorSpec(
    name="vault",
    sink_class=VaultSink,
    config_class=VaultConfig,
    max_batch_size=1,
    default_rate_limit=None,
)


def _box() -> SecretBox:
    return SecretBox(KeyRing.from_env_value("k1:" + KeyRing.generate_key()))


def test_the_names_are_those_the_registered_config_classes_declare() -> None:
    declared = frozenset().union(
        *(spec.config_class.secret_field_names() for spec in registered().values())
    )
    assert secret_field_names() == declared
    assert {"secret", "token", "access_token", "refresh_token", "client_secret"} <= declared


def test_a_registered_connector_s_new_secret_name_is_sealed_and_redacted() -> None:
    box = _box()
    block = {"auth": {"type": "key", "signing_key": SIGNING_KEY}, "region": "eu"}
    assert "signing_key" not in secret_field_names()
    with extended(SPEC):
        assert "signing_key" in secret_field_names()
        sealed = seal_settings(block, box=box, tenant_id="t_a", connection_id="c1")
        assert str(sealed["auth"]["signing_key"]).startswith(SEALED_PREFIX)
        assert SIGNING_KEY not in json.dumps(sealed)
        assert sealed["auth"]["type"] == "key"
        assert sealed["region"] == "eu"
        assert [path for path, _ in iter_secret_paths(sealed)] == ["auth.signing_key"]
        assert redact_settings(sealed)["auth"] == {"type": "key", "signing_key": REDACTED}
        assert open_settings(sealed, box=box, tenant_id="t_a", connection_id="c1") == block
        assert VaultConfig.validate_for_connection(block).auth.signing_key.get_secret_value() == (
            SIGNING_KEY
        )
    assert "signing_key" not in secret_field_names()
    assert seal_settings(block, box=box, tenant_id="t_a", connection_id="c1") == block

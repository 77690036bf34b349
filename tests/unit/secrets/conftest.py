from __future__ import annotations

import base64

import pytest

from processors.secrets import KeyRing, SecretBox

KEY1 = bytes(range(32))
KEY2 = bytes(range(100, 132))
KEY1_B64 = base64.b64encode(KEY1).decode("ascii")
KEY2_B64 = base64.b64encode(KEY2).decode("ascii")
# Fragments of key material that must never appear in a message or repr.
KEY_MATERIAL = (KEY1_B64, KEY2_B64, KEY1_B64[:16], KEY2_B64[:16])

BINDING = {"tenant_id": "tenant-1", "connection_id": "conn-1", "purpose": "partner_api_token"}
PLAINTEXT = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"


def assert_no_material(text: str, *extra: str) -> None:
    for fragment in (*KEY_MATERIAL, PLAINTEXT, *extra):
        assert fragment not in text


@pytest.fixture
def ring_k1() -> KeyRing:
    return KeyRing.from_env_value(f"k1:{KEY1_B64}")


@pytest.fixture
def ring_k1_k2() -> KeyRing:
    return KeyRing.from_env_value(f"k1:{KEY1_B64},k2:{KEY2_B64}")


@pytest.fixture
def ring_k2() -> KeyRing:
    return KeyRing.from_env_value(f"k2:{KEY2_B64}")


@pytest.fixture
def box(ring_k1_k2: KeyRing) -> SecretBox:
    return SecretBox(ring_k1_k2)

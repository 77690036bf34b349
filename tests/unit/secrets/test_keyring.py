from __future__ import annotations

import base64

import pytest

from processors.secrets import KeyRing, KeyRingError
from processors.secrets.keyring import DEVELOPMENT_KEY_B64, DEVELOPMENT_KEY_ID, KEY_SIZE_BYTES

from .conftest import KEY1, KEY1_B64, KEY2, KEY2_B64, assert_no_material


def test_single_entry() -> None:
    ring = KeyRing.from_env_value(f"k1:{KEY1_B64}")
    assert ring.key_ids == ("k1",)
    assert ring.newest_key_id == "k1"
    assert len(ring) == 1
    assert "k1" in ring


def test_last_entry_is_newest_and_all_are_usable() -> None:
    ring = KeyRing.from_env_value(f"k1:{KEY1_B64},k2:{KEY2_B64}")
    assert ring.key_ids == ("k1", "k2")
    assert ring.newest_key_id == "k2"
    assert ring.cipher("k1") is not None
    assert ring.cipher("k2") is not None
    assert ring.cipher("k9") is None
    assert "k9" not in ring


def test_order_not_id_decides_newest() -> None:
    ring = KeyRing.from_env_value(f"k2:{KEY2_B64},k1:{KEY1_B64}")
    assert ring.newest_key_id == "k1"


def test_whitespace_around_value_and_entries_is_tolerated() -> None:
    ring = KeyRing.from_env_value(f"  k1:{KEY1_B64} ,\tk2:{KEY2_B64}\n")
    assert ring.key_ids == ("k1", "k2")


def test_key_id_alphabet() -> None:
    ring = KeyRing.from_env_value(f"2024-01_a.b:{KEY1_B64},{'x' * 32}:{KEY2_B64}")
    assert ring.key_ids == ("2024-01_a.b", "x" * 32)


def test_mapping_constructor() -> None:
    ring = KeyRing({"a": KEY1, "b": KEY2})
    assert ring.newest_key_id == "b"


def test_generate_key_is_random_32_bytes_and_parses() -> None:
    first, second = KeyRing.generate_key(), KeyRing.generate_key()
    assert first != second
    assert len(base64.b64decode(first, validate=True)) == KEY_SIZE_BYTES
    ring = KeyRing.from_env_value(f"new:{first}")
    assert ring.newest_key_id == "new"


def test_repr_lists_ids_only() -> None:
    ring = KeyRing.from_env_value(f"k1:{KEY1_B64},k2:{KEY2_B64}")
    assert repr(ring) == "KeyRing(key_ids=('k1', 'k2'), active='k2')"
    assert_no_material(repr(ring))
    assert_no_material(str(ring))


def test_development_key_is_32_bytes_and_detected_under_any_id() -> None:
    assert len(base64.b64decode(DEVELOPMENT_KEY_B64)) == KEY_SIZE_BYTES
    assert KeyRing.from_env_value(
        f"{DEVELOPMENT_KEY_ID}:{DEVELOPMENT_KEY_B64}"
    ).contains_development_key
    assert KeyRing.from_env_value(
        f"other:{DEVELOPMENT_KEY_B64},k1:{KEY1_B64}"
    ).contains_development_key
    assert not KeyRing.from_env_value(f"k1:{KEY1_B64}").contains_development_key


SHORT = base64.b64encode(bytes(16)).decode()
LONG = base64.b64encode(bytes(range(33))).decode()
NONCANONICAL = KEY1_B64[:-2] + "9="  # last char carries non-zero padding bits


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "key ring is empty"),
        ("   \n", "key ring is empty"),
        (f"k1:{KEY1_B64},", "entry 2 is empty"),
        (f",k1:{KEY1_B64}", "entry 1 is empty"),
        (f"k1:{KEY1_B64},,k2:{KEY2_B64}", "entry 2 is empty"),
        (KEY1_B64, "entry 1 is not of the form '<key_id>:<base64 key>'"),
        (f"k1:{KEY1_B64},{KEY2_B64}", "entry 2 is not of the form"),
        (f":{KEY1_B64}", "entry 1: key id is invalid"),
        (f"k 1:{KEY1_B64}", "entry 1: key id is invalid"),
        (f"-k1:{KEY1_B64}", "entry 1: key id is invalid"),
        (f"{'x' * 33}:{KEY1_B64}", "entry 1: key id is invalid"),
        (f"k1:{KEY1_B64},k1:{KEY2_B64}", "entry 2: duplicate key id k1"),
        ("k1:not base64!", "entry 1 (k1): key is not canonical standard base64"),
        ("k1:", "entry 1 (k1): key must decode to 32 bytes, got 0"),
        (f"k1:{KEY1_B64[:-1]}", "entry 1 (k1): key is not canonical standard base64"),
        (f"k1:{NONCANONICAL}", "entry 1 (k1): key is not canonical standard base64"),
        (
            f"k1:{base64.urlsafe_b64encode(bytes([251] * 32)).decode()}",
            "entry 1 (k1): key is not canonical standard base64",
        ),
        (f"k1: {KEY1_B64}", "entry 1 (k1): key is not canonical standard base64"),
        (f"k1:{SHORT}", "entry 1 (k1): key must decode to 32 bytes, got 16"),
        (f"k1:{LONG}", "entry 1 (k1): key must decode to 32 bytes, got 33"),
        (f"k1:{KEY1_B64},k2:{KEY1_B64}", "entry 2 (k2): same key material as key id k1"),
    ],
)
def test_invalid_values(value: str, message: str) -> None:
    with pytest.raises(KeyRingError) as excinfo:
        KeyRing.from_env_value(value)
    text = str(excinfo.value)
    assert message in text
    assert_no_material(text, SHORT, LONG, NONCANONICAL)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({}, "key ring is empty"),
        ({"bad id": KEY1}, "entry 1: key id is invalid"),
        ({"k1": KEY1[:31]}, "entry 1 (k1): key must be 32 bytes, got 31"),
        ({"k1": KEY1, "k2": KEY1}, "entry 2 (k2): same key material as key id k1"),
    ],
)
def test_invalid_mappings(keys: dict[str, bytes], message: str) -> None:
    with pytest.raises(KeyRingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        KeyRing(keys)


def test_canonical_base64_check_catches_noncanonical_spelling() -> None:
    # Sanity: the non-canonical spelling really decodes, so the rejection is the canonical check.
    assert len(base64.b64decode(NONCANONICAL, validate=True)) == KEY_SIZE_BYTES

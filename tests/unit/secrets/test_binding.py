from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from processors.secrets.binding import AAD_DOMAIN, associated_data

_field = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)


def _aad(tenant_id: str, connection_id: str, purpose: str, *, key_id: str = "k1") -> bytes:
    return associated_data(
        version="v1",
        key_id=key_id,
        tenant_id=tenant_id,
        connection_id=connection_id,
        purpose=purpose,
    )


def test_layout_is_length_prefixed() -> None:
    def frame(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    assert _aad("t1", "c1", "p") == AAD_DOMAIN + b"".join(
        frame(part) for part in (b"v1", b"k1", b"t1", b"c1", b"p")
    )


def test_key_id_is_bound() -> None:
    assert _aad("t", "c", "p", key_id="k1") != _aad("t", "c", "p", key_id="k2")


@given(_field, _field, _field, _field, _field, _field)
def test_encoding_is_injective(a: str, b: str, c: str, x: str, y: str, z: str) -> None:
    assert (_aad(a, b, c) == _aad(x, y, z)) == ((a, b, c) == (x, y, z))


@given(st.text(min_size=1, max_size=10), st.text(min_size=1, max_size=10))
def test_moving_the_boundary_changes_the_encoding(left: str, right: str) -> None:
    joined = left + right
    for split in range(1, len(joined)):
        if (joined[:split], joined[split:]) != (left, right):
            assert _aad(joined[:split], joined[split:], "p") != _aad(left, right, "p")

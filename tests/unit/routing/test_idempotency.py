from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from processors.routing.idempotency import delivery_id_for, idempotency_key


def _key(
    *,
    tenant_id: str = "t_1",
    connector: str = "webhook",
    connection_id: str = "conn_1",
    event_type: str = "company.upserted",
    entity_id: str = "co_1",
    entity_version: int = 3,
    destination: str = "default",
) -> str:
    return idempotency_key(
        tenant_id=tenant_id,
        connector=connector,
        connection_id=connection_id,
        event_type=event_type,
        entity_id=entity_id,
        entity_version=entity_version,
        destination=destination,
    )


def test_key_is_pinned_across_releases() -> None:
    """Changing the derivation would make replays re-apply changes: this value must not move."""
    assert _key() == "qik_6ea08fea25b5070f9ec98b339a5db95b"


def test_every_part_changes_the_key() -> None:
    base = _key()
    variants = [
        _key(tenant_id="t_2"),
        _key(connector="hubspot"),
        _key(connection_id="conn_2"),
        _key(event_type="company.deleted"),
        _key(entity_id="co_2"),
        _key(entity_version=4),
        _key(destination="webhook"),
    ]
    assert base not in variants
    assert len(set(variants)) == len(variants)


def test_no_ambiguity_between_adjacent_fields() -> None:
    assert _key(tenant_id="t_1", connector="xwebhook") != _key(
        tenant_id="t_1x", connector="webhook"
    )


@given(st.text(min_size=1, max_size=40), st.integers(min_value=0, max_value=2**62))
def test_key_is_a_valid_webhook_id(entity_id: str, version: int) -> None:
    key = _key(entity_id=entity_id, entity_version=version)
    assert re.fullmatch(r"qik_[0-9a-f]{32}", key)


def test_delivery_id_stable_and_distinct_for_replays() -> None:
    key = _key()
    assert delivery_id_for(key) == delivery_id_for(key)
    assert delivery_id_for(key, replay_id="r1") != delivery_id_for(key)
    assert delivery_id_for(key, replay_id="r1") != delivery_id_for(key, replay_id="r2")

"""The OAuth grant store: sealed at rest, bound to its connection, tied to its credentials."""

from __future__ import annotations

import base64
import json
import logging
from typing import cast

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from connectors.base.oauth import OAuthGrant
from processors.oauthgrants import GRANT_TTL_SECONDS, OAuthTokenStore, credentials_fingerprint
from processors.secrets import KeyRing, SecretBox
from tests.unit.deliveries.fakes import FakeRedis

KEY1 = base64.b64encode(bytes(range(32))).decode()
KEY2 = base64.b64encode(bytes(range(100, 132))).decode()
NOW = 1_800_000_000.0
AUTH = {"type": "oauth", "client_id": "cid", "client_secret": "cs", "refresh_token": "rt-0"}
CREDENTIALS = credentials_fingerprint(AUTH) or ""
GRANT = OAuthGrant(
    access_token=SecretStr("at-secret-1"),
    refresh_token=SecretStr("rt-secret-2"),
    expires_at=NOW + 1800,
    api_domain="https://acme.pipedrive.com",
)
COORDINATES = {"tenant_id": "t_1", "connection_id": "conn_1"}


def _box(ring: str = f"k1:{KEY1}") -> SecretBox:
    return SecretBox(KeyRing.from_env_value(ring))


def _store(redis: FakeRedis, box: SecretBox | None = None) -> OAuthTokenStore:
    return OAuthTokenStore(
        cast(Redis, redis), box=box or _box(), key_prefix="qi:", clock=lambda: NOW
    )


async def test_a_saved_grant_loads_back_for_the_same_credentials() -> None:
    redis = FakeRedis()
    store = _store(redis)

    await store.save(GRANT, credentials=CREDENTIALS, **COORDINATES)
    loaded = await store.load(credentials=CREDENTIALS, **COORDINATES)

    assert loaded == GRANT
    assert list(redis.values) == ["qi:oauth:conn_1"]
    assert redis.ttls["qi:oauth:conn_1"] == GRANT_TTL_SECONDS


async def test_nothing_stored_loads_nothing() -> None:
    assert await _store(FakeRedis()).load(credentials=CREDENTIALS, **COORDINATES) is None


async def test_tokens_are_sealed_at_rest() -> None:
    redis = FakeRedis()
    await _store(redis).save(GRANT, credentials=CREDENTIALS, **COORDINATES)

    raw = redis.values["qi:oauth:conn_1"]
    for secret in ("at-secret-1", "rt-secret-2", CREDENTIALS, "acme.pipedrive.com"):
        assert secret not in raw
    envelope = json.loads(raw)
    assert envelope["v"] == 1
    assert envelope["refreshed_at"] == NOW
    assert envelope["grant"].startswith("qi-enc:")


async def test_a_grant_of_replaced_credentials_is_ignored() -> None:
    redis = FakeRedis()
    store = _store(redis)
    await store.save(GRANT, credentials=CREDENTIALS, **COORDINATES)
    replaced = credentials_fingerprint({**AUTH, "refresh_token": "rt-new"})
    assert replaced is not None

    assert await store.load(credentials=replaced, **COORDINATES) is None
    assert "qi:oauth:conn_1" in redis.values  # left for the next renewal to overwrite


async def test_a_grant_copied_to_another_connection_does_not_open() -> None:
    redis = FakeRedis()
    store = _store(redis)
    await store.save(GRANT, credentials=CREDENTIALS, **COORDINATES)
    redis.values["qi:oauth:conn_2"] = redis.values["qi:oauth:conn_1"]

    assert (
        await store.load(credentials=CREDENTIALS, tenant_id="t_1", connection_id="conn_2") is None
    )
    assert (
        await store.load(credentials=CREDENTIALS, tenant_id="t_2", connection_id="conn_1") is None
    )


async def test_a_grant_whose_key_left_the_ring_is_ignored() -> None:
    redis = FakeRedis()
    await _store(redis, _box(f"k1:{KEY1}")).save(GRANT, credentials=CREDENTIALS, **COORDINATES)

    rotated = _store(redis, _box(f"k2:{KEY2}"))
    assert await rotated.load(credentials=CREDENTIALS, **COORDINATES) is None
    both = _store(redis, _box(f"k1:{KEY1},k2:{KEY2}"))
    assert await both.load(credentials=CREDENTIALS, **COORDINATES) == GRANT


@pytest.mark.parametrize(
    "raw",
    ["not json", "[]", '{"v": 2, "grant": "x"}', '{"v": 1, "grant": "qi-enc:v1:k1:AA:AA"}'],
)
async def test_an_unreadable_value_is_ignored(raw: str) -> None:
    redis = FakeRedis()
    redis.values["qi:oauth:conn_1"] = raw
    assert await _store(redis).load(credentials=CREDENTIALS, **COORDINATES) is None


async def test_a_sealed_document_without_tokens_is_ignored() -> None:
    redis, box = FakeRedis(), _box()
    sealed = box.encrypt(
        json.dumps({"access_token": "", "credentials": CREDENTIALS}),
        purpose="oauth_grant",
        **COORDINATES,
    )
    redis.values["qi:oauth:conn_1"] = json.dumps({"v": 1, "grant": sealed})
    assert await _store(redis, box).load(credentials=CREDENTIALS, **COORDINATES) is None


async def test_delete_forgets_the_grant() -> None:
    redis = FakeRedis()
    store = _store(redis)
    await store.save(GRANT, credentials=CREDENTIALS, **COORDINATES)
    await store.delete("conn_1")
    assert await store.load(credentials=CREDENTIALS, **COORDINATES) is None


async def test_logs_never_carry_a_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    redis = FakeRedis()
    store = _store(redis)
    await store.save(GRANT, credentials=CREDENTIALS, **COORDINATES)
    await store.load(credentials="other", **COORDINATES)
    redis.values["qi:oauth:conn_1"] = "garbage"
    await store.load(credentials=CREDENTIALS, **COORDINATES)

    events = [(r.getMessage(), r.__dict__.get("reason")) for r in caplog.records]
    assert events == [
        ("oauth.grant.stored", None),
        ("oauth.grant.ignored", "credentials_changed"),
        ("oauth.grant.ignored", "unreadable"),
    ]
    logged = " ".join(str(r.__dict__) for r in caplog.records)
    for secret in ("at-secret-1", "rt-secret-2", "rt-0", CREDENTIALS):
        assert secret not in logged


def test_the_fingerprint_follows_client_id_and_refresh_token_only() -> None:
    same = credentials_fingerprint({**AUTH, "client_secret": "rotated secret"})
    assert same == CREDENTIALS
    assert credentials_fingerprint({**AUTH, "refresh_token": "rt-1"}) != CREDENTIALS
    assert credentials_fingerprint({**AUTH, "client_id": "cid-2"}) != CREDENTIALS
    assert "rt-0" not in CREDENTIALS
    assert len(CREDENTIALS) == 64


@pytest.mark.parametrize(
    "auth",
    [
        None,
        "oauth",
        {"type": "private_app", "token": "pat"},
        {"type": "api_token", "token": "tok"},
        {"type": "oauth", "client_id": "cid"},
        {"type": "oauth", "client_id": "cid", "refresh_token": ""},
    ],
)
def test_only_oauth_credentials_have_a_fingerprint(auth: object) -> None:
    assert credentials_fingerprint(auth) is None


# Values the store wrote before the connector kit's grant type existed (sealed with KEY1 for
# tenant t_1), one from each partner: Pipedrive's names an api_domain, HubSpot's does not.
STORED_BEFORE_THE_KIT = {
    "conn_pd": (
        '{"v": 1, "refreshed_at": 1800000000.0, "grant": "qi-enc:v1:k1:h0KfXDZgWidm9taf:M0L0BF2Of'
        "j4xJ2WlW7xt3jBcsxPTSvClpT0zqNmXnYrHsuOU4KrjpiMG-n2HFAjW3V0M4Fh-VEn_um3c1TxbSQWt7vCcR9Wb"
        "e_AA-NXtErIAyzwi7sAUi4m6K3WtnZ-rWb7kNyXBO-2oBpGcQ_zUUq57X3SgngZCyW9DXQ9yxa-9bWG4gPvjGto"
        "XeKj5X4Mo3jSnjLuiZlY-E17oIkJlGPvzzFzwDphac3FLSkQ-ltBjbHs-6N7Y2fWzy9ArjbCF2CyL8kQnwAojZ8O"
        'cd1aawr5Yxjb0rEOB95u7-OE"}'
    ),
    "conn_hs": (
        '{"v": 1, "refreshed_at": 1800000000.0, "grant": "qi-enc:v1:k1:aOC7QErMuMNCHR1X:QscaTQehv'
        "-KizTnPDRQY5mfWyOGo36vFrcMoVGQwztQL9LwOuObrG9bekU8YP2m1YTmoedflDqDqhOQhq7-7PJwQtS5Qw6r_ru"
        "qwA_E3hUD98_M0Nsl2u2Vdtq3mpz8ArAuf88VScnVsI3DMdWn4KbXkQ4yQeoGA988iP1r6fo19LKjttuteVWHuG7j"
        "g4YyuGSs3k0XRfjO4p3y2h9_CkwtvwERWpFOV5ZMTgff1-h8VkHXINPGuxeOY8fimdmH_ltooTWc"
        '"}'
    ),
}


@pytest.mark.parametrize(
    ("connection_id", "api_domain"),
    [("conn_pd", "https://acme.pipedrive.com"), ("conn_hs", None)],
)
async def test_grants_stored_before_the_kit_still_load(
    connection_id: str, api_domain: str | None
) -> None:
    redis = FakeRedis()
    redis.values[f"qi:oauth:{connection_id}"] = STORED_BEFORE_THE_KIT[connection_id]
    grants = _store(redis).for_connection(
        tenant_id="t_1", connection_id=connection_id, credentials=CREDENTIALS
    )

    assert await grants.reload() == OAuthGrant(
        access_token=SecretStr("at-stored"),
        refresh_token=SecretStr("rt-stored"),
        expires_at=1_800_001_800.0,
        api_domain=api_domain,
    )


async def test_a_connection_store_saves_and_reloads_in_the_same_format() -> None:
    redis, box = FakeRedis(), _box()
    grants = _store(redis, box).for_connection(credentials=CREDENTIALS, **COORDINATES)

    await grants.save(GRANT)

    assert await grants.reload() == GRANT
    envelope = json.loads(redis.values["qi:oauth:conn_1"])
    assert set(envelope) == {"v", "refreshed_at", "grant"}
    opened = json.loads(box.decrypt(envelope["grant"], purpose="oauth_grant", **COORDINATES))
    assert opened == {
        "access_token": "at-secret-1",
        "refresh_token": "rt-secret-2",
        "expires_at": NOW + 1800,
        "api_domain": "https://acme.pipedrive.com",
        "credentials": CREDENTIALS,
    }

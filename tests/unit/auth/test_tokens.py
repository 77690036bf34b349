"""TokenVerifier: every way a token can fail, and the claims it turns into a principal."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from pydantic import SecretStr, ValidationError

from processors.auth import (
    InvalidTokenError,
    Principal,
    Role,
    SigningKeysUnavailableError,
    TokenVerifier,
)
from processors.settings import AuthSettings

from .conftest import KID, SECRET, StaticKeys, TokenFactory, claims_for, hand_signed

IDP_CLAIMS = {"iss": "https://idp.example", "aud": "queast-integrations"}
JWKS_SETTINGS = AuthSettings(
    jwks_url="https://idp.invalid/jwks.json",
    issuer=IDP_CLAIMS["iss"],
    audience=IDP_CLAIMS["aud"],
)


async def test_hs256_token_gives_the_principal(
    hs_verifier: TokenVerifier, hs_token: TokenFactory
) -> None:
    principal = await hs_verifier.verify(hs_token())
    assert principal == Principal(
        sub="user-1", tenant_id="t_a", roles=frozenset({Role.TENANT_ADMIN})
    )


async def test_rs256_token_gives_the_principal(
    rs_verifier: TokenVerifier, rs_token: TokenFactory
) -> None:
    principal = await rs_verifier.verify(rs_token(roles=["platform_admin"], tenant_id=...))
    assert principal.is_platform_admin
    assert principal.tenant_id is None


async def test_rs256_through_pyjwkclient(
    monkeypatch: pytest.MonkeyPatch, public_jwk: dict[str, Any], rs_token: TokenFactory
) -> None:
    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", lambda _self: {"keys": [public_jwk]})
    verifier = TokenVerifier.from_settings(JWKS_SETTINGS)
    assert verifier.algorithms == ("RS256",)
    assert (await verifier.verify(rs_token(**IDP_CLAIMS))).sub == "user-1"
    with pytest.raises(InvalidTokenError, match="no matching signing key"):
        await verifier.verify(rs_token(kid="other-key", **IDP_CLAIMS))
    for wrong in ({"iss": "https://evil.example"}, {"aud": "another-api"}, {"iss": ...}):
        with pytest.raises(InvalidTokenError):
            await verifier.verify(rs_token(**{**IDP_CLAIMS, **wrong}))


async def test_jwks_unreachable_is_not_a_401(
    monkeypatch: pytest.MonkeyPatch, rs_token: TokenFactory
) -> None:
    def unreachable(_self: jwt.PyJWKClient) -> None:
        msg = "connection refused"
        raise jwt.PyJWKClientConnectionError(msg)

    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", unreachable)
    verifier = TokenVerifier.from_settings(JWKS_SETTINGS)
    with pytest.raises(SigningKeysUnavailableError):
        await verifier.verify(rs_token())


async def test_expired(hs_verifier: TokenVerifier, hs_token: TokenFactory) -> None:
    with pytest.raises(InvalidTokenError, match="expired"):
        await hs_verifier.verify(hs_token(exp=int(time.time()) - 5))


async def test_leeway_tolerates_small_skew(hs_token: TokenFactory) -> None:
    verifier = TokenVerifier(hs256_secret=SECRET.encode(), leeway_seconds=30)
    assert (await verifier.verify(hs_token(exp=int(time.time()) - 5))).sub == "user-1"
    with pytest.raises(InvalidTokenError, match="expired"):
        await verifier.verify(hs_token(exp=int(time.time()) - 60))


async def test_not_yet_valid(hs_verifier: TokenVerifier, hs_token: TokenFactory) -> None:
    with pytest.raises(InvalidTokenError):
        await hs_verifier.verify(hs_token(nbf=int(time.time()) + 120))


async def test_wrong_secret(hs_verifier: TokenVerifier, hs_token: TokenFactory) -> None:
    with pytest.raises(InvalidTokenError, match="bad signature"):
        await hs_verifier.verify(hs_token(secret="another-secret-0123456789abcdefghij"))


async def test_tampered_claims(hs_verifier: TokenVerifier, hs_token: TokenFactory) -> None:
    header, _claims, signature = hs_token().split(".")
    forged_claims = hand_signed({}, claims_for(roles=["platform_admin"]), None).split(".")[1]
    with pytest.raises(InvalidTokenError, match="bad signature"):
        await hs_verifier.verify(f"{header}.{forged_claims}.{signature}")


@pytest.mark.parametrize("verifier_name", ["hs_verifier", "rs_verifier", "both_verifier"])
async def test_alg_none_is_refused(verifier_name: str, request: pytest.FixtureRequest) -> None:
    verifier: TokenVerifier = request.getfixturevalue(verifier_name)
    for alg in ("none", "None", "NONE"):
        token = hand_signed({"alg": alg, "typ": "JWT"}, claims_for(), None)
        with pytest.raises(InvalidTokenError, match="algorithm not accepted"):
            await verifier.verify(token)


async def test_hs256_signed_with_the_rsa_public_key_fails_when_only_jwks(
    rs_verifier: TokenVerifier, public_pem: bytes
) -> None:
    token = hand_signed({"alg": "HS256", "typ": "JWT", "kid": KID}, claims_for(), public_pem)
    with pytest.raises(InvalidTokenError, match="algorithm not accepted"):
        await rs_verifier.verify(token)


async def test_hs256_signed_with_the_rsa_public_key_fails_when_both(
    both_verifier: TokenVerifier, public_pem: bytes
) -> None:
    token = hand_signed({"alg": "HS256", "typ": "JWT", "kid": KID}, claims_for(), public_pem)
    with pytest.raises(InvalidTokenError, match="bad signature"):
        await both_verifier.verify(token)


async def test_rs256_token_refused_without_jwks(
    hs_verifier: TokenVerifier, rs_token: TokenFactory
) -> None:
    with pytest.raises(InvalidTokenError, match="algorithm not accepted"):
        await hs_verifier.verify(rs_token())


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
async def test_unknown_algorithm(
    hs_verifier: TokenVerifier, hs_token: TokenFactory, algorithm: str
) -> None:
    with pytest.raises(InvalidTokenError, match="algorithm not accepted"):
        await hs_verifier.verify(hs_token(algorithm=algorithm))


async def test_nothing_configured_refuses_everything(hs_token: TokenFactory) -> None:
    verifier = TokenVerifier.from_settings(AuthSettings())
    assert verifier.algorithms == ()
    with pytest.raises(InvalidTokenError):
        await verifier.verify(hs_token())


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b.c", "a.b", "....", "eyJhbGciOiJIUzI1NiJ9.%%%.sig", "x" * 20_000],
)
async def test_malformed(hs_verifier: TokenVerifier, token: str) -> None:
    with pytest.raises(InvalidTokenError):
        await hs_verifier.verify(token)


@pytest.mark.parametrize("claim", ["sub", "exp", "roles"])
async def test_missing_claim(
    hs_verifier: TokenVerifier, hs_token: TokenFactory, claim: str
) -> None:
    with pytest.raises(InvalidTokenError):
        await hs_verifier.verify(hs_token(**{claim: ...}))


async def test_tenant_admin_without_tenant_id(
    hs_verifier: TokenVerifier, hs_token: TokenFactory
) -> None:
    with pytest.raises(InvalidTokenError, match="missing claim tenant_id"):
        await hs_verifier.verify(hs_token(tenant_id=...))


@pytest.mark.parametrize(
    "roles", ["tenant_admin", {"tenant_admin": True}, [1], ["tenant_admin", None], None]
)
async def test_roles_not_a_list_of_strings(
    hs_verifier: TokenVerifier, hs_token: TokenFactory, roles: object
) -> None:
    with pytest.raises(InvalidTokenError, match="bad claim roles"):
        await hs_verifier.verify(hs_token(roles=roles))


@pytest.mark.parametrize("sub", ["", 42, None, "x" * 300])
async def test_bad_sub(hs_verifier: TokenVerifier, hs_token: TokenFactory, sub: object) -> None:
    with pytest.raises(InvalidTokenError):
        await hs_verifier.verify(hs_token(sub=sub))


@pytest.mark.parametrize("tenant_id", ["", "t a", "../t_b", 7, "x" * 65])
async def test_bad_tenant_id(
    hs_verifier: TokenVerifier, hs_token: TokenFactory, tenant_id: object
) -> None:
    with pytest.raises(InvalidTokenError, match="bad claim tenant_id"):
        await hs_verifier.verify(hs_token(tenant_id=tenant_id))


async def test_unknown_role_only_authenticates_with_no_role(
    hs_verifier: TokenVerifier, hs_token: TokenFactory
) -> None:
    principal = await hs_verifier.verify(hs_token(roles=["superuser"]))
    assert principal.roles == frozenset()
    assert not principal.can_access_tenant("t_a")
    assert not principal.is_platform_admin


async def test_unknown_roles_are_dropped(
    hs_verifier: TokenVerifier, hs_token: TokenFactory
) -> None:
    principal = await hs_verifier.verify(hs_token(roles=["superuser", "tenant_admin"]))
    assert principal.roles == frozenset({Role.TENANT_ADMIN})


async def test_issuer_and_audience(hs_token: TokenFactory) -> None:
    verifier = TokenVerifier(
        hs256_secret=SECRET.encode(), issuer="https://idp.example", audience="queast-integrations"
    )
    good = {"iss": "https://idp.example", "aud": "queast-integrations"}
    assert (await verifier.verify(hs_token(**good))).sub == "user-1"
    for bad in (
        {**good, "iss": "https://evil.example"},
        {**good, "aud": "another-api"},
        {"aud": "queast-integrations"},
        {"iss": "https://idp.example"},
    ):
        with pytest.raises(InvalidTokenError):
            await verifier.verify(hs_token(**bad))


async def test_audience_in_token_but_not_configured(
    hs_verifier: TokenVerifier, hs_token: TokenFactory
) -> None:
    with pytest.raises(InvalidTokenError):
        await hs_verifier.verify(hs_token(aud="somebody"))


async def test_rejection_reason_never_holds_the_token(
    hs_verifier: TokenVerifier, hs_token: TokenFactory
) -> None:
    token = hs_token(secret="another-secret-0123456789abcdefghij")
    with pytest.raises(InvalidTokenError) as excinfo:
        await hs_verifier.verify(token)
    assert token not in str(excinfo.value)
    assert all(part not in str(excinfo.value) for part in token.split("."))


def test_from_settings_reads_auth_settings() -> None:
    verifier = TokenVerifier.from_settings(
        JWKS_SETTINGS.model_copy(update={"jwt_secret": SecretStr(SECRET)})
    )
    assert verifier.algorithms == ("HS256", "RS256")


def test_static_keys_is_a_signing_key_source(public_jwk: dict[str, Any]) -> None:
    # keeps the test double honest: same protocol as PyJWKClient
    keys = StaticKeys(jwt.PyJWK(public_jwk))
    with pytest.raises(jwt.PyJWKClientError):
        keys.get_signing_key_from_jwt(hand_signed({"alg": "RS256", "kid": "nope"}, {}, None))


@pytest.mark.parametrize(
    ("issuer", "audience"),
    [(None, None), ("https://idp.example", None), (None, "queast-integrations"), ("", "")],
    ids=["neither", "no_audience", "no_issuer", "empty"],
)
def test_jwks_without_issuer_and_audience_is_refused(
    issuer: str | None, audience: str | None
) -> None:
    with pytest.raises(ValidationError, match="QI_AUTH_ISSUER and QI_AUTH_AUDIENCE are required"):
        AuthSettings(jwks_url="https://idp.invalid/jwks.json", issuer=issuer, audience=audience)


def test_jwks_without_issuer_is_refused_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QI_AUTH_JWKS_URL", "https://idp.invalid/jwks.json")
    monkeypatch.setenv("QI_AUTH_AUDIENCE", "queast-integrations")
    monkeypatch.delenv("QI_AUTH_ISSUER", raising=False)
    with pytest.raises(ValidationError, match="QI_AUTH_ISSUER"):
        AuthSettings()
    monkeypatch.setenv("QI_AUTH_ISSUER", "https://idp.example")
    assert AuthSettings().issuer == "https://idp.example"

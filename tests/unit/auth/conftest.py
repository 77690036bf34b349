"""Keys and token factories for the auth unit tests (no network)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt import PyJWK
from jwt.algorithms import RSAAlgorithm

from processors.auth import TokenVerifier

SECRET = "unit-test-hs256-secret-0123456789abcdef-0123456789abcdef-0123456789"
KID = "unit-key-1"

TokenFactory = Callable[..., str]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hand_signed(header: dict[str, Any], claims: dict[str, Any], hmac_key: bytes | None) -> str:
    """A token built by hand (for algorithms PyJWT refuses to produce on purpose)."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    if hmac_key is None:
        return f"{signing_input}."
    signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def claims_for(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "sub": "user-1",
        "tenant_id": "t_a",
        "roles": ["tenant_admin"],
        "exp": int(time.time()) + 300,
    }
    for key, value in overrides.items():
        if value is ...:
            claims.pop(key, None)
        else:
            claims[key] = value
    return claims


class StaticKeys:
    """A JWKS source holding fixed keys (what PyJWKClient returns, without the HTTP)."""

    def __init__(self, *keys: PyJWK) -> None:
        self._keys = {key.key_id: key for key in keys}

    def get_signing_key_from_jwt(self, token: str) -> PyJWK:
        kid = jwt.get_unverified_header(token).get("kid")
        try:
            return self._keys[kid]
        except KeyError:
            msg = "no key"
            raise jwt.PyJWKClientError(msg) from None


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def public_pem(rsa_key: rsa.RSAPrivateKey) -> bytes:
    return rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="session")
def public_jwk(rsa_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    jwk = RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True)
    return {**jwk, "kid": KID, "use": "sig", "alg": "RS256"}


@pytest.fixture
def hs_token() -> TokenFactory:
    def make(secret: str = SECRET, algorithm: str = "HS256", **claims: Any) -> str:
        return jwt.encode(claims_for(**claims), secret, algorithm=algorithm)

    return make


@pytest.fixture
def rs_token(rsa_key: rsa.RSAPrivateKey) -> TokenFactory:
    def make(kid: str = KID, **claims: Any) -> str:
        return jwt.encode(claims_for(**claims), rsa_key, algorithm="RS256", headers={"kid": kid})

    return make


@pytest.fixture
def hs_verifier() -> TokenVerifier:
    return TokenVerifier(hs256_secret=SECRET.encode(), leeway_seconds=0)


@pytest.fixture
def rs_verifier(public_jwk: dict[str, Any]) -> TokenVerifier:
    return TokenVerifier(signing_keys=StaticKeys(PyJWK(public_jwk)), leeway_seconds=0)


@pytest.fixture
def both_verifier(public_jwk: dict[str, Any]) -> TokenVerifier:
    return TokenVerifier(
        hs256_secret=SECRET.encode(), signing_keys=StaticKeys(PyJWK(public_jwk)), leeway_seconds=0
    )

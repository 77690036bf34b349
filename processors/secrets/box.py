"""Encrypt, decrypt and rewrap secrets bound to a tenant, connection and purpose.

:class:`SecretBox` is the only object that combines a :class:`KeyRing` with the token
format (:mod:`processors.secrets.envelope`) and the associated-data binding
(:mod:`processors.secrets.binding`).

* ``encrypt`` uses the ring's active key and a fresh random 96-bit nonce. Nonces are
  random, so keep the number of encryptions per key well below 2**32 (rotate long before).
* ``decrypt`` accepts a token from any key still in the ring.
* ``rewrap`` re-encrypts under the active key for ``keys rotate``; a token that is already
  under the active key is authenticated and returned unchanged (the same string), so
  ``rewrap(t, ...) != t`` tells whether it must be written back. ``needs_rewrap``
  answers the same question without the binding and without authenticating.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from processors.secrets.binding import associated_data
from processors.secrets.envelope import (
    FORMAT_VERSION,
    MAX_PLAINTEXT_BYTES,
    NONCE_SIZE_BYTES,
    EncryptedSecret,
)
from processors.secrets.errors import SecretDecryptionError, SecretEncryptionError
from processors.secrets.keyring import KeyRing

__all__ = ["SecretBox"]


class SecretBox:
    """AES-256-GCM encryption of secrets under a versioned :class:`KeyRing`.

    Thread-safe and stateless apart from the (immutable) key ring.
    """

    __slots__ = ("_key_ring",)

    def __init__(self, key_ring: KeyRing) -> None:
        self._key_ring = key_ring

    @property
    def key_ring(self) -> KeyRing:
        """The key ring this box encrypts and decrypts with."""
        return self._key_ring

    def __repr__(self) -> str:
        return f"SecretBox({self._key_ring!r})"

    def encrypt(self, plaintext: str, *, tenant_id: str, connection_id: str, purpose: str) -> str:
        """Encrypt ``plaintext`` under the active key and return the token string.

        Raises:
            SecretBindingError: ``tenant_id``, ``connection_id`` or ``purpose`` is invalid
                (empty, not UTF-8 encodable, or too long).
            SecretEncryptionError: ``plaintext`` is not UTF-8 encodable or is larger than
                :data:`~processors.secrets.envelope.MAX_PLAINTEXT_BYTES`.
        """
        key_id = self._key_ring.active_key_id
        aad = associated_data(
            version=FORMAT_VERSION,
            key_id=key_id,
            tenant_id=tenant_id,
            connection_id=connection_id,
            purpose=purpose,
        )
        try:
            data = plaintext.encode("utf-8")
        except UnicodeEncodeError:
            raise SecretEncryptionError("plaintext is not encodable as UTF-8") from None
        if len(data) > MAX_PLAINTEXT_BYTES:
            raise SecretEncryptionError(
                f"plaintext is {len(data)} bytes, the limit is {MAX_PLAINTEXT_BYTES}"
            )
        nonce = os.urandom(NONCE_SIZE_BYTES)
        ciphertext = self._cipher(key_id).encrypt(nonce, data, aad)
        return EncryptedSecret(key_id=key_id, nonce=nonce, ciphertext=ciphertext).to_token()

    def decrypt(self, token: str, *, tenant_id: str, connection_id: str, purpose: str) -> str:
        """Authenticate and decrypt ``token`` for this tenant, connection and purpose.

        Raises:
            SecretBindingError: ``tenant_id``, ``connection_id`` or ``purpose`` is invalid.
            SecretDecryptionError: the token is malformed ("malformed token: ..."), names a
                key id not in the ring ("unknown key id <id>"), or fails authentication
                ("authentication failed ...": wrong tenant/connection/purpose, a key that
                differs from the one that encrypted it, or tampered bytes). The message
                never contains the token, the plaintext or key material.
        """
        secret = EncryptedSecret.parse(token)
        return self._open(secret, tenant_id=tenant_id, connection_id=connection_id, purpose=purpose)

    def needs_rewrap(self, token: str) -> bool:
        """Return whether ``token`` is under a key other than the active one.

        This only parses the token; it does not authenticate it (``rewrap`` does).

        Raises:
            SecretDecryptionError: the token is malformed, or names a key id not in the
                ring (it could never be rewrapped with this ring).
        """
        secret = EncryptedSecret.parse(token)
        self._require_known(secret.key_id)
        return secret.key_id != self._key_ring.active_key_id

    def rewrap(self, token: str, *, tenant_id: str, connection_id: str, purpose: str) -> str:
        """Return ``token`` re-encrypted under the active key.

        The token is always authenticated first. If it is already under the active key it
        is returned unchanged (the identical string); otherwise a new token with a fresh
        nonce is returned, bound to the same tenant, connection and purpose.

        Raises:
            SecretBindingError: ``tenant_id``, ``connection_id`` or ``purpose`` is invalid.
            SecretDecryptionError: as for :meth:`decrypt`; the caller should leave the
                stored token untouched and report it.
        """
        secret = EncryptedSecret.parse(token)
        plaintext = self._open(
            secret, tenant_id=tenant_id, connection_id=connection_id, purpose=purpose
        )
        if secret.key_id == self._key_ring.active_key_id:
            return token
        return self.encrypt(
            plaintext, tenant_id=tenant_id, connection_id=connection_id, purpose=purpose
        )

    def _open(
        self, secret: EncryptedSecret, *, tenant_id: str, connection_id: str, purpose: str
    ) -> str:
        aad = associated_data(
            version=FORMAT_VERSION,
            key_id=secret.key_id,
            tenant_id=tenant_id,
            connection_id=connection_id,
            purpose=purpose,
        )
        cipher = self._require_known(secret.key_id)
        try:
            data = cipher.decrypt(secret.nonce, secret.ciphertext, aad)
        except InvalidTag:
            raise SecretDecryptionError(
                "authentication failed (wrong tenant, connection or purpose, "
                "wrong key, or tampered token)"
            ) from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretDecryptionError("decrypted payload is not valid UTF-8") from None

    def _require_known(self, key_id: str) -> AESGCM:
        cipher = self._key_ring.cipher(key_id)
        if cipher is None:
            raise SecretDecryptionError(f"unknown key id {key_id}")
        return cipher

    def _cipher(self, key_id: str) -> AESGCM:
        cipher = self._key_ring.cipher(key_id)
        if cipher is None:  # pragma: no cover - the active key is always in the ring
            raise SecretEncryptionError(f"active key id {key_id} has no cipher")
        return cipher

"""Versioned AES-256 key ring used to encrypt secrets at rest.

Configuration format (the value of ``QI_SECRETS_KEYS``)::

    <key_id>:<base64 32-byte key>[,<key_id>:<base64 32-byte key>...]

e.g. ``k1:BASE64,k2:BASE64``. One key is *active*: it seals every new secret. By default it
is the LAST entry; ``QI_SECRETS_ACTIVE_KEY_ID`` names another one. Every entry opens what it
sealed, so keys other than the active one are decrypt-only: those listed after the active
key are *staged* (coming), those before it *previous* (going).

Staged keys exist for rolling deploys. During a deploy, pods with the old configuration and
pods with the new one run side by side, and each must open what the other seals. A rotation
from ``k1`` to ``k2`` is therefore three deploys:

1. stage: ``QI_SECRETS_KEYS=k1:…,k2:…`` and ``QI_SECRETS_ACTIVE_KEY_ID=k1``. Every pod can
   now open ``k2``; all still seal with ``k1``;
2. activate, once no pod runs the old configuration: drop ``QI_SECRETS_ACTIVE_KEY_ID`` (or set
   it to ``k2``). New pods seal with ``k2``, which the pods of step 1 can open; then run
   ``keys rotate``, which re-seals every stored secret (and stored OAuth grant) under the
   active key;
3. retire, once every pod runs step 2 and ``keys rotate`` reported no failure:
   ``QI_SECRETS_KEYS=k2:…``.

Skipping step 1 (appending ``k2`` as the newest key in one deploy) lets a new pod seal with
``k2`` a secret that an old pod, still running, cannot open.

Validation is strict and every violation raises :class:`KeyRingError`:

* the value (after stripping surrounding whitespace) must not be empty;
* entries are separated by ``,`` and each entry is stripped of surrounding whitespace; an
  empty entry (e.g. a trailing comma) is an error;
* a key id matches ``[A-Za-z0-9][A-Za-z0-9_.-]{0,31}`` (it appears inside tokens, so it
  can never contain ``:`` or ``,``); ids must be unique;
* a key is canonical standard base64 (alphabet ``A-Z a-z 0-9 + /``, with ``=`` padding)
  of exactly 32 bytes, as produced by :meth:`KeyRing.generate_key` or
  ``openssl rand -base64 32``;
* two ids must not share the same key material (a "rotation" to the same key is a mistake);
* the active key id, when given, must be one of the ring's ids.

Error messages name the entry by position and, once it is known to be valid, by key id;
they never include key material or the raw entry text (an entry whose ``:`` is missing
may be nothing but key material).

A fixed development key (:data:`DEVELOPMENT_KEY_B64`, id :data:`DEVELOPMENT_KEY_ID`) is
published here for local runs and tests. It is not a secret;
:attr:`KeyRing.contains_development_key` reports whether a ring holds it so the service
can warn (or refuse to start) outside development.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
from collections.abc import Mapping

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from processors.secrets.errors import KeyRingError

__all__ = [
    "DEVELOPMENT_KEY_B64",
    "DEVELOPMENT_KEY_ID",
    "KEY_ID_PATTERN",
    "KEY_SIZE_BYTES",
    "KeyRing",
    "is_valid_key_id",
]

KEY_SIZE_BYTES = 32
"""AES-256 key length in bytes."""

KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
"""Allowed key ids (matched in full)."""

DEVELOPMENT_KEY_ID = "dev"
"""Key id of the published development key."""

DEVELOPMENT_KEY_B64 = base64.b64encode(b"qi-development-key-NOT-A-SECRET!").decode("ascii")
"""Published, NOT secret, development key: base64 of ``b"qi-development-key-NOT-A-SECRET!"``."""

_DEVELOPMENT_KEY = base64.b64decode(DEVELOPMENT_KEY_B64)


def is_valid_key_id(key_id: str) -> bool:
    """Return whether ``key_id`` is a syntactically valid key id."""
    return KEY_ID_PATTERN.fullmatch(key_id) is not None


def _decode_key(encoded: str) -> bytes | None:
    """Decode canonical standard base64, or return ``None`` if it is not."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(raw).decode("ascii") != encoded:
        return None
    return raw


class KeyRing:
    """An ordered, immutable set of AES-256 keys, one of them active (by default the last).

    The repr lists key ids only; key material is never exposed by this class except to
    build ciphers via :meth:`cipher`.
    """

    __slots__ = ("_active", "_ciphers", "_key_ids", "_keys")

    _active: str
    _ciphers: dict[str, AESGCM]
    _key_ids: tuple[str, ...]
    _keys: dict[str, bytes]

    def __init__(self, keys: Mapping[str, bytes], *, active_key_id: str | None = None) -> None:
        """Build a ring from ``{key_id: raw 32-byte key}`` in order, oldest first.

        ``active_key_id`` names the key that encrypts (default: the last one); the others
        only decrypt.

        Raises:
            KeyRingError: the mapping is empty, a key id is invalid, a key is not
                32 bytes, two ids share the same key material, or ``active_key_id`` is
                not one of the ids.
        """
        if not keys:
            raise KeyRingError("key ring is empty: at least one key is required")
        seen: dict[bytes, str] = {}
        for position, (key_id, key) in enumerate(keys.items(), start=1):
            if not is_valid_key_id(key_id):
                raise KeyRingError(
                    f"entry {position}: key id is invalid (must match {KEY_ID_PATTERN.pattern})"
                )
            if len(key) != KEY_SIZE_BYTES:
                raise KeyRingError(
                    f"entry {position} ({key_id}): key must be {KEY_SIZE_BYTES} bytes, "
                    f"got {len(key)}"
                )
            if key in seen:
                raise KeyRingError(
                    f"entry {position} ({key_id}): same key material as key id {seen[key]}"
                )
            seen[key] = key_id
        if active_key_id is not None and active_key_id not in keys:
            shown = active_key_id if is_valid_key_id(active_key_id) else "(invalid id)"
            raise KeyRingError(f"active key id {shown} is not one of the ring's key ids")
        self._keys = {key_id: bytes(key) for key_id, key in keys.items()}
        self._key_ids = tuple(self._keys)
        self._active = active_key_id if active_key_id is not None else self._key_ids[-1]
        self._ciphers = {key_id: AESGCM(key) for key_id, key in self._keys.items()}

    @classmethod
    def from_env_value(cls, value: str, *, active_key_id: str | None = None) -> KeyRing:
        """Parse ``<key_id>:<base64 key>[,...]`` (see the module docstring).

        ``active_key_id`` (``QI_SECRETS_ACTIVE_KEY_ID``) names the encryption key; by
        default it is the last entry.

        Raises:
            KeyRingError: the value violates any rule listed in the module docstring;
                the message names the entry by position (and id once valid) and never
                includes key material.
        """
        stripped = value.strip()
        if not stripped:
            raise KeyRingError("key ring is empty: expected '<key_id>:<base64 key>[,...]'")
        keys: dict[str, bytes] = {}
        for position, raw_entry in enumerate(stripped.split(","), start=1):
            entry = raw_entry.strip()
            if not entry:
                raise KeyRingError(f"entry {position} is empty (stray ',')")
            key_id, sep, encoded = entry.partition(":")
            if not sep:
                raise KeyRingError(f"entry {position} is not of the form '<key_id>:<base64 key>'")
            if not is_valid_key_id(key_id):
                raise KeyRingError(
                    f"entry {position}: key id is invalid (must match {KEY_ID_PATTERN.pattern})"
                )
            if key_id in keys:
                raise KeyRingError(f"entry {position}: duplicate key id {key_id}")
            key = _decode_key(encoded)
            if key is None:
                raise KeyRingError(
                    f"entry {position} ({key_id}): key is not canonical standard base64"
                )
            if len(key) != KEY_SIZE_BYTES:
                raise KeyRingError(
                    f"entry {position} ({key_id}): key must decode to {KEY_SIZE_BYTES} "
                    f"bytes, got {len(key)}"
                )
            keys[key_id] = key
        return cls(keys, active_key_id=active_key_id)

    @staticmethod
    def generate_key() -> str:
        """Return a new random key as standard base64 of 32 bytes, for operators."""
        return base64.b64encode(secrets.token_bytes(KEY_SIZE_BYTES)).decode("ascii")

    @property
    def key_ids(self) -> tuple[str, ...]:
        """All key ids, oldest first."""
        return self._key_ids

    @property
    def active_key_id(self) -> str:
        """Id of the key used for new encryptions (the last entry unless named)."""
        return self._active

    @property
    def newest_key_id(self) -> str:
        """Id of the key used for new encryptions: the active key (the name predates staging)."""
        return self._active

    @property
    def staged_key_ids(self) -> tuple[str, ...]:
        """Decrypt-only keys listed after the active one (waiting to become active)."""
        return self._key_ids[self._key_ids.index(self._active) + 1 :]

    @property
    def contains_development_key(self) -> bool:
        """Whether any key in the ring is the published development key."""
        return any(hmac.compare_digest(key, _DEVELOPMENT_KEY) for key in self._keys.values())

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __len__(self) -> int:
        return len(self._key_ids)

    def cipher(self, key_id: str) -> AESGCM | None:
        """Return the AES-GCM cipher for ``key_id``, or ``None`` if the id is unknown."""
        return self._ciphers.get(key_id)

    def __repr__(self) -> str:
        return f"KeyRing(key_ids={self._key_ids!r}, active={self._active!r})"

"""Secrets at rest: AES-256-GCM under a versioned key ring, bound to tenant and connection.

Public API (pinned in ``__all__``):

* :class:`SecretsSettings` - reads ``QI_SECRETS_KEYS`` and builds the :class:`KeyRing`;
* :class:`KeyRing` - ``from_env_value``, ``generate_key``, ``active_key_id``, ``staged_key_ids``;
* :class:`SecretBox` - ``encrypt`` / ``decrypt`` / ``rewrap`` / ``needs_rewrap``;
* :class:`EncryptedSecret` - the ``qi-enc:v1:<key_id>:<nonce>:<ciphertext>`` token model;
* :class:`SecretPurpose` - well-known purpose labels;
* :func:`redact`, :class:`RedactedStr`, :data:`REDACTED` - keep plaintext out of logs;
* the error tree of :mod:`processors.secrets.errors`.
"""

from __future__ import annotations

from processors.secrets.binding import SecretPurpose
from processors.secrets.box import SecretBox
from processors.secrets.envelope import EncryptedSecret
from processors.secrets.errors import (
    KeyRingError,
    SecretBindingError,
    SecretDecryptionError,
    SecretEncryptionError,
    SecretsError,
)
from processors.secrets.keyring import KeyRing
from processors.secrets.redaction import REDACTED, RedactedStr, redact
from processors.secrets.settings import SecretsSettings

__all__ = [
    "REDACTED",
    "EncryptedSecret",
    "KeyRing",
    "KeyRingError",
    "RedactedStr",
    "SecretBindingError",
    "SecretBox",
    "SecretDecryptionError",
    "SecretEncryptionError",
    "SecretPurpose",
    "SecretsError",
    "SecretsSettings",
    "redact",
]

"""Errors raised by :mod:`processors.secrets`.

Error tree::

    SecretsError             base class; catch it to handle every failure below
    ├── KeyRingError         the key ring configuration (``QI_SECRETS_KEYS``) is invalid
    ├── SecretBindingError   a tenant_id / connection_id / purpose argument is invalid
    ├── SecretEncryptionError
    │                        a plaintext cannot be encrypted (not UTF-8 encodable, too large)
    └── SecretDecryptionError
                             a token cannot be decrypted: malformed, unknown key id, or
                             authentication failed (wrong tenant/connection/purpose, wrong
                             key, tampered bytes)

No message in this tree ever contains key material, a plaintext secret, or the raw text
of a token: only fixed descriptions, positions, lengths, and key ids that passed validation.
Callers can therefore log ``str(exc)`` as is.

``SecretBindingError`` is a programming error on the caller's side (e.g. an empty
``tenant_id``); ``SecretDecryptionError`` is a property of the stored data, so a bulk job
such as ``keys rotate`` should report and skip it rather than abort.
"""

from __future__ import annotations

__all__ = [
    "KeyRingError",
    "SecretBindingError",
    "SecretDecryptionError",
    "SecretEncryptionError",
    "SecretsError",
]


class SecretsError(Exception):
    """Base class of every error raised by :mod:`processors.secrets`."""


class KeyRingError(SecretsError):
    """The key ring configuration is invalid; the service must not start with it."""


class SecretBindingError(SecretsError):
    """A tenant_id, connection_id or purpose argument is invalid (caller bug)."""


class SecretEncryptionError(SecretsError):
    """A plaintext cannot be encrypted (not encodable as UTF-8, or larger than the limit)."""


class SecretDecryptionError(SecretsError):
    """A token cannot be decrypted: malformed, unknown key id, or failed authentication."""

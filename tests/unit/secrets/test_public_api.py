from __future__ import annotations

import processors.secrets as secrets_pkg
from processors.secrets import (
    KeyRingError,
    SecretBindingError,
    SecretDecryptionError,
    SecretEncryptionError,
    SecretsError,
)


def test_all_is_pinned() -> None:
    assert sorted(secrets_pkg.__all__) == sorted(
        [
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
    )
    for name in secrets_pkg.__all__:
        assert hasattr(secrets_pkg, name)


def test_error_tree() -> None:
    for error in (KeyRingError, SecretBindingError, SecretEncryptionError, SecretDecryptionError):
        assert issubclass(error, SecretsError)
        # Not ValueError: pydantic validators must not swallow them into ValidationErrors
        # whose text echoes the input.
        assert not issubclass(error, ValueError)
    assert issubclass(SecretsError, Exception)

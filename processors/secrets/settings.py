"""Environment configuration of the secrets key ring.

``SecretsSettings`` reads ``QI_SECRETS_KEYS`` (env prefix ``QI_SECRETS_``), whose format
is documented in :mod:`processors.secrets.keyring`::

    QI_SECRETS_KEYS="k1:<base64 32 bytes>,k2:<base64 32 bytes>"   # k2 is active
    QI_SECRETS_ACTIVE_KEY_ID=k1        # optional: k1 seals, k2 is staged (decrypt-only)

Development default: when ``QI_SECRETS_KEYS`` is unset the ring is
:data:`DEVELOPMENT_KEYS_VALUE` (``dev:`` + the published
:data:`~processors.secrets.keyring.DEVELOPMENT_KEY_B64`). That key is NOT secret:
anything encrypted with it is readable by anyone with this source code.
:attr:`SecretsSettings.is_development_key` is ``True`` whenever the ring contains that
key (under any id, in any position); the worker and the API refuse to start with it unless
``QI_ENV=development`` (:mod:`processors.startup`).

``QI_SECRETS_ACTIVE_KEY_ID`` (optional) names the key that seals new secrets; by default it is
the last entry. Keys after it are staged, decrypt-only (rolling deploys: see
:mod:`processors.secrets.keyring`).

The key ring is parsed when the settings are constructed, so a bad value fails at
startup with :class:`~processors.secrets.errors.KeyRingError` (raised as is, not wrapped
in a pydantic ``ValidationError``, and never containing key material). ``keys`` is a
``SecretStr`` and is masked in the settings' repr.
"""

from __future__ import annotations

from typing import Any

from pydantic import PrivateAttr, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from processors.secrets.box import SecretBox
from processors.secrets.keyring import DEVELOPMENT_KEY_B64, DEVELOPMENT_KEY_ID, KeyRing

__all__ = ["DEVELOPMENT_KEYS_VALUE", "SecretsSettings"]

DEVELOPMENT_KEYS_VALUE = f"{DEVELOPMENT_KEY_ID}:{DEVELOPMENT_KEY_B64}"
"""Default ``QI_SECRETS_KEYS``: the published development key only."""


class SecretsSettings(BaseSettings):
    """``QI_SECRETS_*`` settings; builds the :class:`KeyRing` on construction.

    Raises (on construction):
        KeyRingError: ``QI_SECRETS_KEYS`` is not a valid key ring.
    """

    model_config = SettingsConfigDict(
        env_prefix="QI_SECRETS_", frozen=True, extra="forbid", hide_input_in_errors=True
    )

    keys: SecretStr = SecretStr(DEVELOPMENT_KEYS_VALUE)
    active_key_id: str | None = None
    """The key that seals new secrets (default: the last of ``keys``); see the keyring doc."""

    _key_ring: KeyRing = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:  # noqa: ANN401 - pydantic hook
        """Parse ``keys`` into the key ring (raises :class:`KeyRingError`)."""
        active = (self.active_key_id or "").strip() or None
        self._key_ring = KeyRing.from_env_value(self.keys.get_secret_value(), active_key_id=active)

    @property
    def key_ring(self) -> KeyRing:
        """The parsed key ring and its active key."""
        return self._key_ring

    @property
    def is_development_key(self) -> bool:
        """Whether the ring contains the published development key (warn / refuse)."""
        return self._key_ring.contains_development_key

    def secret_box(self) -> SecretBox:
        """Return a :class:`SecretBox` over this key ring."""
        return SecretBox(self._key_ring)

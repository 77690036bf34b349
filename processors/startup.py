"""Start-up checks of the worker and the API: no published or weak secrets outside development.

``queast-integrations worker`` and ``api`` (and ``demo``, which starts both) call
:func:`check_startup` before anything else and exit with code 2 and the problems it lists,
unless ``QI_ENV=development`` (:class:`~processors.settings.RuntimeSettings`):

- the secrets key ring holds the published development key
  (:data:`~processors.secrets.keyring.DEVELOPMENT_KEY_B64`, the default of ``QI_SECRETS_KEYS``
  and the key of ``make run`` and docker-compose), under any id, active, staged or retired:
  whatever it seals is readable by anyone with this source code. To move stored secrets off
  it, run ``keys rotate`` (not checked) with a ring that still holds it, then start the
  services without it;
- the API's ``QI_AUTH_JWT_SECRET`` is shorter than 32 bytes (RFC 7518 §3.2 wants an HS256 key
  of at least the hash size). The worker verifies no tokens, so it does not check this.

What is refused whatever ``QI_ENV`` says is refused by the settings themselves (a JWKS URL
without ``QI_AUTH_ISSUER`` and ``QI_AUTH_AUDIENCE``, an invalid key ring, inconsistent Kafka
security settings): the CLI reports those with exit code 2 too. Messages name variables,
never their values.

In-process builders (:func:`processors.app.create_app`, :func:`processors.api.create_api`) do
not check: tests build them with development keys on purpose.
"""

from __future__ import annotations

import logging
from typing import Final, Literal

from processors.settings import Settings

__all__ = ["MIN_HS256_SECRET_BYTES", "UnsafeSettingsError", "check_startup", "startup_problems"]

_log = logging.getLogger(__name__)

MIN_HS256_SECRET_BYTES: Final = 32
"""The shortest ``QI_AUTH_JWT_SECRET`` accepted outside development (bytes, UTF-8)."""

Component = Literal["worker", "api"]


class UnsafeSettingsError(Exception):
    """The settings are not safe to run with outside development; ``problems`` says why."""

    def __init__(self, component: str, problems: list[str]) -> None:
        super().__init__(f"{component} refuses to start: " + "; ".join(problems))
        self.problems = problems


def startup_problems(settings: Settings, *, component: Component) -> list[str]:
    """What makes ``settings`` unsafe for ``component`` outside development (empty: nothing)."""
    problems: list[str] = []
    if settings.secrets.is_development_key:
        problems.append(
            "QI_SECRETS_KEYS holds the published development key; configure your own keys"
            " (generate one with `openssl rand -base64 32`)"
        )
    secret = settings.auth.jwt_secret
    if component == "api" and secret is not None:
        length = len(secret.get_secret_value().encode("utf-8"))
        if length < MIN_HS256_SECRET_BYTES:
            problems.append(
                f"QI_AUTH_JWT_SECRET is {length} bytes; HS256 needs at least"
                f" {MIN_HS256_SECRET_BYTES}"
            )
    return problems


def check_startup(settings: Settings, *, component: Component) -> None:
    """Raise :class:`UnsafeSettingsError` unless ``settings`` may run ``component``.

    With ``QI_ENV=development`` the problems are logged as warnings instead.
    """
    problems = startup_problems(settings, component=component)
    if not problems:
        return
    if settings.runtime.is_development:
        _log.warning(
            "startup.development_only_settings",
            extra={"component": component, "problems": len(problems)},
        )
        return
    raise UnsafeSettingsError(component, problems)

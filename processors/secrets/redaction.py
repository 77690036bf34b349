"""Keep secrets out of reprs, logs and JSON dumps.

* :func:`redact` maps any value (including ``None`` and ``""``) to the fixed marker
  :data:`REDACTED`, so the output reveals neither content, length nor emptiness. The one
  exception: a value starting with a well-known, non-secret type prefix listed in
  :data:`KNOWN_SECRET_PREFIXES` keeps that prefix (``"whsec_abc"`` -> ``"whsec_***redacted***"``)
  so logs still say what kind of secret it was.
* :class:`RedactedStr` is a pydantic :class:`~pydantic.Secret` of ``str`` whose ``str()``,
  ``repr()`` and JSON serialisation all go through :func:`redact`. Use it as the field
  type of any model that holds a plaintext secret; read the value with
  ``get_secret_value()`` at the point of use only.
"""

from __future__ import annotations

from pydantic import Secret

from connectors.base.api import REDACTED

__all__ = ["KNOWN_SECRET_PREFIXES", "REDACTED", "RedactedStr", "redact"]

KNOWN_SECRET_PREFIXES: tuple[str, ...] = ("whsec_",)
"""Prefixes kept by :func:`redact` (Standard Webhooks signing secrets)."""


def redact(value: str | None) -> str:
    """Return :data:`REDACTED`, preceded by the value's known prefix if it has one.

    Never raises; never returns any character of ``value`` beyond a known prefix.
    """
    if value:
        for prefix in KNOWN_SECRET_PREFIXES:
            if value.startswith(prefix):
                return prefix + REDACTED
    return REDACTED


class RedactedStr(Secret[str]):
    """A ``str`` secret that displays as :func:`redact` of its value."""

    def _display(self) -> str:
        return redact(self.get_secret_value())

"""The two ways an operator's run refuses or fails, and the exit codes they mean.

A service of this package raises :class:`RunRequestError` when the run it was asked for cannot
be run as asked (a bad tenant id, an unknown connector, a window that is not one): nothing was
read or written, the CLI exits with code 2 and the API answers 4xx. A run's request checked
field by field raises :class:`RunInputError`, which names the field (the API's 422 ``details``).
It raises :class:`RunFailedError` when the run could not be carried out (a topic missing, a
broker that stops answering mid-way): the CLI exits with code 1. Either way the message names
the problem, never a payload.
"""

from __future__ import annotations

__all__ = ["RunFailedError", "RunInputError", "RunRequestError"]


class RunRequestError(ValueError):
    """The run asked for cannot be run as asked; nothing was read or written."""


class RunInputError(RunRequestError):
    """A field of the request is invalid; ``field`` names it, ``message`` says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class RunFailedError(RuntimeError):
    """The run could not be carried out (infrastructure, not the request)."""

"""Errors raised by the contract layer.

Every error derives from :class:`ContractError`, so a caller that only wants to
know "this record cannot be exported under a contract" catches that one class.
"""

from __future__ import annotations

__all__ = [
    "ContractDecodingError",
    "ContractEncodingError",
    "ContractError",
    "ContractSchemaError",
    "IncompatibleSchemaError",
    "UnknownContractError",
]


class ContractError(Exception):
    """Base class of all contract errors."""


class ContractSchemaError(ContractError):
    """A schema file or its name is malformed; raised while the registry loads.

    Raising it means the bundled contracts are broken: it is a deployment bug,
    never a problem with a single record.
    """


class UnknownContractError(ContractError, LookupError):
    """The registry has no contract for the requested family, version or fingerprint."""


class ContractEncodingError(ContractError):
    """A record does not fit its contract and was not encoded.

    ``field`` is the path of the offending field (e.g. ``"reasons[0].code"``),
    or ``None`` when the problem is not tied to one field. Messages name types,
    never values, so they are safe to log even for records carrying personal data.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ContractDecodingError(ContractError):
    """Bytes are not a readable single-object encoded contract record."""


class IncompatibleSchemaError(ContractError):
    """Data written with one schema cannot be read with another."""

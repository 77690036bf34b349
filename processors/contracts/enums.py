"""Enumerations shared by the contract code and the mappers that fill contracts."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ContractFamily", "ContractMode"]


class ContractFamily(StrEnum):
    """A contract family: one directory under ``avro_schemas/``, one record type."""

    COMPANY = "company"
    PERSON = "person"
    SIGNAL = "signal"
    JOB_AD_EVIDENCE = "job_ad_evidence"


class ContractMode(StrEnum):
    """Symbols of the ``ContractMode`` Avro enum carried by every signal.

    Avro enums are written from and read back as plain ``str``; members of this
    class are ``str`` too, so they can be put in a record as they are.
    """

    STRICT = "strict"
    INFORMATIONAL = "informational"
    LEGACY = "legacy"

"""Versioned Avro contracts: loading, single-object encoding and compatibility.

Producers pick a contract with ``default_registry().latest(family)`` and call
:func:`encode`; consumers call :func:`decode` with the registry. Schemas live in
``avro_schemas/`` at the repository root (see its README for the rules).
"""

from __future__ import annotations

from processors.contracts.compatibility import (
    check_additive,
    check_compatible,
    check_family_compatibility,
)
from processors.contracts.encoding import (
    HEADER_SIZE,
    MAGIC,
    decode,
    encode,
    peek_fingerprint,
    to_json_dict,
)
from processors.contracts.enums import ContractFamily, ContractMode
from processors.contracts.errors import (
    ContractDecodingError,
    ContractEncodingError,
    ContractError,
    ContractSchemaError,
    IncompatibleSchemaError,
    UnknownContractError,
)
from processors.contracts.samples import representative_records
from processors.contracts.schemas import (
    DEFAULT_SCHEMA_DIR,
    NAMESPACE,
    ContractRegistry,
    ContractSchema,
    default_registry,
    load_contract,
    load_contracts,
    parse_file_name,
)

__all__ = [
    "DEFAULT_SCHEMA_DIR",
    "HEADER_SIZE",
    "MAGIC",
    "NAMESPACE",
    "ContractDecodingError",
    "ContractEncodingError",
    "ContractError",
    "ContractFamily",
    "ContractMode",
    "ContractRegistry",
    "ContractSchema",
    "ContractSchemaError",
    "IncompatibleSchemaError",
    "UnknownContractError",
    "check_additive",
    "check_compatible",
    "check_family_compatibility",
    "decode",
    "default_registry",
    "encode",
    "load_contract",
    "load_contracts",
    "parse_file_name",
    "peek_fingerprint",
    "representative_records",
    "to_json_dict",
]

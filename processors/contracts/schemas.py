"""Discovery and lookup of the versioned Avro contracts in ``avro_schemas/``.

Schemas are loaded once per process (see :func:`default_registry`); the
producers look contracts up by family and version, the consumers by the
fingerprint in a single-object encoded message.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from fastavro import schema as avro_schema

from processors.contracts import _avro
from processors.contracts.enums import ContractFamily
from processors.contracts.errors import ContractSchemaError, UnknownContractError

__all__ = [
    "DEFAULT_SCHEMA_DIR",
    "NAMESPACE",
    "ContractFamily",
    "ContractRegistry",
    "ContractSchema",
    "default_registry",
    "load_contract",
    "load_contracts",
    "parse_file_name",
]

NAMESPACE: Final = "com.queast.integrations.contracts"
DEFAULT_SCHEMA_DIR: Final = Path(__file__).resolve().parents[2] / "avro_schemas"

_FINGERPRINT_ALGORITHM: Final = "CRC-64-AVRO"
_FILE_NAME: Final = re.compile(
    r"(?P<name>[a-z][a-z0-9_]*)\.v(?P<major>[1-9][0-9]*)(?:_(?P<minor>[1-9][0-9]*))?\.avsc"
)
_VERSION: Final = re.compile(r"(?P<major>[0-9]+)\.(?P<minor>[0-9]+)")


@dataclass(frozen=True, slots=True)
class ContractSchema:
    """One version of one contract, e.g. ``signal`` 1.0.

    ``parsed`` is the fastavro-parsed schema to hand to fastavro readers and
    writers, ``raw`` the schema as written in the file; neither may be mutated.
    ``fingerprint`` is the CRC-64-AVRO fingerprint of the Parsing Canonical Form
    as the 8 little-endian bytes of the single-object encoding header.
    Equality and hashing use family, name, version and fingerprint only.
    """

    family: ContractFamily
    name: str
    major: int
    minor: int
    fingerprint: bytes
    parsed: dict[str, Any] = field(compare=False, repr=False)
    raw: dict[str, Any] = field(compare=False, repr=False)
    path: Path | None = field(default=None, compare=False)

    @classmethod
    def from_dict(
        cls,
        raw: Mapping[str, Any],
        *,
        family: ContractFamily,
        major: int,
        minor: int,
        name: str | None = None,
        path: Path | None = None,
    ) -> ContractSchema:
        """Build a contract from a raw schema dict; called by the loader and by tests.

        Raises :class:`ContractSchemaError` when the schema is not a valid Avro
        record in the contract namespace.
        """
        where = f" ({path})" if path is not None else ""
        if raw.get("type") != "record" or raw.get("namespace") != NAMESPACE:
            raise ContractSchemaError(
                f"{family} v{major}.{minor}{where}: a contract must be a record "
                f"with namespace {NAMESPACE!r}"
            )
        kept = copy.deepcopy(dict(raw))
        try:
            parsed = _avro.parse(copy.deepcopy(kept))
        except ContractSchemaError as exc:
            raise ContractSchemaError(f"{family} v{major}.{minor}{where}: {exc}") from exc
        canonical = avro_schema.to_parsing_canonical_form(parsed)
        digest = avro_schema.fingerprint(canonical, _FINGERPRINT_ALGORITHM)
        return cls(
            family=family,
            name=name if name is not None else str(family),
            major=major,
            minor=minor,
            # fastavro already renders CRC-64-AVRO as little-endian hex.
            fingerprint=bytes.fromhex(digest),
            parsed=parsed,
            raw=kept,
            path=path,
        )

    @property
    def schema_version(self) -> str:
        """The version as carried in the ``schema_version`` header field, e.g. ``"1.0"``."""
        return f"{self.major}.{self.minor}"

    @property
    def version(self) -> tuple[int, int]:
        """``(major, minor)``, for sorting and comparisons."""
        return (self.major, self.minor)

    @property
    def record_name(self) -> str:
        """Full Avro name of the record, e.g. ``com.queast.integrations.contracts.Signal``."""
        return str(self.parsed["name"])

    @property
    def label(self) -> str:
        """``"<family> v<major>.<minor>"``, used in error and log messages."""
        return f"{self.family} v{self.schema_version}"


def parse_file_name(file_name: str) -> tuple[str, int, int]:
    """Split ``company.v1.avsc`` / ``company.v1_2.avsc`` into ``(name, major, minor)``.

    Raises :class:`ContractSchemaError` for anything else, including ``v0``,
    ``v1_0`` (write ``v1``) and leading zeros, so every version has one spelling.
    """
    match = _FILE_NAME.fullmatch(file_name)
    if match is None:
        raise ContractSchemaError(
            f"malformed contract file name {file_name!r}: expected "
            "'<family>.v<major>[_<minor>].avsc' such as 'company.v1.avsc' or "
            "'company.v1_2.avsc' (major >= 1, minor >= 1 when given, no leading zeros)"
        )
    minor = match.group("minor")
    return match.group("name"), int(match.group("major")), int(minor) if minor else 0


def load_contract(path: Path, *, schema_dir: Path) -> ContractSchema:
    """Load one ``<schema_dir>/<family>/<family>.v<major>[_<minor>].avsc`` file.

    Raises :class:`ContractSchemaError` when the location, name or content is wrong.
    """
    try:
        relative = path.relative_to(schema_dir)
    except ValueError:
        raise ContractSchemaError(f"{path} is not inside {schema_dir}") from None
    if len(relative.parts) != 2:
        raise ContractSchemaError(
            f"{relative}: contract files live at '<family>/<file>.avsc', one directory deep"
        )
    family_dir = relative.parts[0]
    try:
        family = ContractFamily(family_dir)
    except ValueError:
        known = ", ".join(member.value for member in ContractFamily)
        raise ContractSchemaError(
            f"{relative}: unknown contract family directory {family_dir!r} (known: {known})"
        ) from None
    name, major, minor = parse_file_name(path.name)
    if name != family.value:
        raise ContractSchemaError(
            f"{relative}: the file name must start with its family {family.value!r}"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractSchemaError(f"{relative}: cannot read schema JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ContractSchemaError(f"{relative}: the schema must be a JSON object")
    return ContractSchema.from_dict(
        raw, family=family, major=major, minor=minor, name=name, path=path
    )


def load_contracts(*, schema_dir: Path | None = None) -> list[ContractSchema]:
    """Load every ``.avsc`` file under ``schema_dir`` (default :data:`DEFAULT_SCHEMA_DIR`).

    Raises :class:`ContractSchemaError` if the directory is missing or any file is bad.
    """
    root = (schema_dir if schema_dir is not None else DEFAULT_SCHEMA_DIR).resolve()
    if not root.is_dir():
        raise ContractSchemaError(f"contract schema directory {root} does not exist")
    return [load_contract(path, schema_dir=root) for path in sorted(root.rglob("*.avsc"))]


class ContractRegistry:
    """All known contract versions, by family and by fingerprint.

    Built once at start-up; lookups are read-only and safe to share between
    tasks and threads.
    """

    def __init__(self, contracts: Iterable[ContractSchema]) -> None:
        """Index ``contracts``; raises :class:`ContractSchemaError` on duplicates.

        Two versions of a family with the same version number, or two files with
        the same Parsing Canonical Form (and so the same fingerprint), are rejected:
        decoding could not tell them apart.
        """
        by_family: dict[ContractFamily, list[ContractSchema]] = {}
        by_fingerprint: dict[bytes, ContractSchema] = {}
        for contract in contracts:
            versions = by_family.setdefault(contract.family, [])
            if any(known.version == contract.version for known in versions):
                raise ContractSchemaError(f"{contract.label} is defined twice")
            clash = by_fingerprint.get(contract.fingerprint)
            if clash is not None:
                raise ContractSchemaError(
                    f"{contract.label} and {clash.label} have the same canonical form "
                    f"(fingerprint {contract.fingerprint.hex()}); a new version must change "
                    "the wire schema, not only docs or defaults"
                )
            versions.append(contract)
            by_fingerprint[contract.fingerprint] = contract
        self._by_family = {
            family: sorted(versions, key=lambda contract: contract.version)
            for family, versions in by_family.items()
        }
        self._by_fingerprint = by_fingerprint

    @classmethod
    def load(cls, *, schema_dir: Path | None = None) -> ContractRegistry:
        """Load the registry from ``schema_dir`` (default: the bundled ``avro_schemas/``)."""
        return cls(load_contracts(schema_dir=schema_dir))

    def families(self) -> list[ContractFamily]:
        """Families that have at least one version, in :class:`ContractFamily` order."""
        return [family for family in ContractFamily if family in self._by_family]

    def versions(
        self, family: ContractFamily | str, *, major: int | None = None
    ) -> list[ContractSchema]:
        """All versions of ``family`` (optionally of one major), oldest first.

        Raises :class:`UnknownContractError` when there is none.
        """
        known = self._by_family.get(_family(family), [])
        selected = [c for c in known if major is None or c.major == major]
        if not selected:
            which = f"{family}" if major is None else f"{family} v{major}"
            raise UnknownContractError(f"no contract versions for {which}")
        return selected

    def latest(self, family: ContractFamily | str, *, major: int | None = None) -> ContractSchema:
        """Highest version of ``family`` (optionally within one major).

        Raises :class:`UnknownContractError` when there is none.
        """
        return self.versions(family, major=major)[-1]

    def get(self, family: ContractFamily | str, schema_version: str) -> ContractSchema:
        """The version spelled as in the header, e.g. ``get("signal", "1.0")``.

        Raises :class:`UnknownContractError` when that version does not exist.
        """
        match = _VERSION.fullmatch(schema_version)
        if match is None:
            raise UnknownContractError(
                f"malformed schema version {schema_version!r}: expected '<major>.<minor>'"
            )
        wanted = (int(match.group("major")), int(match.group("minor")))
        for contract in self._by_family.get(_family(family), []):
            if contract.version == wanted:
                return contract
        raise UnknownContractError(f"no contract {family} v{schema_version}")

    def by_fingerprint(self, fp: bytes) -> ContractSchema:
        """The contract whose 8-byte CRC-64-AVRO fingerprint is ``fp``.

        Raises :class:`UnknownContractError` when no loaded contract has it.
        """
        try:
            return self._by_fingerprint[bytes(fp)]
        except KeyError:
            raise UnknownContractError(f"no contract has fingerprint {bytes(fp).hex()}") from None

    def __iter__(self) -> Iterator[ContractSchema]:
        """Every contract, family by family, oldest version first."""
        for family in self.families():
            yield from self._by_family[family]

    def __len__(self) -> int:
        """Number of contract versions."""
        return len(self._by_fingerprint)


@functools.cache
def default_registry() -> ContractRegistry:
    """The registry of the bundled ``avro_schemas/``, loaded on first call and cached.

    Raises :class:`ContractSchemaError` (on every call until fixed) if the bundled
    schemas are broken; tests may call ``default_registry.cache_clear()``.
    """
    return ContractRegistry.load()


def _family(family: ContractFamily | str) -> ContractFamily:
    try:
        return ContractFamily(family)
    except ValueError:
        raise UnknownContractError(f"unknown contract family {family!r}") from None

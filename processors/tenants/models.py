"""Connection configuration as the router and the delivery agents read it.

:class:`Connector` is a connector's name, valid when the registry
(:func:`connectors.registry.registered`) knows it: the service has no list of its own, so a
connector registered there is one a tenant can connect. It is a ``str`` (stored, logged and
put in paths as is), one object per name (so ``is`` compares like ``==``), and the class
reads like the enum it replaces: ``Connector.WEBHOOK`` is the registered ``webhook``,
iterating over ``Connector`` gives every registered name, ``.value`` the plain string. In
OpenAPI it is the ``Connector`` schema, an enum of the names registered when the document is
built.

A connection is unique per ``(tenant_id, connector)``. ``settings`` holds the connector's own
block (for a webhook connection its URL and, encrypted, its secret); the connector declares
and validates it. Event types left out of ``event_types`` are enabled. Informational and legacy
signals are exported unless ``export_non_strict_signals`` is false.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from connectors.registry import registered
from processors.domain.events import ContractMode, EventType

__all__ = [
    "SERVICE_KEYS",
    "ConnectionRecord",
    "Connector",
    "DeliveryMode",
    "TenantRouting",
    "new_connection_id",
]

SERVICE_KEYS: Final = frozenset({"webhook", "match_policy"})
"""Keys of a connection's ``settings`` that are the service's, not the connector's config: the
tenant's own ``webhook`` endpoint and the identity ``match_policy``."""


class _Registered(type):
    """``Connector.NAME`` and ``iter(Connector)``: registered connectors by name."""

    def __getattr__(cls, attribute: str) -> Connector:
        if attribute.isupper() and attribute.lower() in registered():
            return Connector(attribute.lower())
        raise AttributeError(attribute)

    def __iter__(cls) -> Iterator[Connector]:
        return iter([Connector(name) for name in registered()])


class Connector(str, metaclass=_Registered):
    """The destinations a tenant can connect."""

    __slots__ = ()
    _interned: ClassVar[dict[str, Connector]] = {}

    def __new__(cls, name: str) -> Connector:
        if name not in registered():
            msg = f"{name!r} is not a registered connector"
            raise ValueError(msg)
        known = cls._interned.get(name)
        if known is None:
            known = cls._interned[name] = str.__new__(cls, name)
        return known

    @property
    def value(self) -> str:
        return str.__str__(self)

    def __repr__(self) -> str:
        return f"Connector({self.value!r})"

    def __reduce__(self) -> tuple[type[Connector], tuple[str]]:
        return (Connector, (self.value,))

    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Self:
        return self

    @classmethod
    def _validate(cls, value: str) -> Connector:
        try:
            return cls(value)
        except ValueError:
            names = [f"'{name}'" for name in registered()]
            expected = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
            raise PydanticCustomError(
                "enum", "Input should be {expected}", {"expected": expected}
            ) from None

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(
            cls._validate,
            core_schema.str_schema(),
            serialization=core_schema.to_string_ser_schema(),
            ref=f"{cls.__module__}.{cls.__qualname__}:{id(cls)}",
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "description": cls.__doc__,
            "enum": list(registered()),
            "title": cls.__name__,
            "type": "string",
        }


class DeliveryMode(StrEnum):
    """``api`` calls the partner API, ``webhook`` pushes the contract to the tenant's own signed
    endpoint, ``both`` does both."""

    API = "api"
    WEBHOOK = "webhook"
    BOTH = "both"


def new_connection_id() -> str:
    """A fresh, opaque connection id."""
    return f"conn_{uuid.uuid4().hex}"


def _now() -> datetime:
    return datetime.now(UTC)


class ConnectionRecord(BaseModel):
    """One tenant's connection to one connector, as stored."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    connector: Connector
    connection_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,80}$")] = Field(
        default_factory=new_connection_id
    )
    enabled: bool = True
    delivery_mode: DeliveryMode = DeliveryMode.API
    event_types: dict[EventType, bool] = Field(default_factory=dict)
    export_non_strict_signals: bool = True
    mapping_policy_version: int = Field(default=1, ge=1)
    settings: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)

    def exports(self, event_type: EventType, *, contract_mode: ContractMode | None = None) -> bool:
        """Whether this connection takes events of this type (and signal contract mode)."""
        if not self.enabled or not self.event_types.get(event_type, True):
            return False
        return not (
            contract_mode is not None
            and contract_mode is not ContractMode.STRICT
            and not self.export_non_strict_signals
        )


@dataclass(frozen=True, slots=True)
class TenantRouting:
    """What the router needs to know of one tenant, loaded in one round trip per batch."""

    tenant_id: str
    allowlisted: bool
    connections: list[ConnectionRecord] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    """Connectors whose stored connection record does not validate (a corrupt or hand-edited
    value): the tenant's events are dead-lettered until it is written again."""

"""Request and response bodies of the configuration API.

One request body per registered connector (``PUT /v1/tenants/{tenant_id}/connections/<name>``),
composed by :func:`connection_body` from the fields every connection has and the connector's
own part (its spec's ``api_options``, see :mod:`connectors.base.api`); unknown keys refused
everywhere. Common to all:

- ``enabled`` (default true), ``event_types`` (``{"company.upserted": false}``; event types left
  out are enabled, unknown ones are refused), ``export_non_strict_signals`` (default true),
  ``rate_limit_per_second`` and ``max_concurrency`` (optional overrides);
- ``webhook``: the tenant's own signed endpoint, the endpoint block of the connector that
  carries webhook copies (``carries_webhook_copies``). That connector's body is the block and
  ``delivery_mode`` ``webhook`` only. Every other body takes it when its delivery mode
  includes ``webhook``. The service checks the block with that connector's config class, which
  knows whether private networks are allowed (``QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS``).

Every other connector's body adds ``delivery_mode`` (``api``, ``webhook``, ``both``), its
``auth`` block and its options, each left out to take the connector's default. Their names
are those of the connector's config class, and the service stores them at the top of the
connection's settings, where :mod:`processors.deliveries.sinks` passes them to that class
unchanged. A connector that resolves identities (``resolves_identities``) also takes
``match_policy``, the identity match policy
(:class:`processors.identity.resolver.MatchPolicy`): ``company_strategies`` and
``person_strategies`` (in order; each strategy once, and only strategies that identify that
kind: ``partner_id``, ``domain``, ``linkedin_url``, ``company_name`` for companies,
``partner_id``, ``email``, ``linkedin_url`` for people), ``auto_link_threshold`` (0.5 to 1) and
``ambiguity_margin`` (0 to 0.5). Fields left out take the matcher's defaults.

The service validates the assembled block with the connector's config class as well, so
whatever is stored is what the sink accepts.

A connector that receives partner webhooks (its spec's ``inbound_options``) adds an optional
``inbound`` block of that model to its body, the carrier of webhook copies included; its
secrets follow the rules below.

Secrets: every secret field may be left out when replacing a connection, which keeps the stored
value (the same field of the same auth type). A secret field never takes the redaction marker
or an already sealed token: send the secret, or leave it out.

OpenAPI: the document says what the service requires, not only what pydantic checks on its
own. Secret fields are listed as required non-empty strings (a create needs them; leaving one
out of a replace is the documented exception above, which a schema cannot express). ``auth``
is required unless ``delivery_mode`` is ``webhook``, ``webhook`` when it is ``webhook`` or
``both`` (an ``anyOf`` over the three modes), the options the connector's config class
requires whenever ``auth`` is given (``dependentRequired``), and match strategy lists are
non-empty, without repeats, and name only strategies of their kind. An explicit ``null`` for
an optional block is accepted and means "left out"; the schema shows only the object.

Responses show a connection with every secret replaced by the redaction marker
(:func:`~processors.tenants.secret_fields.redact_settings`); no secret and no sealed token is
ever in a response. They also show the connection's delivery ``state`` (``enabled``,
``parked``, ``needs_reauth``, ``failing``, ``disabled``) with ``state_reason`` and
``state_since``; :mod:`processors.tenants.health` says what each means and where it comes from.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, ClassVar, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from connectors.base.api import ApiModel, ConnectionOptions, EndpointOptions, SchemaHook
from connectors.registry import ConnectorSpec, get_connector, webhook_copy_carrier
from processors.domain.events import EventType
from processors.identity.resolver import MatchPolicy
from processors.identity.strategies import MatchStrategy
from processors.tenants.health import ConnectionStatus, ShownState
from processors.tenants.models import ConnectionRecord, Connector, DeliveryMode
from processors.tenants.secret_fields import redact_settings

__all__ = [
    "AllowlistStatus",
    "ConnectionBody",
    "ConnectionList",
    "ConnectionOut",
    "IdentityConnectionBody",
    "MatchPolicyIn",
    "connection_body",
]

_COMPANY_STRATEGIES: Final = frozenset(
    {
        MatchStrategy.PARTNER_ID,
        MatchStrategy.DOMAIN,
        MatchStrategy.LINKEDIN_URL,
        MatchStrategy.COMPANY_NAME,
    }
)
_PERSON_STRATEGIES: Final = frozenset(
    {MatchStrategy.PARTNER_ID, MatchStrategy.EMAIL, MatchStrategy.LINKEDIN_URL}
)


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    """An optional property's schema without its ``null`` branch and ``null`` default."""
    branches = [b for b in prop.get("anyOf", []) if b != {"type": "null"}]
    rest = {k: v for k, v in prop.items() if k not in {"anyOf", "default"}}
    if len(branches) == 1:
        return {**branches[0], **rest}
    return {**rest, "anyOf": branches} if branches else rest


def _blocks_by_delivery_mode(*, has_auth: bool, with_auth: tuple[str, ...]) -> SchemaHook:
    """A ``json_schema_extra`` hook for connections with a delivery mode: ``auth`` (when the
    connector has one) required unless the mode is ``webhook``, ``webhook`` required for
    ``webhook`` and ``both``, and ``with_auth`` required whenever ``auth`` is given (see
    ``_PartnerBody._blocks_for_delivery_mode`` and the connector's config class)."""
    auth: list[str] = ["auth"] if has_auth else []

    def amend(schema: dict[str, Any]) -> None:
        properties = schema["properties"]
        if has_auth:
            properties["auth"] = {
                **_without_null(properties["auth"]),
                "description": "Required unless `delivery_mode` is `webhook`.",
            }
        properties["webhook"] = {
            **_without_null(properties["webhook"]),
            "description": "Required when `delivery_mode` is `webhook` or `both`.",
        }
        schema["anyOf"] = [
            {"properties": {"delivery_mode": {"const": "api"}}, "required": auth},
            {
                "properties": {"delivery_mode": {"const": "both"}},
                "required": ["delivery_mode", *auth, "webhook"],
            },
            {
                "properties": {"delivery_mode": {"const": "webhook"}},
                "required": ["delivery_mode", "webhook"],
            },
        ]
        if with_auth:
            schema["dependentRequired"] = {"auth": list(with_auth)}
            for name in with_auth:
                properties[name] = {
                    **_without_null(properties[name]),
                    "description": "Required when `auth` is given.",
                }

    return amend


def _strategy_lists(schema: dict[str, Any]) -> None:
    """A ``json_schema_extra`` hook: strategy lists as :class:`MatchPolicyIn` checks them."""
    for name, applicable in (
        ("company_strategies", _COMPANY_STRATEGIES),
        ("person_strategies", _PERSON_STRATEGIES),
    ):
        schema["properties"][name] = {
            **schema["properties"][name],
            "minItems": 1,
            "uniqueItems": True,
            "items": {"enum": sorted(s.value for s in applicable)},
        }


def _strategies(
    value: tuple[MatchStrategy, ...], applicable: frozenset[MatchStrategy], kind: str
) -> tuple[MatchStrategy, ...]:
    if not value:
        msg = "name at least one strategy"
        raise ValueError(msg)
    if len(set(value)) != len(value):
        msg = "name each strategy once"
        raise ValueError(msg)
    wrong = [s.value for s in value if s not in applicable]
    if wrong:
        msg = f"{', '.join(wrong)} cannot identify {kind}"
        raise ValueError(msg)
    return value


class MatchPolicyIn(MatchPolicy):
    """A connection's identity match policy: the fields and bounds of :class:`MatchPolicy`,
    with strategy lists that are not empty, name each strategy once and fit their kind."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        hide_input_in_errors=True,
        json_schema_extra=_strategy_lists,
    )

    @field_validator("company_strategies")
    @classmethod
    def _company(cls, value: tuple[MatchStrategy, ...]) -> tuple[MatchStrategy, ...]:
        return _strategies(value, _COMPANY_STRATEGIES, "companies")

    @field_validator("person_strategies")
    @classmethod
    def _person(cls, value: tuple[MatchStrategy, ...]) -> tuple[MatchStrategy, ...]:
        return _strategies(value, _PERSON_STRATEGIES, "people")


class ConnectionBody(ConnectionOptions):
    """The fields of every connection body; :func:`connection_body` adds the connector's."""

    enabled: bool = True
    event_types: dict[EventType, bool] = Field(default_factory=dict)
    export_non_strict_signals: bool = True
    rate_limit_per_second: float | None = Field(default=None, gt=0, le=1000)
    max_concurrency: int | None = Field(default=None, ge=1, le=100)
    delivery_mode: DeliveryMode = DeliveryMode.API
    webhook: EndpointOptions | None = None

    option_names: ClassVar[frozenset[str]] = frozenset()
    """The connector's options (its spec's ``option_names``)."""

    def partner_options(self) -> dict[str, Any]:
        """The connector's options that were given, JSON-ready, under their config-class
        names."""
        return self.model_dump(mode="json", include=set(self.option_names), exclude_none=True)

    def match_policy_settings(self) -> dict[str, Any] | None:
        """The match policy given, as stored (``None``: none, or the connector takes none)."""
        return None

    def inbound_block(self) -> ApiModel | None:
        """The ``inbound`` block given (``None``: none, or the connector takes none)."""
        block = getattr(self, "inbound", None)
        return block if isinstance(block, ApiModel) else None


class _EndpointBody(ConnectionBody):
    """The body of the connector that carries webhook copies: its endpoint block only."""

    delivery_mode: Literal[DeliveryMode.WEBHOOK] = DeliveryMode.WEBHOOK


class _PartnerBody(ConnectionBody):
    """The body of every other connector: a delivery mode and the blocks it needs."""

    @model_validator(mode="after")
    def _blocks_for_delivery_mode(self) -> Self:
        if self.delivery_mode in (DeliveryMode.WEBHOOK, DeliveryMode.BOTH) and not self.webhook:
            msg = "a webhook block is required when delivery_mode is webhook or both"
            raise ValueError(msg)
        needs_auth = "auth" in type(self).model_fields
        if (
            self.delivery_mode in (DeliveryMode.API, DeliveryMode.BOTH)
            and needs_auth
            and not self.auth_input
        ):
            msg = "an auth block is required when delivery_mode is api or both"
            raise ValueError(msg)
        return self


class IdentityConnectionBody(_PartnerBody):
    """A partner body whose connector resolves identities: it takes a ``match_policy``."""

    match_policy: MatchPolicyIn | None = None

    def match_policy_settings(self) -> dict[str, Any] | None:
        if self.match_policy is None:
            return None
        return self.match_policy.model_dump(mode="json", exclude_unset=True)


def connection_body(connector: str) -> type[ConnectionBody]:
    """The request body of ``PUT /connections/<connector>``, composed from its spec; the same
    class for the same registered spec (OpenAPI names it ``spec.body_name``)."""
    return _compose(get_connector(connector), webhook_copy_carrier())


def _inbound_field(spec: ConnectorSpec) -> dict[str, Any]:
    """The body's ``inbound`` field, for a connector that takes one."""
    if spec.inbound_options is None:
        return {}
    return {"inbound": (spec.inbound_options | None, None)}


@cache
def _compose(spec: ConnectorSpec, carrier: ConnectorSpec) -> type[ConnectionBody]:
    endpoint = carrier.endpoint_options
    if spec.carries_webhook_copies:
        return create_model(
            spec.body_name,
            __base__=_EndpointBody,
            __module__=__name__,
            __doc__=f"A generic {spec.display_name} connection.",
            webhook=(endpoint, ...),
            **_inbound_field(spec),
        )
    options = spec.api_options
    required = tuple(
        name
        for name in options.model_fields
        if name in spec.option_names and spec.config_class.model_fields[name].is_required()
    )
    hook = _blocks_by_delivery_mode(has_auth="auth" in options.model_fields, with_auth=required)
    base = IdentityConnectionBody if spec.resolves_identities else _PartnerBody
    bases: tuple[type[BaseModel], ...] = (options, base)
    webhook: Any = (endpoint | None, None)
    return _as_body(
        create_model(
            spec.body_name,
            __base__=bases,
            __module__=__name__,
            __doc__=options.__doc__,
            __cls_kwargs__={"json_schema_extra": hook},
            option_names=(ClassVar[frozenset[str]], spec.option_names),
            webhook=webhook,
            **_inbound_field(spec),
        )
    )


def _as_body(model: type[BaseModel]) -> type[ConnectionBody]:
    if not issubclass(model, ConnectionBody):  # pragma: no cover - a base is one
        msg = f"{model.__name__} is not a connection body"
        raise TypeError(msg)
    return model


class ConnectionOut(BaseModel):
    """A connection as the API shows it: secrets replaced by the redaction marker."""

    model_config = ConfigDict(frozen=True)

    connection_id: str
    tenant_id: str
    connector: Connector
    enabled: bool
    delivery_mode: DeliveryMode
    event_types: dict[EventType, bool]
    export_non_strict_signals: bool
    mapping_policy_version: int
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    state: ShownState = Field(
        default="enabled",
        description="How deliveries to the connection fare: `enabled`, `parked` (endpoint gone"
        " or unusable configuration), `needs_reauth` (credentials refused), `failing` (every"
        " recent attempt failed; records wait and one probe at a time tests the destination),"
        " `disabled` (by the tenant, or after failing too long).",
    )
    state_reason: str | None = Field(default=None, description="Why, when not `enabled`.")
    state_since: datetime | None = Field(
        default=None, description="Since when, when not `enabled`."
    )

    @classmethod
    def from_record(
        cls, record: ConnectionRecord, status: ConnectionStatus | None = None
    ) -> ConnectionOut:
        shown = status if status is not None else ConnectionStatus()
        return cls(
            connection_id=record.connection_id,
            tenant_id=record.tenant_id,
            connector=record.connector,
            enabled=record.enabled,
            delivery_mode=record.delivery_mode,
            event_types=dict(record.event_types),
            export_non_strict_signals=record.export_non_strict_signals,
            mapping_policy_version=record.mapping_policy_version,
            settings=redact_settings(record.settings),
            created_at=record.created_at,
            updated_at=record.updated_at,
            state=shown.state,
            state_reason=shown.reason,
            state_since=shown.since,
        )


class ConnectionList(BaseModel):
    """A tenant's connections, one per connector at most."""

    items: list[ConnectionOut]


class AllowlistStatus(BaseModel):
    """Whether a tenant may use integrations."""

    tenant_id: str
    allowlisted: bool

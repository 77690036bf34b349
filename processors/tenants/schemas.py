"""Request and response bodies of the configuration API.

One request body per connector (``PUT /v1/tenants/{tenant_id}/connections/{connector}``),
unknown keys refused everywhere. Common to all three:

- ``enabled`` (default true), ``event_types`` (``{"company.upserted": false}``; event types left
  out are enabled, unknown ones are refused), ``export_non_strict_signals`` (default true),
  ``rate_limit_per_second`` and ``max_concurrency`` (optional overrides);
- ``webhook``: ``{"url", "secret"}`` of the tenant's own signed endpoint, required when the
  delivery mode includes ``webhook``. The URL and the ``whsec_`` secret are checked by the
  service with the webhook connector's own config class, which knows whether private networks
  are allowed (``QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS``).

Partner options, HubSpot and Pipedrive only, each left out to take the connector's default.
Their names are those of the connector's config class, and the service stores them at the top
of the connection's settings, where :mod:`processors.deliveries.sinks` passes them to that
class unchanged:

- HubSpot (:class:`connectors.hubspot.config.HubSpotConnectionConfig`):
  ``queast_id_property``, ``note_id_property`` (internal property names, ``^[a-z][a-z0-9_]*$``,
  at most 100 characters) and ``tier`` (``free_starter``, ``professional_enterprise``,
  ``oauth_app``);
- Pipedrive (:class:`connectors.pipedrive.config.PipedriveConnectionConfig`):
  ``domain_field_key`` (required when the delivery mode includes ``api``: the connector keeps
  the domain in that organization field), ``queast_id_field_key`` (field keys, word
  characters, at most 64), ``plan`` (``lite``, ``growth``, ``premium``, ``ultimate``) and
  ``daily_budget`` (API tokens per day, > 0);
- both: ``match_policy``, the identity match policy
  (:class:`processors.identity.resolver.MatchPolicy`): ``company_strategies`` and
  ``person_strategies`` (in order; each strategy once, and only strategies that identify
  that kind: ``partner_id``, ``domain``, ``linkedin_url``, ``company_name`` for companies,
  ``partner_id``, ``email``, ``linkedin_url`` for people), ``auto_link_threshold``
  (0.5 to 1) and ``ambiguity_margin`` (0 to 0.5). Fields left out take the matcher's
  defaults.

The service validates the assembled partner block with the connector's config class as well,
so whatever is stored is what the sink accepts.

Secrets: every secret field may be left out when replacing a connection, which keeps the stored
value (the same field of the same auth type). A secret field never takes the redaction marker
or an already sealed token: send the secret, or leave it out.

OpenAPI: the document says what the service requires, not only what pydantic checks on its
own. Secret fields are listed as required non-empty strings (a create needs them; leaving one
out of a replace is the documented exception above, which a schema cannot express). ``auth``
is required unless ``delivery_mode`` is ``webhook``, ``webhook`` when it is ``webhook`` or
``both`` (an ``anyOf`` over the three modes), Pipedrive's ``domain_field_key`` whenever
``auth`` is given (``dependentRequired``), a webhook secret has the ``whsec_`` shape, and match
strategy lists are non-empty, without repeats, and name only strategies of their kind. An
explicit ``null`` for an optional block is accepted and means "left out"; the schema shows
only the object.

Responses show a connection with every secret replaced by the redaction marker
(:func:`~processors.tenants.secret_fields.redact_settings`); no secret and no sealed token is
ever in a response.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from connectors.hubspot.config import HubSpotTier
from connectors.pipedrive.config import PipedrivePlan
from processors.domain.events import EventType
from processors.identity.resolver import MatchPolicy
from processors.identity.strategies import MatchStrategy
from processors.secrets import REDACTED
from processors.tenants.models import ConnectionRecord, Connector, DeliveryMode
from processors.tenants.secret_fields import SEALED_PREFIX, redact_settings

__all__ = [
    "AllowlistStatus",
    "ConnectionIn",
    "ConnectionList",
    "ConnectionOut",
    "HubSpotConnectionIn",
    "HubSpotOAuth",
    "HubSpotPrivateApp",
    "MatchPolicyIn",
    "PipedriveApiToken",
    "PipedriveConnectionIn",
    "PipedriveOAuth",
    "WebhookConnectionIn",
    "WebhookEndpointIn",
]

_MAX_SECRET_CHARS: Final = 4096
_PIPEDRIVE_DOMAIN_SUFFIX: Final = ".pipedrive.com"


def _plain_secret(value: SecretStr) -> SecretStr:
    plain = value.get_secret_value()
    if not plain:
        msg = "must not be empty"
        raise ValueError(msg)
    if len(plain) > _MAX_SECRET_CHARS:
        msg = f"must be at most {_MAX_SECRET_CHARS} characters"
        raise ValueError(msg)
    if REDACTED in plain or plain.startswith(SEALED_PREFIX):
        msg = "send the secret itself, or leave the field out to keep the stored one"
        raise ValueError(msg)
    return value


PlainSecret = Annotated[SecretStr, AfterValidator(_plain_secret)]
"""A secret as a client sends it: never the redaction marker, never a sealed token."""

ClientId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
HubSpotPropertyName = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_]*$")
]
"""A HubSpot property's internal name (as :class:`HubSpotConnectionConfig` accepts it)."""
PipedriveFieldKey = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^\w+$")
]
"""A Pipedrive custom field key (as :class:`PipedriveConnectionConfig` accepts it)."""

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


_SECRET_SCHEMA: Final[dict[str, Any]] = {
    "type": "string",
    "format": "password",
    "writeOnly": True,
    "minLength": 1,
    "maxLength": _MAX_SECRET_CHARS,
    "description": (
        "Required to create the connection. When replacing it, leave the field out to keep the "
        "stored value (same field, same auth type). Never the redaction marker or a sealed token."
    ),
}
_WHSEC_PATTERN: Final = r"^whsec_[A-Za-z0-9+/]+={0,2}$"
"""The shape of a Standard Webhooks secret; the service also checks it decodes to 24 to 64
bytes."""

SchemaHook = Callable[[dict[str, Any]], None]


def _secrets_required(*fields: str, overrides: dict[str, Any] | None = None) -> SchemaHook:
    """A ``json_schema_extra`` hook: the secret ``fields`` become required non-empty strings."""

    def amend(schema: dict[str, Any]) -> None:
        properties = schema["properties"]
        for name in fields:
            title = properties[name].get("title", name)
            properties[name] = {**_SECRET_SCHEMA, **(overrides or {}), "title": title}
        required = list(schema.get("required", []))
        schema["required"] = required + [name for name in fields if name not in required]

    return amend


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    """An optional property's schema without its ``null`` branch and ``null`` default."""
    branches = [b for b in prop.get("anyOf", []) if b != {"type": "null"}]
    rest = {k: v for k, v in prop.items() if k not in {"anyOf", "default"}}
    if len(branches) == 1:
        return {**branches[0], **rest}
    return {**rest, "anyOf": branches} if branches else rest


def _blocks_by_delivery_mode(*, with_auth: tuple[str, ...] = ()) -> SchemaHook:
    """A ``json_schema_extra`` hook for partner connections: ``auth`` required unless the mode
    is ``webhook``, ``webhook`` required for ``webhook`` and ``both``, and ``with_auth``
    required whenever ``auth`` is given (see ``_CrmConnectionBody._blocks_for_delivery_mode``
    and the connector's config class)."""

    def amend(schema: dict[str, Any]) -> None:
        properties = schema["properties"]
        properties["auth"] = {
            **_without_null(properties["auth"]),
            "description": "Required unless `delivery_mode` is `webhook`.",
        }
        properties["webhook"] = {
            **_without_null(properties["webhook"]),
            "description": "Required when `delivery_mode` is `webhook` or `both`.",
        }
        schema["anyOf"] = [
            {"properties": {"delivery_mode": {"const": "api"}}, "required": ["auth"]},
            {
                "properties": {"delivery_mode": {"const": "both"}},
                "required": ["delivery_mode", "auth", "webhook"],
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


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


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


class WebhookEndpointIn(_Body):
    """The tenant's own signed endpoint. ``secret`` is a Standard Webhooks ``whsec_`` secret."""

    model_config = ConfigDict(
        json_schema_extra=_secrets_required("secret", overrides={"pattern": _WHSEC_PATTERN})
    )

    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    secret: PlainSecret | None = None


class HubSpotPrivateApp(_Body):
    model_config = ConfigDict(json_schema_extra=_secrets_required("token"))

    type: Literal["private_app"]
    token: PlainSecret | None = None


class HubSpotOAuth(_Body):
    model_config = ConfigDict(json_schema_extra=_secrets_required("client_secret", "refresh_token"))

    type: Literal["oauth"]
    client_id: ClientId
    client_secret: PlainSecret | None = None
    refresh_token: PlainSecret | None = None


class PipedriveApiToken(_Body):
    model_config = ConfigDict(json_schema_extra=_secrets_required("token"))

    type: Literal["api_token"]
    token: PlainSecret | None = None


def _pipedrive_domain(url: HttpUrl) -> HttpUrl:
    host = url.host or ""
    if url.scheme != "https" or not host.endswith(_PIPEDRIVE_DOMAIN_SUFFIX):
        msg = f"must be an https URL on a {_PIPEDRIVE_DOMAIN_SUFFIX} host"
        raise ValueError(msg)
    if url.username or url.password:
        msg = "must not contain credentials"
        raise ValueError(msg)
    return url


class PipedriveOAuth(_Body):
    model_config = ConfigDict(json_schema_extra=_secrets_required("client_secret", "refresh_token"))

    type: Literal["oauth"]
    client_id: ClientId
    client_secret: PlainSecret | None = None
    refresh_token: PlainSecret | None = None
    api_domain: Annotated[HttpUrl, AfterValidator(_pipedrive_domain)]


HubSpotAuth = Annotated[HubSpotPrivateApp | HubSpotOAuth, Field(discriminator="type")]
PipedriveAuth = Annotated[PipedriveApiToken | PipedriveOAuth, Field(discriminator="type")]


class _ConnectionBody(_Body):
    enabled: bool = True
    event_types: dict[EventType, bool] = Field(default_factory=dict)
    export_non_strict_signals: bool = True
    rate_limit_per_second: float | None = Field(default=None, gt=0, le=1000)
    max_concurrency: int | None = Field(default=None, ge=1, le=100)


class WebhookConnectionIn(_ConnectionBody):
    """A generic signed-webhook connection."""

    delivery_mode: Literal[DeliveryMode.WEBHOOK] = DeliveryMode.WEBHOOK
    webhook: WebhookEndpointIn


class _CrmConnectionBody(_ConnectionBody):
    delivery_mode: DeliveryMode = DeliveryMode.API
    webhook: WebhookEndpointIn | None = None
    match_policy: MatchPolicyIn | None = None

    @model_validator(mode="after")
    def _blocks_for_delivery_mode(self) -> Self:
        if self.delivery_mode in (DeliveryMode.WEBHOOK, DeliveryMode.BOTH) and not self.webhook:
            msg = "a webhook block is required when delivery_mode is webhook or both"
            raise ValueError(msg)
        if self.delivery_mode in (DeliveryMode.API, DeliveryMode.BOTH) and not self.auth_block:
            msg = "an auth block is required when delivery_mode is api or both"
            raise ValueError(msg)
        return self

    @property
    def auth_block(self) -> BaseModel | None:
        return None

    def partner_options(self) -> dict[str, Any]:
        """The partner options that were given, JSON-ready, under their config-class names."""
        return self.model_dump(mode="json", include=set(self._OPTIONS), exclude_none=True)

    _OPTIONS: ClassVar[frozenset[str]] = frozenset()


class HubSpotConnectionIn(_CrmConnectionBody):
    """A HubSpot connection: a private app token or OAuth credentials, and partner options."""

    model_config = ConfigDict(json_schema_extra=_blocks_by_delivery_mode())

    _OPTIONS: ClassVar[frozenset[str]] = frozenset(
        {"queast_id_property", "note_id_property", "tier"}
    )

    auth: HubSpotAuth | None = None
    queast_id_property: HubSpotPropertyName | None = None
    note_id_property: HubSpotPropertyName | None = None
    tier: HubSpotTier | None = None

    @property
    def auth_block(self) -> BaseModel | None:
        return self.auth


class PipedriveConnectionIn(_CrmConnectionBody):
    """A Pipedrive connection: an API token or OAuth credentials with the company domain, and
    partner options (``domain_field_key`` is required when the delivery mode includes api)."""

    model_config = ConfigDict(
        json_schema_extra=_blocks_by_delivery_mode(with_auth=("domain_field_key",))
    )

    _OPTIONS: ClassVar[frozenset[str]] = frozenset(
        {"domain_field_key", "queast_id_field_key", "plan", "daily_budget"}
    )

    auth: PipedriveAuth | None = None
    domain_field_key: PipedriveFieldKey | None = None
    queast_id_field_key: PipedriveFieldKey | None = None
    plan: PipedrivePlan | None = None
    daily_budget: int | None = Field(default=None, gt=0)

    @property
    def auth_block(self) -> BaseModel | None:
        return self.auth


ConnectionIn = WebhookConnectionIn | HubSpotConnectionIn | PipedriveConnectionIn


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

    @classmethod
    def from_record(cls, record: ConnectionRecord) -> ConnectionOut:
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
        )


class ConnectionList(BaseModel):
    """A tenant's connections, one per connector at most."""

    items: list[ConnectionOut]


class AllowlistStatus(BaseModel):
    """Whether a tenant may use integrations."""

    tenant_id: str
    allowlisted: bool

"""The Pipedrive part of ``PUT /v1/tenants/{tenant_id}/connections/pipedrive``.

- ``auth``: an API token ``{"type": "api_token", "token"}`` or an OAuth app installation
  ``{"type": "oauth", "client_id", "client_secret", "refresh_token", "api_domain"}``
  (``api_domain``: the company's ``https://<company>.pipedrive.com``, stored without a
  trailing slash);
- ``domain_field_key`` (required with ``auth``: the connector keeps the company domain in that
  organization field; the config class requires it, and the service derives the OpenAPI
  ``dependentRequired`` from that), ``queast_id_field_key`` (field keys, word characters, at
  most 64), ``plan`` (``lite``, ``growth``, ``premium``, ``ultimate``) and ``daily_budget``
  (API tokens per day, > 0), as
  :class:`~connectors.pipedrive.config.PipedriveConnectionConfig` takes them.

:class:`PipedriveInboundIn` is the body's ``inbound`` block (the connector's spec names it as
``inbound_options``): the Basic credentials Pipedrive's webhook sends, the interest field and
its values, as :class:`~connectors.pipedrive.config.PipedriveInbound` takes them.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, ConfigDict, Field, HttpUrl, IPvAnyNetwork, field_validator

from connectors.base.api import (
    ApiModel,
    AuthInput,
    ConnectionOptions,
    OAuthInstallInput,
    PlainSecret,
    SecretSource,
    secrets_required,
)
from connectors.pipedrive.config import (
    MIN_PASSWORD_CHARS,
    BasicUser,
    FieldKey,
    InterestValue,
    PipedrivePlan,
)

__all__ = ["PipedriveApiToken", "PipedriveInboundIn", "PipedriveOAuth", "PipedriveOptions"]

_PIPEDRIVE_DOMAIN_SUFFIX: Final = ".pipedrive.com"


class PipedriveApiToken(AuthInput):
    model_config = ConfigDict(json_schema_extra=secrets_required("token"))

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


class PipedriveOAuth(OAuthInstallInput):
    # A Marketplace app installation with the company's api_domain. No docstring: the OpenAPI
    # schema has no description.

    api_domain: Annotated[HttpUrl, AfterValidator(_pipedrive_domain)]

    def settings(self, secret: SecretSource) -> dict[str, Any]:
        return {**super().settings(secret), "api_domain": str(self.api_domain).rstrip("/")}


PipedriveAuthIn = Annotated[PipedriveApiToken | PipedriveOAuth, Field(discriminator="type")]


class PipedriveOptions(ConnectionOptions):
    """A Pipedrive connection: an API token or OAuth credentials with the company domain, and
    partner options (``domain_field_key`` is required when the delivery mode includes api)."""

    auth: PipedriveAuthIn | None = None
    domain_field_key: FieldKey | None = None
    queast_id_field_key: FieldKey | None = None
    plan: PipedrivePlan | None = None
    daily_budget: int | None = Field(default=None, gt=0)

    @property
    def auth_input(self) -> AuthInput | None:
        return self.auth


class PipedriveInboundIn(ApiModel):
    """Pipedrive's webhooks calling us: the Basic credentials the webhook was created with,
    and the organization field (``interest_field_key``) whose values (``interest_values``,
    compared as text; option ids for option fields) mark interest."""

    model_config = ConfigDict(json_schema_extra=secrets_required("password"))

    enabled: bool = False
    username: BasicUser
    password: PlainSecret | None = None
    interest_field_key: FieldKey
    interest_values: list[InterestValue] = Field(min_length=1, max_length=100)
    ip_allowlist: list[IPvAnyNetwork] = Field(default_factory=list, max_length=100)

    @field_validator("password")
    @classmethod
    def _check_password(cls, password: PlainSecret | None) -> PlainSecret | None:
        if password is not None and len(password.get_secret_value()) < MIN_PASSWORD_CHARS:
            msg = f"must be at least {MIN_PASSWORD_CHARS} characters"
            raise ValueError(msg)
        return password

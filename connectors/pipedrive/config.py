"""Settings of a Pipedrive connection (one company account).

- ``auth``: either ``{"type": "api_token", "token": ...}`` (sent as the ``x-api-token``
  header) or ``{"type": "oauth", "client_id", "client_secret", "refresh_token",
  "api_domain", "access_token"?, "expires_at"?, "token_url"?}`` (a Marketplace app; the
  access token is refreshed at ``token_url``, Pipedrive's by default).
- ``base_url``: where API calls go. Unset means ``api_domain`` for OAuth and
  ``https://api.pipedrive.com`` for API tokens. The service sets it from
  ``QI_PIPEDRIVE_BASE_URL`` (a sandbox) when that is configured.
- ``domain_field_key``: key of the organization custom field (a searchable text field)
  holding the company's domain. Pipedrive organizations have no domain field and no
  domain search, so the connector keeps the domain there and searches through it.
- ``queast_id_field_key``: optional custom field (on organizations and persons) holding
  the Queast id, so people in Pipedrive can see what Queast linked.
- ``plan``: the company's Pipedrive plan; it sizes the 2-second burst limit per token
  (:func:`burst_per_window`) and the default daily token budget.
- ``daily_budget``: API tokens per day the connector may spend. Pipedrive's budget is
  30,000 x plan multiplier x seats (+ purchased top-ups) and shared by every integration
  of the company, so set it to the share this connection may use; the default assumes one
  seat and the whole budget.
- ``rate_limit_per_second`` / ``max_concurrency``: connection-level overrides the service
  may add to the block (see ``processors.deliveries.sinks``).
- ``candidate_index``: the in-memory copy of the account's organizations and persons that
  finds candidates for first links without a search per entity
  (:class:`PipedriveCandidateIndex`; see ``connectors.pipedrive.index``). On by default.

- ``inbound``: optional :class:`PipedriveInbound`, Pipedrive's webhooks calling us (see
  :mod:`connectors.pipedrive.webhooks`): the HTTP Basic credentials the webhook was created
  with (``http_auth_user`` / ``http_auth_password``), the organization field whose values
  mark interest (``interest_field_key``, a field key as above: custom fields have 40-character
  hash keys) and those values (``interest_values``, compared as text: an option field's values
  are its option ids, so ``"37"``, not the label). The sink never reads it.

Every URL must be ``https`` on a ``pipedrive.com`` host unless the connection is validated
with ``allow_private_networks`` (local sandboxes and tests): the token goes wherever
``base_url`` points.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from connectors.base.config import ConnectionConfig, allows_private_networks, check_url
from connectors.base.inbound import InterestSettings, InterestValue

__all__ = [
    "DEFAULT_BASE_URL",
    "MIN_PASSWORD_CHARS",
    "OAUTH_REFRESH_URL",
    "PARTNER",
    "BasicUser",
    "FieldKey",
    "InterestValue",
    "PipedriveApiTokenAuth",
    "PipedriveCandidateIndex",
    "PipedriveConnectionConfig",
    "PipedriveInbound",
    "PipedriveOAuth",
    "PipedrivePlan",
    "burst_per_window",
    "check_partner_url",
]

PARTNER: Final[str] = "pipedrive"
"""The partner named in this connector's errors (``ConnectorError.partner``)."""
DEFAULT_BASE_URL: Final[str] = "https://api.pipedrive.com"
OAUTH_REFRESH_URL: Final[str] = "https://oauth.pipedrive.com/oauth/token"
BASE_DAILY_TOKENS: Final[int] = 30_000
BURST_WINDOW_SECONDS: Final[float] = 2.0
_PIPEDRIVE_HOST: Final[str] = "pipedrive.com"


class PipedrivePlan(StrEnum):
    LITE = "lite"
    GROWTH = "growth"
    PREMIUM = "premium"
    ULTIMATE = "ultimate"


_PLAN_MULTIPLIER: Final[dict[PipedrivePlan, int]] = {
    PipedrivePlan.LITE: 1,
    PipedrivePlan.GROWTH: 2,
    PipedrivePlan.PREMIUM: 5,
    PipedrivePlan.ULTIMATE: 7,
}
_API_TOKEN_BURST: Final[dict[PipedrivePlan, int]] = {
    PipedrivePlan.LITE: 20,
    PipedrivePlan.GROWTH: 40,
    PipedrivePlan.PREMIUM: 100,
    PipedrivePlan.ULTIMATE: 120,
}
_OAUTH_BURST: Final[dict[PipedrivePlan, int]] = {
    PipedrivePlan.LITE: 80,
    PipedrivePlan.GROWTH: 160,
    PipedrivePlan.PREMIUM: 400,
    PipedrivePlan.ULTIMATE: 480,
}

AuthType = Literal["api_token", "oauth"]


def burst_per_window(plan: PipedrivePlan, auth_type: AuthType) -> int:
    """Requests per token per 2-second window (Pipedrive's burst limit for the plan)."""
    table = _OAUTH_BURST if auth_type == "oauth" else _API_TOKEN_BURST
    return table[plan]


def check_partner_url(url: str | HttpUrl, *, allow_private_networks: bool, what: str) -> str:
    """``url`` as text if the connector may send a token there; ``ValueError`` otherwise.

    Refused: user info, a query or fragment, and (unless ``allow_private_networks``) any
    scheme but ``https`` or a host outside ``pipedrive.com``.
    """
    parsed = url if isinstance(url, HttpUrl) else HttpUrl(url)
    check_url(parsed, what=what, allow_private_networks=allow_private_networks)
    if not allow_private_networks:
        host = (parsed.host or "").lower().rstrip(".")
        if host != _PIPEDRIVE_HOST and not host.endswith("." + _PIPEDRIVE_HOST):
            msg = f"{what} must be on a {_PIPEDRIVE_HOST} host"
            raise ValueError(msg)
    return str(parsed)


def _check_url(url: HttpUrl, info: ValidationInfo, *, what: str) -> HttpUrl:
    check_partner_url(url, allow_private_networks=allows_private_networks(info), what=what)
    return url


FieldKey = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^\w+$")
]
"""A Pipedrive custom field key: word characters, at most 64."""
_ClientId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]


class _AuthBlock(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class PipedriveApiTokenAuth(_AuthBlock):
    """A user's personal API token (``x-api-token`` header)."""

    type: Literal["api_token"]
    token: SecretStr = Field(min_length=1)


class PipedriveOAuth(_AuthBlock):
    """An OAuth app installation: refreshed at ``token_url`` with the client credentials.

    ``access_token``/``expires_at`` (Unix seconds) are the last known access token, if the
    service kept one; without them the first request refreshes.
    """

    type: Literal["oauth"]
    client_id: _ClientId
    client_secret: SecretStr = Field(min_length=1)
    refresh_token: SecretStr = Field(min_length=1)
    api_domain: HttpUrl
    access_token: SecretStr | None = None
    expires_at: float | None = Field(default=None, ge=0)
    token_url: HttpUrl = HttpUrl(OAUTH_REFRESH_URL)

    @field_validator("api_domain")
    @classmethod
    def _check_api_domain(cls, url: HttpUrl, info: ValidationInfo) -> HttpUrl:
        return _check_url(url, info, what="api_domain")

    @field_validator("token_url")
    @classmethod
    def _check_token_url(cls, url: HttpUrl, info: ValidationInfo) -> HttpUrl:
        return _check_url(url, info, what="token_url")


PipedriveAuthConfig = Annotated[PipedriveApiTokenAuth | PipedriveOAuth, Field(discriminator="type")]


class PipedriveCandidateIndex(BaseModel):
    """How the candidate index of a connection is kept (see ``connectors.pipedrive.index``).

    - ``enabled``: off means every first link searches Pipedrive (the search path).
    - ``refresh_seconds``: before a lookup, the changes since the last fetch are fetched
      (``updated_since``) when more than this has passed. It bounds how long an object a
      person made in Pipedrive can stay unseen (0: before every lookup).
    - ``refresh_overlap_seconds``: each change fetch reaches this far before the start of
      the previous one (objects changed while it paged, clock skew with Pipedrive).
    - ``max_objects``: per kind (organizations, persons); above it the kind falls back to
      the search path until the next rebuild. Each object held costs about 1 KB.
    - ``rebuild_seconds``: a full rebuild after this long (drops objects deleted in
      Pipedrive, which the list endpoints no longer return).
    - ``retry_after_failure_seconds``: after a failed build or refresh the kind uses the
      search path this long, then builds again.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    refresh_seconds: float = Field(default=5.0, ge=0, le=3600)
    refresh_overlap_seconds: float = Field(default=10.0, ge=0, le=3600)
    max_objects: int = Field(default=50_000, ge=1, le=1_000_000)
    rebuild_seconds: float = Field(default=86_400.0, gt=0)
    retry_after_failure_seconds: float = Field(default=600.0, ge=0)


MIN_PASSWORD_CHARS: Final[int] = 8
BasicUser = Annotated[
    str, StringConstraints(min_length=1, max_length=256, pattern=r"^[\x21-\x39\x3b-\x7e]+$")
]
"""A Basic auth user name: visible ASCII without ``:`` (it separates user and password)."""


class PipedriveInbound(InterestSettings):
    """The inbound block of a Pipedrive connection; see the module docstring."""

    username: BasicUser
    password: SecretStr = Field(min_length=MIN_PASSWORD_CHARS)
    interest_field_key: FieldKey


class PipedriveConnectionConfig(ConnectionConfig):
    """A tenant's Pipedrive company account; see the module docstring."""

    auth: PipedriveAuthConfig
    base_url: HttpUrl | None = None
    domain_field_key: FieldKey
    queast_id_field_key: FieldKey | None = None
    plan: PipedrivePlan = PipedrivePlan.LITE
    daily_budget: int | None = Field(default=None, gt=0)
    timeout_seconds: float = Field(default=15.0, gt=0, le=60)
    rate_limit_per_second: float | None = Field(default=None, gt=0, le=1000)
    max_concurrency: int | None = Field(default=None, ge=1, le=100)
    candidate_index: PipedriveCandidateIndex = PipedriveCandidateIndex()
    inbound: PipedriveInbound | None = None

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, url: HttpUrl | None, info: ValidationInfo) -> HttpUrl | None:
        if url is None:
            return None
        return _check_url(url, info, what="base_url")

    @property
    def auth_type(self) -> AuthType:
        return self.auth.type

    @property
    def effective_daily_budget(self) -> int:
        """``daily_budget``, else 30,000 x the plan's multiplier (one seat)."""
        if self.daily_budget is not None:
            return self.daily_budget
        return BASE_DAILY_TOKENS * _PLAN_MULTIPLIER[self.plan]

    @property
    def burst_per_window(self) -> int:
        """Requests per 2-second window for this plan and auth type."""
        return burst_per_window(self.plan, self.auth.type)

    def api_base_url(self, *, oauth_api_domain: str | None = None) -> str:
        """Where API calls go, without a trailing slash.

        ``oauth_api_domain`` is the ``api_domain`` of the latest OAuth refresh (it wins over
        the configured one); an explicit ``base_url`` wins over both.
        """
        if self.base_url is not None:
            chosen = str(self.base_url)
        elif isinstance(self.auth, PipedriveOAuth):
            chosen = oauth_api_domain or str(self.auth.api_domain)
        else:
            chosen = DEFAULT_BASE_URL
        return chosen.rstrip("/")

"""Settings of a HubSpot CRM connection, and the documented limits they select.

- ``auth``: a private app ``{"type": "private_app", "token"}`` or a public OAuth app
  installation ``{"type": "oauth", "client_id", "client_secret", "refresh_token",
  "access_token"?, "expires_at"?}`` (``expires_at``: Unix seconds). Secrets are
  ``SecretStr`` and are named so the service seals them at rest.
- ``base_url``: ``https://api.hubapi.com`` unless overridden (the service passes
  ``QI_HUBSPOT_BASE_URL`` through it, tests point it at the local sandbox). HTTPS is
  required; plain HTTP only when validated with ``allow_private_networks``. User info,
  query and fragment are refused.
- ``queast_id_property``: the internal name of the custom *unique* property
  (``hasUniqueValue: true``) on companies and contacts that holds the Queast id; batch
  upserts use it as ``idProperty``.
- ``note_id_property``: optional unique property on notes; when set, signal and job-ad
  notes are upserted on it (no duplicate notes when a batch is retried), otherwise they
  are created.
- ``tier``: sizes the burst limit (PARTNERS.md a, "Rate limits"): private app on
  Free/Starter 100 per 10 s, Professional/Enterprise 190 per 10 s, public OAuth app 110
  per 10 s. Unset, it follows ``auth``: ``oauth_app`` for OAuth, ``free_starter``
  otherwise. ``rate_limit_per_second`` (a connection-level override the service merges in)
  replaces the tier's rate.
- ``search_rate_per_second``: CRM search pacing, 5 per second per account by default.
- ``timeout_seconds`` and ``max_concurrency`` size the HTTP client.
- ``inbound``: optional :class:`HubSpotInbound`, the HubSpot app's webhooks calling us (see
  :mod:`connectors.hubspot.webhooks`): the app's ``client_secret`` (it signs every request),
  the company property whose values mark interest (``interest_property``, an internal name as
  above, ``queast_interest`` by default) and those values (``interest_values``, ``["true"]`` by
  default: a single checkbox property), and ``accept_legacy_signatures`` (whether a request
  signed only with v1/v2, which carry no timestamp, is accepted). The sink never reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
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
from connectors.base.ratelimit import RateLimit

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_CLIENT_SECRET_CHARS",
    "HubSpotAuth",
    "HubSpotConnectionConfig",
    "HubSpotInbound",
    "HubSpotLimits",
    "HubSpotOAuth",
    "HubSpotPrivateApp",
    "HubSpotTier",
    "InterestValue",
    "PropertyName",
    "limits_for",
]

DEFAULT_BASE_URL: Final[str] = "https://api.hubapi.com"
_BURST_WINDOW_SECONDS: Final[float] = 10.0
_PROPERTY_NAME_PATTERN: Final[str] = r"^[a-z][a-z0-9_]{0,99}$"
_PACING_BURST: Final[float] = 3.0
MAX_CLIENT_SECRET_CHARS: Final[int] = 256
"""A HubSpot app's client secret is a 36-character UUID; anything far longer is a mistake."""

PropertyName = Annotated[str, StringConstraints(pattern=_PROPERTY_NAME_PATTERN)]
"""A HubSpot property's internal name (lower case, digits, ``_``; at most 100 characters)."""


class HubSpotTier(StrEnum):
    """Which documented burst and daily limits apply to the connection."""

    FREE_STARTER = "free_starter"
    PROFESSIONAL_ENTERPRISE = "professional_enterprise"
    OAUTH_APP = "oauth_app"


@dataclass(frozen=True, kw_only=True, slots=True)
class HubSpotLimits:
    """The limits a connection's requests are paced by.

    ``burst`` counts requests (not records) per rolling 10-second window, search
    excluded (its ``burst`` is the pacing bucket's size, see :func:`limits_for`); ``daily`` is
    the account's daily request budget (``None``: none stated).
    """

    burst: RateLimit
    search: RateLimit
    daily: int | None


_TIER_LIMITS: Final[dict[HubSpotTier, tuple[int, int | None]]] = {
    HubSpotTier.FREE_STARTER: (100, 250_000),
    # Professional 625,000 and Enterprise 1,000,000 per day: use the lower and read headers.
    HubSpotTier.PROFESSIONAL_ENTERPRISE: (190, 625_000),
    HubSpotTier.OAUTH_APP: (110, None),
}


class _Auth(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class HubSpotPrivateApp(_Auth):
    """A private app's access token: sent as is, never refreshed."""

    type: Literal["private_app"]
    token: SecretStr

    @field_validator("token")
    @classmethod
    def _check_token(cls, token: SecretStr) -> SecretStr:
        if not token.get_secret_value().strip():
            msg = "token must not be empty"
            raise ValueError(msg)
        return token


class HubSpotOAuth(_Auth):
    """A public app installation: refreshed with the refresh-token grant."""

    type: Literal["oauth"]
    client_id: str = Field(min_length=1, max_length=200)
    client_secret: SecretStr
    refresh_token: SecretStr
    access_token: SecretStr | None = None
    expires_at: float | None = Field(default=None, ge=0)


HubSpotAuth = Annotated[HubSpotPrivateApp | HubSpotOAuth, Field(discriminator="type")]


class HubSpotInbound(InterestSettings):
    """The inbound block of a HubSpot connection; see the module docstring. An interest value
    is an enumeration option's internal value, or ``true`` for a checkbox."""

    client_secret: SecretStr = Field(min_length=1, max_length=MAX_CLIENT_SECRET_CHARS)
    interest_property: PropertyName = "queast_interest"
    interest_values: list[InterestValue] = Field(
        default_factory=lambda: ["true"], min_length=1, max_length=100
    )
    accept_legacy_signatures: bool = True

    @field_validator("client_secret")
    @classmethod
    def _check_client_secret(cls, secret: SecretStr) -> SecretStr:
        if not secret.get_secret_value().strip():
            msg = "client_secret must not be blank"
            raise ValueError(msg)
        return secret


class HubSpotConnectionConfig(ConnectionConfig):
    """A tenant's HubSpot account, as one connection sees it."""

    auth: HubSpotAuth
    base_url: HttpUrl = HttpUrl(DEFAULT_BASE_URL)
    queast_id_property: str = Field(default="queast_id", pattern=_PROPERTY_NAME_PATTERN)
    note_id_property: str | None = Field(default=None, pattern=_PROPERTY_NAME_PATTERN)
    tier: HubSpotTier | None = None
    search_rate_per_second: float = Field(default=5.0, gt=0, le=100)
    rate_limit_per_second: float | None = Field(default=None, gt=0, le=1000)
    max_concurrency: int | None = Field(default=None, ge=1, le=100)
    timeout_seconds: float = Field(default=30.0, gt=0, le=120)
    inbound: HubSpotInbound | None = None

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, url: HttpUrl, info: ValidationInfo) -> HttpUrl:
        return check_url(url, what="base_url", allow_private_networks=allows_private_networks(info))

    @property
    def effective_tier(self) -> HubSpotTier:
        """``tier``, or the one ``auth`` implies when it is unset."""
        if self.tier is not None:
            return self.tier
        if isinstance(self.auth, HubSpotOAuth):
            return HubSpotTier.OAUTH_APP
        return HubSpotTier.FREE_STARTER

    @property
    def api_root(self) -> str:
        """``base_url`` without a trailing slash, ready for ``/crm/v3/...`` paths."""
        return str(self.base_url).rstrip("/")


def limits_for(config: HubSpotConnectionConfig) -> HubSpotLimits:
    """The limits for ``config``'s tier and overrides (called once per sink setup).

    The burst bucket holds three requests: the rolling window would allow the whole
    window's worth at once, the bucket spaces requests evenly (one per 100 ms on
    Free/Starter), so that under load each carries the full batch that gathered meanwhile;
    three, not one, so that a request sent a little late (a busy event loop) does not
    lose its turn.
    """
    per_window, daily = _TIER_LIMITS[config.effective_tier]
    rate = (
        per_window
        if config.rate_limit_per_second is None
        else config.rate_limit_per_second * _BURST_WINDOW_SECONDS
    )
    burst = RateLimit(rate=rate, per_seconds=_BURST_WINDOW_SECONDS, burst=_PACING_BURST)
    search = RateLimit(rate=config.search_rate_per_second, per_seconds=1.0)
    return HubSpotLimits(burst=burst, search=search, daily=daily)

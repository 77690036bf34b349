"""What a connector provides for inbound partner webhooks, and what it hands the service.

A partner calls ``POST /webhooks/{connector}/{tenant_id}``. The service (``processors``) finds
the tenant's connection of that connector, checks that its ``inbound`` block is enabled and
the source address is allowed, and then hands the request to the connector's
:class:`InboundAdapter` (``ConnectorSpec.inbound``), in two steps, each pure (no I/O, an
injected clock):

1. :meth:`InboundAdapter.verify` authenticates the request **before anything parses the
   body**: the partner's signature or credentials, and the freshness of its timestamp where
   the partner signs one. It raises :class:`InboundAuthError` (answered 401) with a short
   ``reason`` for the metric (``missing_signature``, ``bad_signature``, ``stale_timestamp``,
   ``bad_credentials``...). It compares in constant time and never puts a header value, a
   secret or the body in an error.
2. :meth:`InboundAdapter.highlights` parses the authenticated body into the interest
   highlights it carries (zero or more: a HubSpot batch holds up to 100 events, most of which
   are not interest), or raises :class:`InboundPayloadError` (answered 400).

The steps the connectors' verifiers share are here: :func:`header` (a header whatever the case
of its name), :func:`same_secret` (a constant-time comparison that does not reveal lengths
either) and :func:`check_fresh` (the freshness window of a signed timestamp, refusing a clock
that is not a number); so is :func:`scalar_text`, how a partner's field value is compared with
a connection's ``interest_values``.

A highlight names the partner's event identity (:attr:`InboundHighlight.partner_event_id`,
what the service deduplicates on, stable across the partner's retries of the same event) and
what the partner says of the company (its object id, and whatever fields the payload carries).
Resolving the company to a Queast company is the inbound agent's business, later: nothing here
can create a Signal, only an interest highlight.

:class:`InboundRequest` carries ``url``: the URL as the partner called it (the public base URL
the partner was given, ``QI_PUBLIC_BASE_URL``, plus the path and query as received), since
HubSpot signs the full URI.

When a highlight carries only the partner's object id (HubSpot and Pipedrive events do) and
that object is not linked, the inbound agent asks the connector's
:class:`PartnerCompanyReader` for the object's fields: :meth:`PartnerCompanyReader.company`
returns them as an :class:`InboundCompany`, ``None`` when the partner has no such object
(404), or raises :class:`PartnerReadError` with ``reason`` ``auth_failed`` (the partner
refused the connection's credentials, or their OAuth refresh), ``needs_reauth`` (the
connection is parked until it is authorised again: not read) or ``failed`` (still failing
after the reader's bounded retries, or an answer that is not what the partner documents).
A reader does its own bounded retries of transient failures (timeouts, 429, 5xx) and never
waits longer than it promised.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, StringConstraints

__all__ = [
    "InboundAdapter",
    "InboundAuthError",
    "InboundCompany",
    "InboundHighlight",
    "InboundPayloadError",
    "InboundRequest",
    "InboundSettings",
    "InterestSettings",
    "InterestValue",
    "PartnerCompanyReader",
    "PartnerReadError",
    "PartnerReadFailure",
    "check_fresh",
    "header",
    "same_secret",
    "scalar_text",
]


class InboundSettings(BaseModel):
    """The part of every connector's ``inbound`` block that the service itself reads.

    A connector's own inbound block subclasses it with its credentials (sealed like every
    ``SecretStr`` of a connection) and its interest rules. Validation errors never echo the
    input (it holds those credentials).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    enabled: bool = False
    ip_allowlist: list[IPvAnyNetwork] = Field(default_factory=list, max_length=100)
    """Source networks allowed to call (empty: any); checked before the signature."""


InterestValue = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)
]
"""One value of a partner field that marks interest, compared as text."""


class InterestSettings(InboundSettings):
    """An inbound block whose highlights are a partner field taking one of
    ``interest_values`` (HubSpot's company property, Pipedrive's organization field); the
    connector names the field."""

    interest_values: list[InterestValue] = Field(min_length=1, max_length=100)


@dataclass(frozen=True, slots=True)
class InboundRequest:
    """One partner request as received (see the module docstring for ``url``)."""

    method: str
    url: str
    headers: Mapping[str, str]
    """Header names lower-cased; the first value of a repeated header."""
    body: bytes
    received_at: float
    """Epoch seconds, from the service's clock (freshness checks use it)."""


class InboundAuthError(Exception):
    """The request is not the partner's (answered 401); ``reason`` is a short metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class InboundPayloadError(ValueError):
    """An authenticated request whose body is not what the partner sends (answered 400)."""


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name`` (lower case), whatever the case of the key."""
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def same_secret(expected: str, given: str) -> bool:
    """Whether ``given`` is ``expected``, compared in constant time; both are hashed first, so
    the time does not depend on their lengths either."""
    return hmac.compare_digest(_digest(expected), _digest(given))


def check_fresh(
    age: float,
    *,
    max_age: float,
    max_future: float,
    refuse: type[InboundAuthError],
    what: str,
) -> None:
    """Refuse a signed timestamp ``age`` old (negative: ahead of the service's clock) outside
    ``max_age``/``max_future`` (the caller's unit), with ``refuse`` and the reason
    ``stale_timestamp`` or ``future_timestamp``; ``what`` names the timestamp in the message.
    An age that is not a number (a broken clock) is refused, never accepted."""
    if age <= max_age and -age <= max_future:
        return
    if age < 0:
        raise refuse("future_timestamp", f"{what} is in the future")
    raise refuse("stale_timestamp", f"{what} is too old")


def scalar_text(value: object) -> str | None:
    """A scalar field value as the text interest values are compared with (a boolean as
    ``true``/``false``, a whole float without its ``.0``), ``None`` for anything else."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value
    return None


class InboundCompany(BaseModel):
    """What a partner's event says of the company it highlights (any field may be missing)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partner_object_id: str | None = Field(default=None, min_length=1, max_length=128)
    queast_company_id: str | None = Field(default=None, min_length=1, max_length=128)
    domain: str | None = Field(default=None, min_length=1, max_length=253)
    name: str | None = Field(default=None, min_length=1, max_length=500)
    linkedin_url: str | None = Field(default=None, min_length=1, max_length=500)


class InboundHighlight(BaseModel):
    """One interest highlight parsed from an authenticated partner request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partner_event_id: str = Field(min_length=1, max_length=512)
    """The partner's identity of this event, the same on each of its retries."""
    occurred_at: datetime | None = None
    company: InboundCompany
    note: str | None = Field(default=None, max_length=2000)


SettingsT_contra = TypeVar("SettingsT_contra", bound=InboundSettings, contravariant=True)


class InboundAdapter(Protocol[SettingsT_contra]):
    """A connector's inbound side (see the module docstring); ``config`` is its inbound block."""

    def verify(self, request: InboundRequest, config: SettingsT_contra) -> None: ...

    def highlights(
        self, request: InboundRequest, config: SettingsT_contra
    ) -> list[InboundHighlight]: ...


PartnerReadFailure = Literal["auth_failed", "needs_reauth", "failed"]
"""``auth_failed``: the partner refused the credentials (or their refresh) now;
``needs_reauth``: the connection is parked until an admin authorises it again, so it is not
read at all; ``failed``: anything else (see :mod:`connectors.base.partner_read`)."""


class PartnerReadError(Exception):
    """Reading a partner object failed; ``reason`` says whether a retry later could help."""

    def __init__(self, reason: PartnerReadFailure, message: str) -> None:
        super().__init__(message)
        self.reason: PartnerReadFailure = reason


class PartnerCompanyReader(Protocol):
    """Reads one partner company with a connection's credentials (see the module docstring)."""

    async def company(self, partner_object_id: str) -> InboundCompany | None: ...

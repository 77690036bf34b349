"""Inbound HubSpot webhooks: verify HubSpot's signature, then read company interest.

Verification
------------
:func:`verify` is usable on its own (the app's client secret, the request's method, URI as
HubSpot called it, raw body and headers, and an injected ``now``) and raises one error,
:class:`HubSpotSignatureError` (an :class:`~connectors.base.inbound.InboundAuthError`, answered
401) with a ``reason``:

- ``missing_signature``: neither ``X-HubSpot-Signature-v3`` nor ``X-HubSpot-Signature`` is
  there (or it is empty), or a v3 signature comes without its ``X-HubSpot-Request-Timestamp``;
- ``bad_timestamp``: the timestamp is not Unix **milliseconds** (1 to 15 ASCII digits);
- ``bad_signature``: the signature does not match (or is over 256 characters);
- ``stale_timestamp``: the timestamp is more than ``max_age_seconds`` (5 minutes, as HubSpot
  documents) before ``now``; ``future_timestamp``: more than ``max_future_seconds`` (60 s of
  clock skew) after it;
- ``unsupported_version``: no v3 signature, and the legacy signature's
  ``X-HubSpot-Signature-Version`` is neither ``v1`` nor ``v2``, or legacy signatures are not
  accepted (``accept_legacy=False``).

Which signature is checked:

- **v3** whenever its header is there: ``base64(HMAC-SHA256(client secret, method + URI + body +
  timestamp))``, the timestamp header's text as sent. The URI is the full URL as HubSpot called
  it (scheme, host, path and query, parameters in their order) with **only** the escapes of
  HubSpot's table decoded (:func:`v3_uri`: ``%3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C %3B``,
  either hex case); every other escape (``%20``, ``%26``, ``%3D``, ``%25``...) stays as it is,
  the literal ``?`` that starts the query is not touched, and decoding is one pass (``%253A``
  stays ``%253A``). The signature is checked first, then the timestamp's age, so a stale
  timestamp is reported only for a request HubSpot really signed. When v3 is there the legacy
  header is **ignored**, never a fallback: a request whose v3 signature fails is refused even
  if its v1 signature matches. (Every v3 request refused ``bad_signature`` while v1 would
  pass usually means the URI differs from the target URL set in HubSpot: check
  ``QI_PUBLIC_BASE_URL``.)
- otherwise **v1** (``hex(SHA-256(client secret + body))``) or **v2** (``hex(SHA-256(client
  secret + method + URI + body))``, the URI verbatim), as ``X-HubSpot-Signature-Version``
  says. These are plain SHA-256, not HMAC, and carry no timestamp.

Legacy signatures (decision): accepted by default (``accept_legacy_signatures: true`` in the
connection's inbound block). HubSpot documents that its webhooks-API CRM events are signed
``v1`` and that the v3 headers were *added* for OAuth apps, so refusing v1 would refuse
deliveries some apps get. A v1/v2 request has no freshness: a captured request can be replayed
at any time. Within the service's dedupe window (longer than HubSpot's 24 hours of retries) a
replay is answered as a duplicate and produces nothing; after it, a replay re-creates the same
interest highlight (a bookmark of a company already bookmarked), nothing more. A connection
whose app sends v3 (every public OAuth app) should set ``accept_legacy_signatures: false``:
then a request must carry a fresh v3 signature, and an attacker cannot strip the v3 headers of
a captured request to fall back on its timeless v1 signature.

Comparisons are constant time (:func:`~connectors.base.inbound.same_secret`, the kit's step
the connectors' verifiers share with its header lookup and freshness window), header names are
matched case-insensitively, and no error message carries a header value, the secret or the
body. Text is signed as UTF-8 (``surrogatepass``: an odd header never raises anything but the
typed error). :func:`signature_v1`, :func:`signature_v2`, :func:`signature_v3`,
:func:`signed_headers` (v3) and :func:`legacy_headers` (v1/v2) compute what HubSpot sends (for
tests, the local sandbox and the demo).

Payload
-------
:class:`HubSpotInboundAdapter` is the connector's inbound adapter. Its
:meth:`~HubSpotInboundAdapter.highlights` reads the verified body: a JSON array of at most 100
event objects (HubSpot sends "under 100"; an empty array gives nothing). Each event's type is
its ``subscriptionType`` or, as HubSpot's field table calls it, ``eventType`` (the same value
when both are there, else the body is refused). The fields read are checked for their types
(``eventId``, ``objectId``, ``occurredAt``: non-negative integers; ``propertyName``: a string;
``propertyValue``: a string, number or boolean; ``objectTypeId``, ``changeSource``: strings);
other fields are ignored. A body that is not such an array raises
:class:`~connectors.base.inbound.InboundPayloadError` (400); its message names the event's
position and the field at fault, never a value.

An event is an interest highlight when:

- it is a ``company.propertyChange`` (or a generic ``object.propertyChange`` with
  ``objectTypeId`` ``0-2``, companies) whose ``propertyName`` is the connection's
  ``interest_property`` and whose ``propertyValue`` is one of ``interest_values``, compared as
  text after trimming; a multiple-checkbox value (``a;b;c``) matches when any of its options
  does. A change to another value (or a cleared one) is not interest;
- it is a ``company.creation`` (or ``object.creation`` of ``0-2``) that itself carries
  ``propertyName``/``propertyValue`` meeting the rule above. Decision: HubSpot's creation
  events carry no properties, so a creation cannot be judged from its payload, and in practice
  gives nothing. It is not turned into an unchecked "candidate": a bookmark would then follow
  every company created in the account. A company created with the interest property set is
  highlighted by the ``company.propertyChange`` event of that property, when HubSpot sends one
  for a value set at creation (to subscribe: ``company.propertyChange`` on the interest
  property); whether it always does is not stated in the documentation at hand.

Everything else (contacts, deals, other properties, deletions, merges, restores, association
changes) gives no highlight and no error: HubSpot posts every subscription of the app to one
URL, and a 4xx would make it retry for a day.

A highlight's ``partner_event_id`` is ``<eventId>:<type>:<objectId>:<occurredAt>``, the
same on every retry (``attemptNumber`` is not part of it): HubSpot's ``eventId`` alone is "not
guaranteed to be unique". ``occurred_at`` is ``occurredAt`` (milliseconds, UTC). The company is
known by its HubSpot id only (``partner_object_id`` = ``objectId``); the inbound agent reads
the rest. ``note`` is empty. An interest event without ``eventId``, ``objectId`` or
``occurredAt`` is refused (400): without them it has no identity to deduplicate on.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

from connectors.base.config import reveal_secret
from connectors.base.inbound import (
    InboundAuthError,
    InboundCompany,
    InboundHighlight,
    InboundPayloadError,
    InboundRequest,
    check_fresh,
    header,
    same_secret,
    scalar_text,
)
from connectors.hubspot.config import HubSpotInbound

__all__ = [
    "DEFAULT_MAX_AGE_SECONDS",
    "DEFAULT_MAX_FUTURE_SECONDS",
    "MAX_EVENTS",
    "HubSpotInboundAdapter",
    "HubSpotSignatureError",
    "legacy_headers",
    "signature_v1",
    "signature_v2",
    "signature_v3",
    "signed_headers",
    "v3_uri",
    "verify",
]

DEFAULT_MAX_AGE_SECONDS: Final = 300.0
"""HubSpot: "Reject the request if the timestamp is older than 5 minutes"."""
DEFAULT_MAX_FUTURE_SECONDS: Final = 60.0
"""Clock skew allowed for a timestamp ahead of ours (HubSpot states none)."""
MAX_EVENTS: Final = 100

SIGNATURE_V3: Final = "x-hubspot-signature-v3"
TIMESTAMP: Final = "x-hubspot-request-timestamp"
SIGNATURE: Final = "x-hubspot-signature"
SIGNATURE_VERSION: Final = "x-hubspot-signature-version"

_MAX_SIGNATURE_CHARS: Final = 256
_TIMESTAMP_MS: Final = re.compile(r"[0-9]{1,15}")
_V3_ESCAPES: Final[Mapping[str, str]] = {
    "3A": ":",
    "2F": "/",
    "3F": "?",
    "40": "@",
    "21": "!",
    "24": "$",
    "27": "'",
    "28": "(",
    "29": ")",
    "2A": "*",
    "2C": ",",
    "3B": ";",
}
_V3_ESCAPE: Final = re.compile("%(" + "|".join(_V3_ESCAPES) + ")", flags=re.IGNORECASE)
_COMPANY: Final = "company"
_COMPANIES_OBJECT_TYPE: Final = "0-2"
_MAX_TEXT: Final = 1024
_MAX_TYPE: Final = 128
_MAX_ID: Final = 2**63 - 1
_MAX_OCCURRED_AT_MS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


class HubSpotSignatureError(InboundAuthError):
    """A request HubSpot did not sign, or signed too long ago (401); see :func:`verify`."""


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def v3_uri(uri: str) -> str:
    """``uri`` with only the escapes of HubSpot's v3 table decoded (see the module
    docstring); everything else, the query's ``?`` included, as it is."""
    return _V3_ESCAPE.sub(lambda match: _V3_ESCAPES[match.group(1).upper()], uri)


def signature_v1(client_secret: str, body: bytes) -> str:
    """HubSpot's v1 signature: ``hex(SHA-256(client secret + body))``."""
    return hashlib.sha256(_utf8(client_secret) + body).hexdigest()


def signature_v2(client_secret: str, method: str, uri: str, body: bytes) -> str:
    """HubSpot's v2 signature: ``hex(SHA-256(client secret + method + URI + body))``."""
    return hashlib.sha256(_utf8(client_secret + method + uri) + body).hexdigest()


def signature_v3(client_secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """HubSpot's v3 signature: ``base64(HMAC-SHA256(client secret, method + URI + body +
    timestamp))``, the URI decoded by :func:`v3_uri`."""
    message = _utf8(method + v3_uri(uri)) + body + _utf8(timestamp)
    digest = hmac.new(_utf8(client_secret), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signed_headers(
    client_secret: str, method: str, uri: str, body: bytes, *, now: float
) -> dict[str, str]:
    """The v3 headers HubSpot would send for this request at ``now`` (epoch seconds)."""
    timestamp = str(int(now * 1000))
    return {
        "X-HubSpot-Signature-v3": signature_v3(client_secret, method, uri, body, timestamp),
        "X-HubSpot-Request-Timestamp": timestamp,
    }


def legacy_headers(
    client_secret: str, method: str, uri: str, body: bytes, *, version: str = "v1"
) -> dict[str, str]:
    """The v1 or v2 headers HubSpot would send for this request (no timestamp)."""
    if version == "v1":
        signature = signature_v1(client_secret, body)
    elif version == "v2":
        signature = signature_v2(client_secret, method, uri, body)
    else:
        msg = "version must be v1 or v2"
        raise ValueError(msg)
    return {"X-HubSpot-Signature": signature, "X-HubSpot-Signature-Version": version}


def verify(
    *,
    client_secret: str,
    method: str,
    uri: str,
    body: bytes,
    headers: Mapping[str, str],
    now: float,
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
    max_future_seconds: float = DEFAULT_MAX_FUTURE_SECONDS,
    accept_legacy: bool = True,
) -> None:
    """Check that HubSpot signed this request with ``client_secret``, recently enough at
    ``now`` (epoch seconds); see the module docstring.

    Raises:
        HubSpotSignatureError: the request is refused (``reason`` says why).
    """
    signature = header(headers, SIGNATURE_V3)
    if signature:
        timestamp = _v3_timestamp(headers)
        expected = signature_v3(client_secret, method, uri, body, timestamp)
        if len(signature) > _MAX_SIGNATURE_CHARS or not same_secret(expected, signature.strip()):
            raise HubSpotSignatureError("bad_signature", "the v3 signature does not match")
        # The age is checked once the signature is known to be HubSpot's.
        _check_age(timestamp, now, max_age_seconds, max_future_seconds)
        return
    legacy = header(headers, SIGNATURE)
    if not legacy:
        raise HubSpotSignatureError("missing_signature", "no HubSpot signature header")
    if not accept_legacy:
        raise HubSpotSignatureError(
            "unsupported_version", "this connection accepts v3 signatures only"
        )
    version = (header(headers, SIGNATURE_VERSION) or "").strip().lower()
    if version == "v1":
        expected = signature_v1(client_secret, body)
    elif version == "v2":
        expected = signature_v2(client_secret, method, uri, body)
    else:
        raise HubSpotSignatureError("unsupported_version", "unknown HubSpot signature version")
    if len(legacy) > _MAX_SIGNATURE_CHARS or not same_secret(expected, legacy.strip().lower()):
        raise HubSpotSignatureError("bad_signature", f"the {version} signature does not match")


def _v3_timestamp(headers: Mapping[str, str]) -> str:
    timestamp = header(headers, TIMESTAMP)
    if not timestamp:
        raise HubSpotSignatureError("missing_signature", "a v3 signature without its timestamp")
    if not _TIMESTAMP_MS.fullmatch(timestamp):
        raise HubSpotSignatureError("bad_timestamp", "the timestamp is not Unix milliseconds")
    return timestamp


def _check_age(timestamp: str, now: float, max_age: float, max_future: float) -> None:
    check_fresh(
        now * 1000 - int(timestamp),  # in milliseconds, as HubSpot sends it
        max_age=max_age * 1000,
        max_future=max_future * 1000,
        refuse=HubSpotSignatureError,
        what="the request timestamp",
    )


# -- the payload ----------------------------------------------------------------------------


class _Bad(Exception):
    """A field of one event is not what HubSpot sends (``field`` names it)."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


def _integer(event: Mapping[str, Any], field: str, *, maximum: int = _MAX_ID) -> int | None:
    value = event.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise _Bad(field)
    return value


def _string(event: Mapping[str, Any], field: str, *, longest: int = _MAX_TEXT) -> str | None:
    value = event.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > longest:
        raise _Bad(field)
    return value


def _value_text(event: Mapping[str, Any]) -> str | None:
    """``propertyValue`` as text (HubSpot sends strings; numbers and booleans are read too)."""
    value = event.get("propertyValue")
    if value is None:
        return None
    text = scalar_text(value)
    if text is None or len(text) > 65_536:
        raise _Bad("propertyValue")
    return text


def _event_type(event: Mapping[str, Any]) -> str:
    subscription = _string(event, "subscriptionType", longest=_MAX_TYPE)
    event_type = _string(event, "eventType", longest=_MAX_TYPE)
    if subscription is not None and event_type is not None and subscription != event_type:
        raise _Bad("eventType")
    chosen = subscription if subscription is not None else event_type
    if not chosen:
        raise _Bad("subscriptionType")
    return chosen


def _is_interest_value(text: str | None, config: HubSpotInbound) -> bool:
    if text is None:
        return False
    wanted = set(config.interest_values)
    whole = text.strip()
    if whole in wanted:
        return True
    return any(part.strip() in wanted for part in whole.split(";"))


def _company_action(event: Mapping[str, Any], event_type: str) -> str | None:
    """``propertyChange`` or ``creation`` for a company event, else ``None``."""
    kind, _, action = event_type.partition(".")
    object_type = _string(event, "objectTypeId")
    is_company = kind == _COMPANY or (kind == "object" and object_type == _COMPANIES_OBJECT_TYPE)
    return action if is_company and action in ("propertyChange", "creation") else None


def _highlight(event: Mapping[str, Any], config: HubSpotInbound) -> InboundHighlight | None:
    event_type = _event_type(event)
    event_id = _integer(event, "eventId")
    object_id = _integer(event, "objectId")
    occurred_ms = _integer(event, "occurredAt", maximum=_MAX_OCCURRED_AT_MS)
    property_name = _string(event, "propertyName")
    value = _value_text(event)
    _string(event, "changeSource")
    if _company_action(event, event_type) is None:
        return None
    if property_name != config.interest_property or not _is_interest_value(value, config):
        return None
    for field, present in (("eventId", event_id), ("objectId", object_id)):
        if present is None:
            raise _Bad(field)
    if occurred_ms is None:
        raise _Bad("occurredAt")
    return InboundHighlight(
        partner_event_id=f"{event_id}:{event_type}:{object_id}:{occurred_ms}",
        occurred_at=datetime.fromtimestamp(occurred_ms / 1000, tz=UTC),
        company=InboundCompany(partner_object_id=str(object_id)),
    )


def _events(body: bytes) -> list[Mapping[str, Any]]:
    """The body as HubSpot's array of event objects, or ``InboundPayloadError``."""
    try:
        events = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are both
        raise InboundPayloadError("the body is not JSON") from None
    if not isinstance(events, list):
        raise InboundPayloadError("the body is not a JSON array of HubSpot events")
    if len(events) > MAX_EVENTS:
        raise InboundPayloadError(f"the body holds more than {MAX_EVENTS} events")
    for position, event in enumerate(events):
        if not isinstance(event, dict):
            raise InboundPayloadError(f"event {position} is not an object")
    return events


class HubSpotInboundAdapter:
    """The ``hubspot`` connector's inbound adapter (see the module docstring)."""

    settings_class: ClassVar[type[HubSpotInbound]] = HubSpotInbound

    def __init__(
        self,
        *,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        max_future_seconds: float = DEFAULT_MAX_FUTURE_SECONDS,
    ) -> None:
        self._max_age_seconds = max_age_seconds
        self._max_future_seconds = max_future_seconds

    def verify(self, request: InboundRequest, config: HubSpotInbound) -> None:
        verify(
            client_secret=reveal_secret(config.client_secret),
            method=request.method,
            uri=request.url,
            body=request.body,
            headers=request.headers,
            now=request.received_at,
            max_age_seconds=self._max_age_seconds,
            max_future_seconds=self._max_future_seconds,
            accept_legacy=config.accept_legacy_signatures,
        )

    def highlights(self, request: InboundRequest, config: HubSpotInbound) -> list[InboundHighlight]:
        found: list[InboundHighlight] = []
        for position, event in enumerate(_events(request.body)):
            try:
                highlight = _highlight(event, config)
            except _Bad as bad:
                msg = f"event {position}: {bad.field} is not what HubSpot sends"
                raise InboundPayloadError(msg) from None
            if highlight is not None:
                found.append(highlight)
        return found

"""Inbound Standard Webhooks: verify a signed request, then read the interest it carries.

:func:`verify` is usable on its own (``secret``, headers, raw body and an injected ``now``)
and raises one error, :class:`WebhookSignatureError` (an
:class:`~connectors.base.inbound.InboundAuthError`, answered 401) with a ``reason``:

- ``missing_signature``: ``webhook-id``, ``webhook-timestamp`` or ``webhook-signature`` is
  missing or empty;
- ``malformed_signature``: a header that cannot be what a sender signs (an id with ``.``, a
  space or ``,`` or over 256 characters; a timestamp that is not integer Unix seconds; a
  signature header over 4 KiB or with more than 16 entries);
- ``stale_timestamp`` / ``future_timestamp``: the timestamp is more than
  ``tolerance_seconds`` (5 minutes, as every reference library) before / after ``now``;
- ``bad_signature``: no ``v1`` entry of the header matches.

How the ``standardwebhooks`` library is used: its ``Webhook.verify`` reads the wall clock
(``datetime.now``) with a fixed 5-minute tolerance and has no way to take another clock, and it
accepts timestamps such as ``" 1614265330.9"`` (``float()`` of the header, then floored). So
this module checks the headers and the timestamp itself, strictly and against the injected
``now``, and lets the library compute the expected ``v1`` signature (``Webhook.sign``, the HMAC
over ``id.timestamp.body`` with the decoded ``whsec_`` key). Every ``v1,`` entry of the
space-separated header is compared with it in constant time, any one matching is enough (key
rotation); other versions (``v1a`` asymmetric, unknown ones) are skipped, never trusted. The
body is signed byte for byte, so a body that is not UTF-8 still verifies (and is then refused
by :meth:`WebhookInboundAdapter.highlights`).

A malformed ``secret`` argument is the caller's mistake, not the request's: it raises
``ValueError`` (the config block validates the secret long before a request arrives).

:class:`WebhookInboundAdapter` is the connector's inbound adapter. Its
:meth:`~WebhookInboundAdapter.highlights` reads the verified body strictly
(:class:`InterestEnvelope`: unknown keys refused, every string bounded)::

    {"type": "company.interest", "timestamp": "<ISO 8601 with offset>",
     "data": {"company": {"queast_company_id"?, "domain"?, "name"?, "linkedin_url"?,
                          "partner_object_id"?}, "note"?}}

and gives one highlight whose ``partner_event_id`` is the ``webhook-id`` header (the same on
every retry of the message). The company names at least one field. Decisions:

- any other ``type`` (a well-formed envelope: a ``type`` string, an ISO ``timestamp``, an
  object as ``data``) gives **zero** highlights rather than a 400: senders often post every
  event type to one endpoint, and a 4xx would make them retry, then disable the endpoint;
- a body that is not that envelope, or a ``company.interest`` whose ``data`` is not the shape
  above, raises :class:`~connectors.base.inbound.InboundPayloadError` (400); its message names
  the fields at fault, never their values.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Final, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from standardwebhooks.webhooks import Webhook

from connectors.base.config import reveal_secret
from connectors.base.inbound import (
    InboundAuthError,
    InboundCompany,
    InboundHighlight,
    InboundPayloadError,
    InboundRequest,
    check_fresh,
    header,
)
from connectors.webhook.config import WebhookInbound, decode_signing_secret

__all__ = [
    "INTEREST_TYPE",
    "InterestEnvelope",
    "WebhookInboundAdapter",
    "WebhookSignatureError",
    "verify",
]

INTEREST_TYPE: Final = "company.interest"
DEFAULT_TOLERANCE_SECONDS: Final = 300.0
_MAX_SIGNATURE_HEADER: Final = 4096
_MAX_SIGNATURES: Final = 16
# The spec forbids "." in the signed id; " " and "," would break the header syntax.
_MESSAGE_ID: Final = re.compile(r"[\x21-\x2b\x2d\x2f-\x7e]{1,256}")
_TIMESTAMP: Final = re.compile(r"[0-9]{1,12}")


class WebhookSignatureError(InboundAuthError):
    """A request that is not signed by the holder of the secret, or not fresh (401)."""


def verify(
    *,
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Check a Standard Webhooks request signed with ``secret`` (``whsec_...``) at ``now``
    (epoch seconds); see the module docstring. Header names are matched case-insensitively.

    Raises:
        WebhookSignatureError: the request is refused (``reason`` says why).
        ValueError: ``secret`` is not a ``whsec_`` secret.
    """
    decode_signing_secret(secret)
    message_id = header(headers, "webhook-id")
    timestamp = header(headers, "webhook-timestamp")
    signatures = header(headers, "webhook-signature")
    if not message_id or not timestamp or not signatures:
        raise WebhookSignatureError("missing_signature", "a webhook-* header is missing")
    if not _MESSAGE_ID.fullmatch(message_id):
        raise WebhookSignatureError("malformed_signature", "webhook-id is not a valid id")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise WebhookSignatureError(
            "malformed_signature", "webhook-timestamp is not integer Unix seconds"
        )
    entries = signatures.split(" ")
    if len(signatures) > _MAX_SIGNATURE_HEADER or len(entries) > _MAX_SIGNATURES:
        raise WebhookSignatureError("malformed_signature", "webhook-signature is too long")
    signed_at = int(timestamp)
    check_fresh(
        now - signed_at,
        max_age=tolerance_seconds,
        max_future=tolerance_seconds,
        refuse=WebhookSignatureError,
        what="webhook-timestamp",
    )
    expected = (
        Webhook(secret)
        .sign(message_id, datetime.fromtimestamp(signed_at, tz=UTC), body)
        .encode("ascii")
    )
    matched = False
    for entry in entries:
        if not entry.startswith("v1,"):
            continue
        # Every entry is compared (no early exit), each in constant time.
        matched |= hmac.compare_digest(expected, entry.encode("utf-8", "replace"))
    if not matched:
        raise WebhookSignatureError("bad_signature", "no webhook-signature matches")


_Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class InterestCompany(_Strict):
    """The company a ``company.interest`` names: at least one field."""

    queast_company_id: Annotated[_Text, StringConstraints(max_length=128)] | None = None
    domain: Annotated[_Text, StringConstraints(max_length=253)] | None = None
    name: Annotated[_Text, StringConstraints(max_length=500)] | None = None
    linkedin_url: Annotated[_Text, StringConstraints(max_length=500)] | None = None
    partner_object_id: Annotated[_Text, StringConstraints(max_length=128)] | None = None

    @model_validator(mode="after")
    def _names_one(self) -> Self:
        if all(getattr(self, name) is None for name in type(self).model_fields):
            msg = "name the company with at least one field"
            raise ValueError(msg)
        return self


class InterestData(_Strict):
    company: InterestCompany
    note: Annotated[_Text, StringConstraints(max_length=2000)] | None = None


class InterestEnvelope(_Strict):
    """A Standard Webhooks payload; ``data`` is read only for ``company.interest``."""

    type: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    timestamp: Annotated[AwareDatetime, Field(strict=True)]
    data: dict[str, Any]


class _Interest(_Strict):
    type: Literal["company.interest"]
    timestamp: AwareDatetime
    data: InterestData


def _payload_error(exc: ValidationError) -> InboundPayloadError:
    fields = sorted(
        {".".join(str(part) for part in error["loc"]) or "body" for error in exc.errors()}
    )
    return InboundPayloadError(f"body is not a Standard Webhooks interest: {', '.join(fields)}")


class WebhookInboundAdapter:
    """The ``webhook`` connector's inbound adapter (see the module docstring)."""

    settings_class: ClassVar[type[WebhookInbound]] = WebhookInbound

    def __init__(self, *, tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS) -> None:
        self._tolerance_seconds = tolerance_seconds

    def verify(self, request: InboundRequest, config: WebhookInbound) -> None:
        verify(
            secret=reveal_secret(config.secret),
            headers=request.headers,
            body=request.body,
            now=request.received_at,
            tolerance_seconds=self._tolerance_seconds,
        )

    def highlights(self, request: InboundRequest, config: WebhookInbound) -> list[InboundHighlight]:
        del config  # the body alone says what is highlighted
        message_id = header(request.headers, "webhook-id")
        if not message_id or not _MESSAGE_ID.fullmatch(message_id):
            raise InboundPayloadError("the request has no valid webhook-id")
        try:
            envelope = InterestEnvelope.model_validate_json(request.body)
        except ValidationError as exc:
            raise _payload_error(exc) from None
        if envelope.type != INTEREST_TYPE:
            return []
        try:
            interest = _Interest.model_validate(envelope.model_dump())
        except ValidationError as exc:
            raise _payload_error(exc) from None
        company = interest.data.company
        return [
            InboundHighlight(
                partner_event_id=message_id,
                occurred_at=interest.timestamp,
                company=InboundCompany(**company.model_dump()),
                note=interest.data.note,
            )
        ]

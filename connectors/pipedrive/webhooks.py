"""Inbound Pipedrive webhooks: check the Basic credentials, then read organization interest.

Pipedrive signs nothing: a webhook is created with ``http_auth_user`` and
``http_auth_password`` and sends them as HTTP Basic auth on every request (its v1 and v2
webhooks alike). :func:`verify` checks them on their own, and raises one error,
:class:`PipedriveAuthError` (an :class:`~connectors.base.inbound.InboundAuthError`, answered
401) with a ``reason``:

- ``missing_credentials``: no ``Authorization`` header, or one that is not ``Basic``;
- ``bad_credentials``: Basic credentials that are garbled (not base64, not UTF-8, no ``:``,
  over 4 KiB) or not the configured ones. User and password are both compared (their SHA-256
  digests, in constant time, so neither their content nor their length shows in the timing),
  whichever differs.

:class:`PipedriveInboundAdapter` is the connector's inbound adapter. Its
:meth:`~PipedriveInboundAdapter.highlights` reads Pipedrive's two payload versions:

- **v2** (the default since 2025): ``meta.entity == "organization"``, ``meta.action`` ``create``
  or ``change``, the organization in ``data`` and, on ``change``, only the changed fields in
  ``previous``;
- **v1**: ``meta.object == "organization"`` and ``event`` ``added.organization`` or
  ``updated.organization`` (else ``meta.action`` ``added``/``updated``), the organization in
  ``current`` and its whole previous state in ``previous``.

An event is an interest highlight when the organization's ``interest_field_key`` holds one of
``interest_values`` and that value is new: on create always; on change only if the field
changed (v2: the field is in ``previous``; v1: its value differs from ``previous``'s).
Everything else (other entities, deletes, merges, other fields changing) gives zero highlights:
Pipedrive posts whatever the webhook subscribes to, and a 4xx would make it retry and count
failures towards banning the webhook. Bulk edits (``is_bulk_edit`` / ``is_bulk_update``) are
treated as any other change: someone marking many organizations at once is interest in each.

The field's value is looked up in ``custom_fields`` (v2: ``{"type": ..., "value": ...}`` or
``{"id": ...}`` for option fields, ``{"values"|"ids": [...]}`` for multi-option ones) and at the
top level of the object (v1, and standard fields), and **compared as text**: numbers as their
decimal form (``37``, ``2.5``), booleans as ``true``/``false``, option fields by their option
ids (so configure ``"37"``, not the label), and a v1 multi-option value ``"37,41"`` as each of
its ids.

The highlight's ``partner_event_id`` is stable across Pipedrive's retries (``attempt`` and
``retry`` are never part of it): v2 ``meta.id`` (the event's uuid), else
``v2:<webhook_id>:<entity_id>:<timestamp>``; v1 ``v1:<webhook_id>:<meta.id>:<timestamp>``
(``timestamp_micro`` when present). The company carries the organization id
(``partner_object_id``), its ``name``, and the host of its ``website`` (v2 organizations have a
``website`` field; there is no domain field) as ``domain``, without ``www.``. A body that is not
a Pipedrive webhook payload, or an interest event without the fields of its identity, raises
:class:`~connectors.base.inbound.InboundPayloadError`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.base.config import reveal_secret
from connectors.base.inbound import (
    InboundAuthError,
    InboundCompany,
    InboundHighlight,
    InboundPayloadError,
    InboundRequest,
    header,
    same_secret,
    scalar_text,
)
from connectors.pipedrive.config import PipedriveInbound

__all__ = ["PipedriveAuthError", "PipedriveInboundAdapter", "verify"]

_MAX_AUTHORIZATION: Final = 4096
_MAX_VALUES: Final = 100
_ENTITY: Final = "organization"
_ID_LIST: Final = re.compile(r"[0-9]+(?:,[0-9]+)+")
_HOST: Final = re.compile(r"(?=.{1,253}\Z)[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9-]+)+")


class PipedriveAuthError(InboundAuthError):
    """A request without the webhook's Basic credentials (401)."""


def verify(*, username: str, password: str, headers: Mapping[str, str]) -> None:
    """Check the request's HTTP Basic credentials against ``username`` and ``password``; see
    the module docstring. Header names are matched case-insensitively.

    Raises:
        PipedriveAuthError: the request is refused (``reason`` says why).
    """
    authorization = header(headers, "authorization")
    if not authorization:
        raise PipedriveAuthError("missing_credentials", "no Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        raise PipedriveAuthError("missing_credentials", "the Authorization is not Basic")
    if len(authorization) > _MAX_AUTHORIZATION:
        raise PipedriveAuthError("bad_credentials", "the Authorization header is too long")
    try:
        decoded = base64.b64decode(token.strip().encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeError is a ValueError
        raise PipedriveAuthError("bad_credentials", "garbled Basic credentials") from None
    user, colon, secret = decoded.partition(":")
    if not colon:
        raise PipedriveAuthError("bad_credentials", "garbled Basic credentials")
    # Both compared, each in constant time whatever the lengths.
    user_ok = same_secret(username, user)
    password_ok = same_secret(password, secret)
    if not (user_ok and password_ok):
        raise PipedriveAuthError("bad_credentials", "wrong Basic credentials")


class _Payload(BaseModel):
    """Both versions' top level; Pipedrive's other keys are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    v: int | None = None
    event: str | None = Field(default=None, max_length=128)
    meta: dict[str, Any]
    data: dict[str, Any] | None = None
    current: dict[str, Any] | None = None
    previous: dict[str, Any] | None = None


_Scalar = str | int


class _Meta(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    action: str | None = Field(default=None, max_length=64)
    entity: str | None = Field(default=None, max_length=64)
    object: str | None = Field(default=None, max_length=64)
    id: _Scalar | None = None
    entity_id: _Scalar | None = None
    webhook_id: _Scalar | None = None
    timestamp: _Scalar | None = None
    timestamp_micro: _Scalar | None = None


def _text(value: object) -> str | None:
    """A scalar as the text interest values are compared with (``None``: not a scalar)."""
    text = scalar_text(value)
    return None if text is None else text.strip()


def _texts(value: object, depth: int = 0) -> Iterator[str]:
    """Every text a field value stands for (see the module docstring), at most a hundred."""
    if depth > 4:
        return
    if isinstance(value, dict):
        for key in ("value", "id"):
            if key in value:
                yield from _texts(value[key], depth + 1)
        for key in ("values", "ids"):
            if key in value:
                yield from _texts(value[key], depth + 1)
    elif isinstance(value, list):
        for item in value[:_MAX_VALUES]:
            yield from _texts(item, depth + 1)
    else:
        text = _text(value)
        if text is None:
            return
        yield text
        if _ID_LIST.fullmatch(text):
            yield from text.split(",")[:_MAX_VALUES]


_ABSENT: Final = object()


def _field(obj: Mapping[str, Any], key: str) -> object:
    """The field's value in ``obj`` (``custom_fields`` first, then the top level)."""
    custom = obj.get("custom_fields")
    if isinstance(custom, dict) and key in custom:
        return custom[key]
    return obj.get(key, _ABSENT)


def _is_interest(value: object, config: PipedriveInbound) -> bool:
    if value is _ABSENT or value is None:
        return False
    wanted = set(config.interest_values)
    return any(text in wanted for text in _texts(value))


def _domain(website: object) -> str | None:
    if not isinstance(website, str) or not website.strip() or len(website) > 2048:
        return None
    text = website.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        host = (urlsplit(text).hostname or "").rstrip(".")
    except ValueError:
        return None
    host = host.removeprefix("www.")
    return host if _HOST.fullmatch(host) else None


def _id_text(value: object) -> str | None:
    text = _text(value)
    return text or None


def _company(organization: Mapping[str, Any], entity_id: object) -> InboundCompany:
    name = organization.get("name")
    try:
        return InboundCompany(
            partner_object_id=_id_text(organization.get("id")) or _id_text(entity_id),
            name=_id_text(name) if isinstance(name, str) else None,
            domain=_domain(organization.get("website")),
        )
    except ValidationError:
        raise InboundPayloadError("the organization's id or name is out of bounds") from None


def _occurred_at(timestamp: object) -> datetime | None:
    try:
        if isinstance(timestamp, int) or (isinstance(timestamp, str) and timestamp.isdigit()):
            return datetime.fromtimestamp(int(timestamp), tz=UTC)
        if isinstance(timestamp, str):
            parsed = datetime.fromisoformat(timestamp)
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _event_id(*parts: object) -> str:
    texts = [_id_text(part) for part in parts[1:]]
    if any(text is None for text in texts):
        raise InboundPayloadError("the event has no identity (webhook id, object id, timestamp)")
    event_id = ":".join([str(parts[0]), *(text for text in texts if text is not None)])
    if len(event_id) > 512:
        raise InboundPayloadError("the event's identity is too long")
    return event_id


class PipedriveInboundAdapter:
    """The ``pipedrive`` connector's inbound adapter (see the module docstring)."""

    settings_class: ClassVar[type[PipedriveInbound]] = PipedriveInbound

    def verify(self, request: InboundRequest, config: PipedriveInbound) -> None:
        verify(
            username=config.username,
            password=reveal_secret(config.password),
            headers=request.headers,
        )

    def highlights(
        self, request: InboundRequest, config: PipedriveInbound
    ) -> list[InboundHighlight]:
        try:
            payload = _Payload.model_validate_json(request.body)
            meta = _Meta.model_validate(payload.meta)
        except ValidationError:
            raise InboundPayloadError("body is not a Pipedrive webhook payload") from None
        if meta.entity is not None:
            return self._v2(payload, meta, config)
        if meta.object is not None or payload.event is not None:
            return self._v1(payload, meta, config)
        raise InboundPayloadError("body is not a Pipedrive webhook payload")

    @staticmethod
    def _v2(payload: _Payload, meta: _Meta, config: PipedriveInbound) -> list[InboundHighlight]:
        if meta.entity != _ENTITY or meta.action not in ("create", "change"):
            return []
        organization = payload.data
        if organization is None:
            return []
        key = config.interest_field_key
        if not _is_interest(_field(organization, key), config):
            return []
        if meta.action == "change":
            previous = payload.previous or {}
            if _field(previous, key) is _ABSENT:
                return []
        if meta.id is not None and _id_text(meta.id) is not None and len(str(meta.id)) <= 512:
            event_id = str(meta.id).strip()
        else:
            event_id = _event_id("v2", meta.webhook_id, meta.entity_id, meta.timestamp)
        return [
            InboundHighlight(
                partner_event_id=event_id,
                occurred_at=_occurred_at(meta.timestamp),
                company=_company(organization, meta.entity_id),
            )
        ]

    @staticmethod
    def _v1(payload: _Payload, meta: _Meta, config: PipedriveInbound) -> list[InboundHighlight]:
        if payload.event is not None:
            action, _, entity = payload.event.partition(".")
        else:
            action, entity = meta.action or "", meta.object or ""
        if entity != _ENTITY or action not in ("added", "updated"):
            return []
        organization = payload.current
        if organization is None:
            return []
        key = config.interest_field_key
        value = _field(organization, key)
        if not _is_interest(value, config):
            return []
        if action == "updated" and payload.previous is not None:
            before = _field(payload.previous, key)
            if before is not _ABSENT and sorted(_texts(before)) == sorted(_texts(value)):
                return []
        timestamp = meta.timestamp_micro if meta.timestamp_micro is not None else meta.timestamp
        return [
            InboundHighlight(
                partner_event_id=_event_id("v1", meta.webhook_id, meta.id, timestamp),
                occurred_at=_occurred_at(meta.timestamp),
                company=_company(organization, meta.id),
            )
        ]

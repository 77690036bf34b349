"""Preview: what would one tenant connection send for one domain event, without sending it.

:meth:`PreviewService.preview` takes a domain event (the JSON of one record of
``queast.domain-events``) and one tenant connection, and answers what the service would do
with it, through the code that does it for real:

1. **routing**: the event is parsed by the router's own
   :func:`~processors.routing.parse_domain_event` (a bad event raises
   :class:`~processors.routing.InvalidEventError` with its reason, keyed by the tenant
   previewed, so an event naming another tenant is ``key_mismatch``); the tenant's
   allowlist entry and connections come from :meth:`ConnectionRepository.routing_for` like
   the router's; the record is mapped by :func:`~processors.routing.map_event` for every
   destination of the connection's delivery mode (its own connector, and the webhook copy)
   and encoded with the latest contract, then decoded again the way the delivery engine
   decodes it. The preview shows that decoded record;
2. **delivery**: per destination, the delivery state in Redis is read (never claimed) for
   a key already delivered (``duplicate_skipped``), a newer version delivered
   (``stale_skipped``) and the destination's health (``parked``: ``needs_reauth``,
   ``gone``); then the connection's real sink is built by
   :class:`~processors.deliveries.sinks.ConnectorSinkFactory` and handed the record.

Why an event would not be sent is a ``reason`` on the answer: ``tenant_not_allowlisted``,
``configuration_unreadable``, ``connection_disabled``, ``event_type_disabled``,
``non_strict_signal_not_exported``, ``contract_violation`` (the router would dead-letter it),
and per destination the delivery outcomes above, ``connection_unusable`` (the sink cannot be
built: settings invalid, a secret that does not open), ``contract_refused`` (the sink refuses
the record's typed form), ``held_for_review``, or the error a real attempt would meet with
these answers (``would_retry``, ``would_dead_letter``).

Nothing leaves the process, and nothing is written:

- the sink's HTTP client is the connector kit's own (:func:`~connectors.base.http_client_factory`:
  same headers, timeouts, no redirects) over :class:`NoNetworkRecorder`, an
  ``httpx.MockTransport`` that records each request and answers it with the connector's
  synthetic answer (``ConnectorSpec.preview_answer``, in the partner's shape; without one,
  :func:`default_answer`). The one exception is DNS: a webhook sink checks its destination
  the way it does before every delivery (the SSRF guard), which resolves the endpoint's
  host name unless private networks are allowed, so that a destination the guard would
  refuse shows as such; no connection is opened to it;
- identity comes from the store only: :class:`PreviewIdentityStore` reads the connection's
  links and waiting people from Redis and keeps what the sink would record (links to objects
  it creates, review entries, people waiting) in memory, listed on the answer as
  ``identity``;
- OAuth connections start from :class:`PlaceholderGrants`: a grant whose access token is
  :data:`PLACEHOLDER_TOKEN`, valid for an hour, so no token is refreshed; the stored grant's
  ``api_domain`` is kept (for a connector whose grant names where its requests go);
  renewals are never saved;
- rate limits never wait: the sink's clock (:class:`NoWaitClock`) skips its sleeps, and
  each preview builds a fresh sink whose buckets are full;
- the router's and the delivery engine's counters are left alone: a preview is not traffic.

Decisions where the issue is silent:

- **Lookups**: where the sink would look a partner object up (a search, or a listing of the
  account's objects to find candidates), the request is shown with ``purpose: lookup`` and
  the note "would search" (or "would list"); the connector's synthetic answer finds
  nothing, so the preview then shows the **create branch** (create, then link). A real
  lookup may find the object and update it instead, or find several and hold the record
  for review; the preview cannot know without calling the partner. An entity already
  linked in the store shows the update branch, with no lookup.
- **Synthetic ids**: objects the preview pretends to create get ids from
  :data:`SYNTHETIC_ID_BASE` up; a request naming such an id stands for "the object just
  created".
- **Redaction**: header values of ``Authorization``, ``Proxy-Authorization``, ``Cookie``,
  ``webhook-signature`` and any header whose name holds ``token``, ``secret``, ``signature``
  or ``api-key`` are shown as :data:`~processors.secrets.REDACTED` (so their presence
  shows); so are query parameters and JSON or form body fields whose names hold ``token``,
  ``secret``, ``password`` or ``signature``; and any stored secret of the connection (and
  the placeholder token) is replaced wherever else it appears.
- A preview is bounded to :data:`PREVIEW_TIMEOUT_SECONDS` (a slow DNS answer); past it the
  destination's outcome is ``would_retry`` with reason ``preview timed out``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from enum import StrEnum
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, unquote_plus

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from redis.asyncio import Redis

from connectors.base import (
    ConnectorError,
    HeldForReviewError,
    OAuthGrant,
    PermanentError,
    PreviewAnswer,
    http_client_factory,
    last_path_id,
    request_json,
)
from connectors.registry import get_connector
from processors.contracts import (
    ContractEncodingError,
    ContractRegistry,
    decode,
    default_registry,
    to_json_dict,
)
from processors.deliveries.envelope import DeliveryItem
from processors.deliveries.models import DeliveryStatus
from processors.deliveries.outbound import outbound_record
from processors.deliveries.sinks import ConnectorSinkFactory
from processors.deliveries.state import DeliveryStateRepository
from processors.domain.events import ContractMode, DomainEvent, SignalData
from processors.identity.repository import IdentityLink, IdentityRepository, ReviewEntry
from processors.oauthgrants import OAuthTokenStore
from processors.routing import (
    EVENT_FAMILIES,
    parse_domain_event,
)
from processors.routing.service import connection_exports
from processors.secrets import REDACTED, SecretBox, SecretDecryptionError
from processors.settings import Settings
from processors.tenants.models import ConnectionRecord, Connector
from processors.tenants.repository import ConnectionRepository
from processors.tenants.secret_fields import map_secret_fields
from processors.topics import TopicMap

__all__ = [
    "PLACEHOLDER_TOKEN",
    "PREVIEW_TIMEOUT_SECONDS",
    "SYNTHETIC_ID_BASE",
    "ConnectionNotFoundError",
    "DestinationPreview",
    "NoNetworkRecorder",
    "NoWaitClock",
    "Outcome",
    "PartnerRequest",
    "PlaceholderGrants",
    "Preview",
    "PreviewIdentityStore",
    "PreviewService",
    "SecretScrubber",
    "default_answer",
    "partner_request",
]

logger = logging.getLogger(__name__)

PLACEHOLDER_TOKEN: Final = "qi-preview-placeholder-token"  # noqa: S105 - a stand-in, no secret
"""The access token an OAuth connection's sink uses in a preview (shown redacted anyway)."""
SYNTHETIC_ID_BASE: Final = 990_000_001
"""The first id of the objects a preview pretends to create."""
PREVIEW_TIMEOUT_SECONDS: Final = 15.0
"""The longest one destination's sink may take in a preview."""
_PLACEHOLDER_LIFETIME_SECONDS: Final = 3600.0
_SENSITIVE_HEADERS: Final = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "webhook-signature"}
)
_SENSITIVE_HEADER_PARTS: Final = ("token", "secret", "signature", "api-key", "apikey")
_SENSITIVE_FIELD_PARTS: Final = ("token", "secret", "password", "signature")
_PREVIEW_SOURCE: Final = "preview"


class Outcome(StrEnum):
    """What would become of the event (the whole preview) or of one destination's record.

    An outcome a real delivery would record is that delivery status's value, taken from
    :class:`~processors.deliveries.models.DeliveryStatus`, so the two cannot drift apart."""

    WOULD_SEND = "would_send"
    SKIPPED = "skipped"
    DUPLICATE_SKIPPED = DeliveryStatus.DUPLICATE_SKIPPED.value
    STALE_SKIPPED = DeliveryStatus.STALE_SKIPPED.value
    PARKED = DeliveryStatus.PARKED.value
    HELD_FOR_REVIEW = DeliveryStatus.HELD_FOR_REVIEW.value
    WOULD_RETRY = "would_retry"
    WOULD_DEAD_LETTER = "would_dead_letter"


class PartnerRequest(BaseModel):
    """One request the sink would make, as it would go out, secrets redacted."""

    model_config = ConfigDict(frozen=True)

    purpose: Literal["lookup", "read", "write", "token"]
    method: str
    url: str
    headers: dict[str, str]
    body: Any = None
    """JSON as JSON, a form as an object, anything else as text; ``None`` without a body."""
    note: str | None = None


class DestinationPreview(BaseModel):
    """The export to one destination of the connection and what its sink would do with it."""

    model_config = ConfigDict(frozen=True)

    connector: str
    """The connector that delivers it (``webhook`` for a partner connection's webhook copy)."""
    webhook_copy: bool
    topic: str
    delivery_id: str
    idempotency_key: str
    contract: str
    schema_version: str
    record: dict[str, Any]
    """The contract record as the delivery engine decodes it from the export."""
    outcome: Outcome
    reason: str | None = None
    requests: list[PartnerRequest] = Field(default_factory=list)
    identity: list[str] = Field(default_factory=list)
    """What the sink would record in the identity store (kept in memory by the preview)."""


class Preview(BaseModel):
    """What the connection would send for one domain event; nothing was sent."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    connector: str
    connection_id: str | None
    event_type: str
    event_id: str
    outcome: Outcome
    """``would_send`` when at least one destination would send; else ``skipped`` (see
    ``reason``) or the outcome of the destinations."""
    reason: str | None = None
    detail: str | None = None
    destinations: list[DestinationPreview] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class ConnectionNotFoundError(LookupError):
    """The tenant has no connection for the connector."""


# -- the network, the clock, the grants and the identity store of a preview --------------------


class NoWaitClock:
    """A sink clock whose sleeps return at once and move its monotonic time on instead."""

    def __init__(self) -> None:
        self._skipped = 0.0

    def time(self) -> float:
        return time.time() + self._skipped

    def monotonic(self) -> float:
        return time.monotonic() + self._skipped

    async def sleep(self, seconds: float) -> None:
        self._skipped += max(0.0, seconds)
        await asyncio.sleep(0)


def default_answer(request: httpx.Request, new_id: Callable[[], int]) -> httpx.Response:
    """The answer to a connector without its own ``preview_answer``: ``200`` with an empty
    JSON object (enough for a sink that reads only the status, such as a webhook's)."""
    return httpx.Response(200, json={})


class NoNetworkRecorder:
    """The preview's network: an ``httpx.MockTransport`` that records and answers.

    Every request a sink sends through :meth:`client_factory`'s clients is kept (in order) and
    answered by ``answer`` (the connector's synthetic answer, ``ConnectorSpec.preview_answer``;
    :func:`default_answer` without one), whose new ids count from :data:`SYNTHETIC_ID_BASE`;
    none leaves the process. The clients are the connector kit's own
    (:func:`~connectors.base.http_client_factory`), so the requests carry the same headers a
    real delivery would.
    """

    def __init__(self, answer: PreviewAnswer | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self._ids: Iterator[int] = itertools.count(SYNTHETIC_ID_BASE)
        self._respond: PreviewAnswer = answer or default_answer

    @classmethod
    def for_connector(cls, name: str) -> NoNetworkRecorder:
        """The recorder of a destination delivered by the registered connector ``name``,
        answering with its ``preview_answer``; raises
        :class:`~connectors.registry.UnknownConnectorError`."""
        return cls(get_connector(name).preview_answer)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._respond(request, lambda: next(self._ids))

    def client_factory(
        self,
        *,
        timeout_seconds: float = 15.0,
        connect_timeout_seconds: float = 5.0,
        max_connections: int = 10,
        headers: dict[str, str] | None = None,
    ) -> httpx.AsyncClient:
        """An :data:`~connectors.base.HttpClientFactory` whose clients reach only this
        recorder."""
        return http_client_factory(
            timeout_seconds=timeout_seconds,
            connect_timeout_seconds=connect_timeout_seconds,
            max_connections=max_connections,
            headers=headers,
            transport=httpx.MockTransport(self._answer),
        )


class PlaceholderGrants(OAuthTokenStore):
    """OAuth grants for a preview: the placeholder token, never refreshed, never saved.

    ``load`` reads the connection's stored grant only for its ``api_domain`` and answers a
    grant of :data:`PLACEHOLDER_TOKEN` valid for an hour; ``save`` keeps nothing.
    """

    async def save(
        self, grant: OAuthGrant, *, tenant_id: str, connection_id: str, credentials: str
    ) -> None:
        return None

    async def load(
        self, *, tenant_id: str, connection_id: str, credentials: str
    ) -> OAuthGrant | None:
        stored = await super().load(
            tenant_id=tenant_id, connection_id=connection_id, credentials=credentials
        )
        return OAuthGrant(
            access_token=SecretStr(PLACEHOLDER_TOKEN),
            refresh_token=SecretStr(PLACEHOLDER_TOKEN),
            expires_at=time.time() + _PLACEHOLDER_LIFETIME_SECONDS,
            api_domain=None if stored is None else stored.api_domain,
        )


class PreviewIdentityStore(IdentityRepository):
    """The identity store as a preview sees it: Redis for reading, memory for writing.

    Reads answer from what this preview would have written first, then from Redis; writes
    stay in memory and are described in :attr:`notes`.
    """

    def __init__(self, redis: Redis, *, key_prefix: str) -> None:
        super().__init__(redis, key_prefix=key_prefix)
        self.notes: list[str] = []
        self._written_links: dict[tuple[str, str, str], IdentityLink] = {}
        self._written_partners: dict[tuple[str, str, str], str] = {}
        self._waiting_added: dict[tuple[str, str], set[str]] = {}
        self._waiting_done: dict[tuple[str, str], set[str]] = {}

    async def get(self, connection_id: str, kind: str, queast_id: str) -> IdentityLink | None:
        written = self._written_links.get((connection_id, kind, queast_id))
        return written or await super().get(connection_id, kind, queast_id)

    async def by_partner(self, connection_id: str, kind: str, partner_id: str) -> str | None:
        written = self._written_partners.get((connection_id, kind, partner_id))
        return written or await super().by_partner(connection_id, kind, partner_id)

    async def put(self, link: IdentityLink) -> None:
        self._written_links[(link.connection_id, link.kind, link.queast_id)] = link
        self._written_partners[(link.connection_id, link.kind, link.partner_object_id)] = (
            link.queast_id
        )
        self.notes.append(
            f"would link {link.kind} {link.queast_id} to partner object "
            f"{link.partner_object_id} ({link.state.value}, strategy {link.strategy})"
        )

    async def unlink(self, connection_id: str, kind: str, queast_id: str) -> bool:
        self.notes.append(f"would unlink {kind} {queast_id}")
        return await super().get(connection_id, kind, queast_id) is not None

    async def add_review(self, entry: ReviewEntry) -> None:
        self.notes.append(
            f"would queue {entry.kind} {entry.queast_id} for review "
            f"({len(entry.candidates)} candidates)"
        )

    async def add_waiting(self, connection_id: str, company_id: str, person_id: str) -> None:
        self._waiting_added.setdefault((connection_id, company_id), set()).add(person_id)
        self.notes.append(f"would note person {person_id} as waiting for company {company_id}")

    async def waiting(self, connection_id: str, company_id: str) -> list[str]:
        stored = set(await super().waiting(connection_id, company_id))
        stored |= self._waiting_added.get((connection_id, company_id), set())
        stored -= self._waiting_done.get((connection_id, company_id), set())
        return sorted(stored)

    async def done_waiting(
        self, connection_id: str, company_id: str, person_ids: list[str]
    ) -> None:
        if person_ids:
            self._waiting_done.setdefault((connection_id, company_id), set()).update(person_ids)
            self.notes.append(
                f"would mark {len(person_ids)} person(s) associated to company {company_id}"
            )


# -- redaction ------------------------------------------------------------------------------


def _sensitive_header(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SENSITIVE_HEADERS or any(p in lowered for p in _SENSITIVE_HEADER_PARTS)


def _sensitive_field(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in _SENSITIVE_FIELD_PARTS)


def _redact_fields(value: object) -> object:
    if isinstance(value, dict):
        return {
            k: REDACTED if _sensitive_field(str(k)) else _redact_fields(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact_fields(v) for v in value]
    return value


class SecretScrubber:
    """Replaces known secret values wherever they appear in text."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            value = value.replace(secret, REDACTED)
        return value

    def deep(self, value: object) -> object:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.deep(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.deep(v) for v in value]
        return value


def _url(url: httpx.URL, scrub: SecretScrubber) -> str:
    """The URL as sent, with the values of sensitive query parameters redacted."""
    if not url.query:
        return scrub.text(str(url))
    pieces = []
    for piece in url.query.decode("ascii", errors="replace").split("&"):
        name, has_value, _value = piece.partition("=")
        sensitive = has_value and _sensitive_field(unquote_plus(name))
        pieces.append(f"{name}={REDACTED}" if sensitive else piece)
    return scrub.text(f"{url.copy_with(query=None)}?{'&'.join(pieces)}")


def _body(request: httpx.Request) -> object:
    content = request.content
    if not content:
        return None
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        return dict(parse_qsl(content.decode("utf-8", errors="replace"), True))
    parsed = request_json(content)
    return content.decode("utf-8", errors="replace") if parsed is None else parsed


_LOOKUP_NOTE: Final = (
    "would search: the preview answers that nothing matches, so the create branch follows"
    " (a real search may find the object and update it, or hold the record for review)"
)
_LISTING_NOTE: Final = (
    "would list the account's objects to find candidates: the preview answers an empty list,"
    " so the create branch follows (a real listing may hold a match)"
)
_READ_NOTE: Final = "would read: the preview answers as if the object were there, unchanged"


def _purpose(
    request: httpx.Request, body: object
) -> tuple[Literal["lookup", "read", "write", "token"], str | None]:
    if isinstance(body, dict) and "grant_type" in body:
        return "token", None
    if request.url.path.endswith("/search"):
        return "lookup", _LOOKUP_NOTE
    if request.method == "GET":
        if last_path_id(request.url.path) is None:
            return "lookup", _LISTING_NOTE
        return "read", _READ_NOTE
    return "write", None


def partner_request(request: httpx.Request, scrub: SecretScrubber) -> PartnerRequest:
    """``request`` as a preview shows it: sensitive headers, fields and secrets redacted."""
    body = _body(request)
    purpose, note = _purpose(request, body)
    headers = {
        name: REDACTED if _sensitive_header(name) else scrub.text(value)
        for name, value in request.headers.items()
    }
    return PartnerRequest(
        purpose=purpose,
        method=request.method,
        url=_url(request.url, scrub),
        headers=headers,
        body=scrub.deep(_redact_fields(body)),
        note=note,
    )


# -- the service -----------------------------------------------------------------------------


def _secrets_of(connection: ConnectionRecord, box: SecretBox) -> list[str]:
    """Every stored secret of ``connection`` in plaintext (those that open), to scrub."""
    found: list[str] = [PLACEHOLDER_TOKEN]

    def collect(path: str, value: str) -> str:
        try:
            opened = box.decrypt(
                value,
                tenant_id=connection.tenant_id,
                connection_id=connection.connection_id,
                purpose=path,
            )
        except (SecretDecryptionError, ValueError):  # plaintext, or a seal that does not open
            opened = value
        found.append(opened)
        return value

    map_secret_fields(connection.settings, collect)
    return found


async def _bounded(
    delivery: Coroutine[Any, Any, tuple[Outcome, str | None]],
) -> tuple[Outcome, str | None]:
    """``delivery``'s outcome, or ``would_retry`` when it outlasts the preview's timeout."""
    try:
        async with asyncio.timeout(PREVIEW_TIMEOUT_SECONDS):
            return await delivery
    except TimeoutError:
        return Outcome.WOULD_RETRY, "preview timed out"


def _failure_outcome(error: ConnectorError) -> Outcome:
    if isinstance(error, HeldForReviewError):
        return Outcome.HELD_FOR_REVIEW
    if isinstance(error, PermanentError):
        return Outcome.WOULD_DEAD_LETTER
    return Outcome.WOULD_RETRY


class PreviewService:
    """Previews what a tenant connection would send; see the module docstring."""

    def __init__(
        self, redis: Redis, *, settings: Settings, registry: ContractRegistry | None = None
    ) -> None:
        self._redis = redis
        self._settings = settings
        self._registry = registry or default_registry()
        prefix = settings.redis.key_prefix
        self._prefix = prefix
        self._connections = ConnectionRepository(redis, key_prefix=prefix)
        self._state = DeliveryStateRepository(
            redis,
            key_prefix=prefix,
            dedupe_ttl_seconds=settings.delivery.dedupe_ttl_seconds,
            hop_ttl_seconds=int(settings.delivery.retry_timeout_seconds),
        )
        self._topics = TopicMap(settings.topics.prefix)
        self._box = settings.secrets.secret_box()

    async def preview(self, tenant_id: str, connector: Connector, event: bytes) -> Preview:
        """What ``connector``'s connection of ``tenant_id`` would send for ``event``.

        Raises :class:`~processors.routing.InvalidEventError` for an event the router would
        dead-letter as invalid, :class:`ConnectionNotFoundError` when the tenant has no such
        connection, and Redis errors.
        """
        parsed = parse_domain_event(
            tenant_id.encode(), event, max_bytes=self._settings.routing.max_event_bytes
        )
        envelope = parsed.envelope
        routing = (await self._connections.routing_for([tenant_id]))[tenant_id]
        connection = next((c for c in routing.connections if c.connector is connector), None)
        base: dict[str, Any] = {
            "tenant_id": tenant_id,
            "connector": connector.value,
            "connection_id": None if connection is None else connection.connection_id,
            "event_type": envelope.event_type.value,
            "event_id": str(envelope.event_id),
            "notes": ["no request left the process: answers are synthetic"],
        }
        if connection is None and connector.value not in routing.unreadable:
            raise ConnectionNotFoundError(connector.value)
        skip = self._skip_reason(parsed, connection, routing.allowlisted, routing.unreadable)
        if skip is not None:
            return Preview(**base, outcome=Outcome.SKIPPED, reason=skip[0], detail=skip[1])
        if connection is None:  # pragma: no cover - unreadable, a skip reason above
            raise ConnectionNotFoundError(connector.value)
        schema = self._registry.latest(EVENT_FAMILIES[envelope.event_type])
        try:
            exports = connection_exports(parsed, connection, schema, source=_PREVIEW_SOURCE)
        except ContractEncodingError as exc:
            return Preview(
                **base, outcome=Outcome.SKIPPED, reason="contract_violation", detail=str(exc)
            )
        destinations = [
            await self._destination(connection, export.destination, export.value, export.envelope)
            for export in exports
        ]
        if not destinations:  # pragma: no cover - the skip reasons above cover it
            return Preview(**base, outcome=Outcome.SKIPPED, reason="not_exported")
        sending = any(d.outcome is Outcome.WOULD_SEND for d in destinations)
        outcome = Outcome.WOULD_SEND if sending else destinations[0].outcome
        reason = None if sending else destinations[0].reason
        logger.info(
            "preview.done",
            extra={
                "tenant_id": tenant_id,
                "connector": connector.value,
                "connection_id": connection.connection_id,
                "event_type": envelope.event_type.value,
                "outcome": outcome.value,
                "requests": sum(len(d.requests) for d in destinations),
            },
        )
        return Preview(**base, outcome=outcome, reason=reason, destinations=destinations)

    @staticmethod
    def _skip_reason(
        event: DomainEvent,
        connection: ConnectionRecord | None,
        allowlisted: bool,
        unreadable: Sequence[str],
    ) -> tuple[str, str] | None:
        """Why the router would export nothing for ``connection``, in the router's order."""
        if not allowlisted:
            return "tenant_not_allowlisted", "the tenant is not on the allowlist"
        if unreadable or connection is None:
            names = ", ".join(unreadable)
            return (
                "configuration_unreadable",
                f"a stored connection record does not validate ({names}): the router"
                " dead-letters the tenant's events until it is written again",
            )
        event_type = event.envelope.event_type
        if not connection.enabled:
            return "connection_disabled", "the connection is disabled"
        if not connection.event_types.get(event_type, True):
            return "event_type_disabled", f"the connection does not take {event_type.value}"
        entity = event.entity
        mode = entity.contract_mode if isinstance(entity, SignalData) else None
        if not connection.exports(event_type, contract_mode=mode):
            mode_name = mode.value if isinstance(mode, ContractMode) else "non-strict"
            return (
                "non_strict_signal_not_exported",
                f"the connection does not take {mode_name} signals",
            )
        return None

    async def _destination(
        self,
        connection: ConnectionRecord,
        destination: Connector,
        value: bytes,
        headers: dict[str, str],
    ) -> DestinationPreview:
        item = DeliveryItem(
            value=value,
            headers=headers,
            source_topic=_PREVIEW_SOURCE,
            source_partition=0,
            source_offset=0,
        )
        schema, contract = decode(value, registry=self._registry)
        payload = to_json_dict(contract)
        shown: dict[str, Any] = {
            "connector": destination.value,
            "webhook_copy": destination is not connection.connector,
            "topic": self._topics.exports(destination.value),
            "delivery_id": item.delivery_id,
            "idempotency_key": item.idempotency_key,
            "contract": schema.family.value,
            "schema_version": schema.schema_version,
            "record": payload,
        }
        skipped = await self._delivery_state(item, connection)
        if skipped is not None:
            return DestinationPreview(**shown, outcome=skipped[0], reason=skipped[1])
        recorder = NoNetworkRecorder.for_connector(destination.value)
        identity = PreviewIdentityStore(self._redis, key_prefix=self._prefix)
        factory = ConnectorSinkFactory(
            destination.value,
            box=self._box,
            allow_private_networks=self._settings.webhook.allow_private_networks,
            identity=identity,
            base_url=self._settings.partners.base_url(destination.value),
            tokens=PlaceholderGrants(self._redis, box=self._box, key_prefix=self._prefix),
            clock=NoWaitClock(),
            http_client_factory=recorder.client_factory,
        )
        delivery = self._deliver(factory, connection, item, payload, destination)
        outcome, reason = await _bounded(delivery)
        scrub = SecretScrubber(_secrets_of(connection, self._box))
        return DestinationPreview(
            **shown,
            outcome=outcome,
            reason=reason,
            requests=[partner_request(r, scrub) for r in recorder.requests],
            identity=identity.notes,
        )

    async def _delivery_state(
        self, item: DeliveryItem, connection: ConnectionRecord
    ) -> tuple[Outcome, str] | None:
        """What the engine's claim and the destination's health would decide, read only."""
        (state,) = await self._state.load([item])
        if state.delivered:
            return Outcome.DUPLICATE_SKIPPED, "this export was delivered already"
        if state.newest_version is not None and state.newest_version > item.entity_version:
            return (
                Outcome.STALE_SKIPPED,
                f"version {state.newest_version} of the entity was sent already",
            )
        health = await self._state.connection_state(item.destination_key)
        if health is not None and health.since >= connection.updated_at.timestamp():
            return Outcome.PARKED, health.health.value
        return None

    async def _deliver(
        self,
        factory: ConnectorSinkFactory,
        connection: ConnectionRecord,
        item: DeliveryItem,
        payload: dict[str, Any],
        destination: Connector,
    ) -> tuple[Outcome, str | None]:
        try:
            sink = await factory(connection)
        except ConnectorError as exc:
            return Outcome.PARKED, f"connection_unusable: {exc.reason}"
        try:
            record, refusal = outbound_record(
                item,
                connector=destination.value,
                family=item.headers["qi.contract"],
                payload=payload,
                sink=sink,
            )
            if refusal is not None:
                return Outcome.WOULD_DEAD_LETTER, f"contract_refused: {refusal[1].reason}"
            outcome = await sink.deliver([record])
        except Exception as exc:  # a connector bug: the engine would retry the record
            logger.exception(
                "preview.sink.crashed",
                extra={"connector": destination.value, "connection_id": item.connection_id},
            )
            return Outcome.WOULD_RETRY, f"connector failed: {type(exc).__name__}"
        finally:
            await sink.close()
        if outcome.delivered:
            return Outcome.WOULD_SEND, None
        failure = outcome.failed[0]
        return _failure_outcome(failure.error), failure.error.reason

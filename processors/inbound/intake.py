"""Intake of partner webhooks: ``POST /webhooks/{connector}/{tenant_id}`` (the router is
:mod:`processors.inbound.intake_api`; this module holds the service, its repositories and its
Kafka producer, and the router calls :meth:`InboundIntake.receive` only).

Checks, in this order; each refusal is counted in ``qi_inbound_total{connector,outcome}`` and
logged with an event name (never a header value, a secret or the body), and nothing refused
reaches Kafka:

1. the connector is registered and has an inbound adapter (``ConnectorSpec.inbound``), else
   404 ``not_found`` (outcome ``unknown_connector``, counted under connector ``unknown`` so a
   caller cannot grow the metric's labels, or ``no_adapter``);
2. the body, read with the same bounded reader as the configuration API
   (:class:`processors.api.BoundedBodyMiddleware`, mounted on ``/webhooks/`` with
   ``QI_INBOUND_MAX_BODY_BYTES``): 413 over the limit, declared or streamed (chunked), never
   buffered past it; 408 when it does not arrive in time (outcomes ``too_large``,
   ``body_timeout``, ``bad_body``);
3. the tenant: a well-formed tenant id, allowlisted, with a connection of the connector whose
   ``inbound`` block is enabled. **Every miss answers 401** ``unauthorized``, the same status,
   body and headers as a missing or bad signature, so an unsigned probe learns nothing about
   which tenants exist or have inbound turned on (404 would tell them apart from 401 for a
   bad signature). Outcomes ``unknown_tenant``, ``not_enabled``, ``invalid_config`` (a stored
   block that no longer validates or opens: logged as an error);
4. the source address against the block's ``ip_allowlist`` (empty: any): 403 ``forbidden``
   (outcome ``forbidden_source``). The client address is the socket peer, unless the peer is
   in ``QI_TRUSTED_PROXIES``: then ``X-Forwarded-For`` is walked from the right, skipping
   trusted hops, and the first untrusted address is the client (an entry that is not an
   address makes the client unknown, which no allowlist admits). A forged
   ``X-Forwarded-For`` from an untrusted peer is ignored. The 403 tells a caller outside the
   allowlist that the URL has an allowlist: the price of checking it before the signature, as
   the design asks;
5. :meth:`InboundAdapter.verify`: 401 on :class:`InboundAuthError` (outcome: its ``reason``,
   ``auth_failed`` when that is not a short label);
6. :meth:`InboundAdapter.highlights`: 400 ``malformed_payload`` on
   :class:`InboundPayloadError` (outcome ``malformed``);
7. deduplication and produce (below): 202 ``{"accepted": n, "duplicates": m}`` (outcome
   ``accepted``, or ``duplicate`` when every highlight was already taken, ``empty`` when the
   request carried none), or 503 with ``Retry-After`` (outcomes ``unavailable``,
   ``in_flight``); a Redis that does not answer is the API's 503 ``store_unavailable``
   (outcome ``store_unavailable``).

The URL handed to the adapter is ``QI_PUBLIC_BASE_URL`` plus the path and raw query as
received (percent-encoding untouched: a partner may sign the URI as called), or the API's own base
URL when that setting is unset.

Where the inbound block is: ``settings["inbound"]`` of the connection (where the configuration
API stores the body's ``inbound`` block, for every connector). Its sealed secrets are opened
like every other connection secret, and it is validated with the model of the ``inbound``
field of the connector's config class, else the ``config`` type the adapter's ``verify``
declares (:func:`inbound_model`). A block that no longer validates or opens is logged
(``inbound.config.invalid``) and the request answered like an unknown tenant.

Deduplication: each highlight is identified by ``(tenant, connection, partner_event_id)``;
:func:`inbound_id` derives ``in_<32 hex>`` from them, and the Redis key
``<QI_REDIS_KEY_PREFIX>tenant:<tenant>:inbound:seen:<inbound_id>`` remembers it (under the
tenant's keys, so purging the tenant removes them). **Reserve, then
confirm**: one script reserves every new key with a short lease (the produce bound plus a
margin); the new highlights are produced; the keys of those Kafka acknowledged are confirmed
for ``QI_INBOUND_DEDUPE_TTL_SECONDS`` (72 h; the partners retry for up to 24 h), and
the others are released, so a request answered 503 leaves no key behind and the partner's retry
goes through. A highlight whose key is confirmed is a duplicate (answered 2xx, nothing
produced); one whose key is reserved by a request still in flight is answered 503 with a short
``Retry-After`` (never 2xx: the request holding it may yet fail). Setting the key only after
the produce instead would let two concurrent deliveries of one event both produce it; a lease
that outlives a crashed API process expires by itself. What is left: a record Kafka wrote
whose acknowledgement arrived after the bound (``message.timeout.ms`` is that bound, so
librdkafka gives up at the same time) is produced again on the retry; the inbound id is the
same, which lets the reader drop it.

Each new highlight becomes one :class:`~processors.inbound.models.InboundEvent` on
``integrations.inbound``, keyed by tenant id; its ``correlation_id`` is its inbound id (the
same across the partner's retries).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol, get_args, get_type_hints

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from connectors.base.inbound import (
    InboundAdapter,
    InboundAuthError,
    InboundHighlight,
    InboundPayloadError,
    InboundRequest,
    InboundSettings,
)
from connectors.registry import ConnectorSpec, registered
from processors.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    ServiceError,
)
from processors.inbound.models import InboundEvent
from processors.kafka import producer
from processors.metrics import INBOUND
from processors.secrets import SecretBox, SecretDecryptionError
from processors.settings import IntakeSettings, KafkaSettings
from processors.tenants.models import ConnectionRecord, Connector
from processors.tenants.repository import ConnectionRepository
from processors.tenants.secret_fields import open_settings

__all__ = [
    "WEBHOOKS_PREFIX",
    "ConnectionFinder",
    "DedupeStore",
    "Deduplicator",
    "InboundConnection",
    "InboundConnections",
    "InboundIntake",
    "InboundProducer",
    "IntakeResult",
    "KafkaUnavailable",
    "Publisher",
    "ReceivedRequest",
    "client_address",
    "inbound_id",
    "inbound_model",
]

logger = logging.getLogger(__name__)

WEBHOOKS_PREFIX: Final = "/webhooks/"
"""Paths of partner webhooks (bounded with ``QI_INBOUND_MAX_BODY_BYTES``)."""

_TENANT_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_REASON: Final = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_IN_FLIGHT_RETRY_AFTER_SECONDS: Final = 5
_UNAVAILABLE_RETRY_AFTER_SECONDS: Final = 10
_LEASE_MARGIN_SECONDS: Final = 10.0
_CONFIRMED: Final = "1"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _unauthorized() -> ServiceError:
    """The one 401 of the route: unknown tenant, inbound off, missing or bad signature."""
    return ServiceError(401, "unauthorized", "the request is not authenticated")


class KafkaUnavailable(ServiceError):
    """503: Kafka did not take the events in time; the partner retries."""

    def __init__(self, message: str, *, retry_after: int, code: str) -> None:
        super().__init__(503, code, message, headers={"Retry-After": str(retry_after)})


def inbound_id(tenant_id: str, connection_id: str, partner_event_id: str) -> str:
    """``in_`` and 32 hex digits of SHA-256 over the three (the same highlight, the same id)."""
    material = "\x1f".join((tenant_id, connection_id, partner_event_id)).encode()
    return f"in_{hashlib.sha256(material).hexdigest()[:32]}"


# -- the client address ---------------------------------------------------------------------


def _parse_address(text: str) -> IPAddress | None:
    """An address from a peer or ``X-Forwarded-For`` entry (``[v6]:port`` and ``v4:port`` too);
    IPv4-mapped IPv6 addresses as IPv4."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]
) -> IPAddress | None:
    """The address the allowlist judges (see the module docstring); ``None``: unknown.

    ``forwarded_for`` holds every ``X-Forwarded-For`` header value, in order.
    """
    address = _parse_address(peer) if peer is not None else None
    if address is None or not _within(address, trusted):
        return address
    hops = [entry for value in forwarded_for for entry in value.split(",") if entry.strip()]
    for entry in reversed(hops):
        hop = _parse_address(entry)
        if hop is None:
            return None
        address = hop
        if not _within(hop, trusted):
            return hop
    return address


# -- the connection and its inbound block ---------------------------------------------------


def _settings_class(annotation: object) -> type[InboundSettings] | None:
    if isinstance(annotation, type) and issubclass(annotation, InboundSettings):
        return annotation
    for argument in get_args(annotation):
        found = _settings_class(argument)
        if found is not None:
            return found
    return None


_MODELS: dict[int, tuple[ConnectorSpec, type[InboundSettings]]] = {}


def inbound_model(spec: ConnectorSpec) -> type[InboundSettings]:
    """The model of ``spec``'s inbound block: the type of its config class's ``inbound``
    field, else the ``config`` type its adapter's ``verify`` declares, else the base."""
    known = _MODELS.get(id(spec))
    if known is not None and known[0] is spec:
        return known[1]
    model: type[InboundSettings] | None = None
    field = spec.config_class.model_fields.get("inbound")
    if field is not None:
        model = _settings_class(field.annotation)
    if model is None and spec.inbound is not None:
        try:
            hints = get_type_hints(spec.inbound.verify)
        except (NameError, TypeError):
            hints = {}
        model = _settings_class(hints.get("config"))
    chosen = model or InboundSettings
    _MODELS[id(spec)] = (spec, chosen)
    return chosen


def _raw_block(settings: Mapping[str, Any]) -> object:
    return settings.get("inbound")


@dataclass(frozen=True, slots=True)
class InboundConnection:
    """A tenant's connection whose inbound block is enabled, the block opened."""

    tenant_id: str
    connection_id: str
    settings: InboundSettings


LookupOutcome = Literal["unknown_tenant", "not_enabled", "invalid_config"]


class ConnectionFinder(Protocol):
    """A tenant's inbound-enabled connection of a connector (:class:`InboundConnections`)."""

    async def find(
        self, tenant_id: str, spec: ConnectorSpec
    ) -> InboundConnection | LookupOutcome: ...


class InboundConnections:
    """Reads a tenant's inbound-enabled connection of a connector (the repository side)."""

    def __init__(self, repository: ConnectionRepository, *, box: SecretBox) -> None:
        self._repository = repository
        self._box = box

    async def find(self, tenant_id: str, spec: ConnectorSpec) -> InboundConnection | LookupOutcome:
        """The connection, or why there is none to take the request."""
        connector = Connector(spec.name)
        allowed, record = await asyncio.gather(
            self._repository.is_allowed(tenant_id), self._repository.get(tenant_id, connector)
        )
        if not allowed or record is None:
            return "unknown_tenant"
        if _raw_block(record.settings) is None:
            return "not_enabled"
        try:
            block = self._open(spec, record)
        except (ValidationError, SecretDecryptionError, ValueError) as exc:
            logger.error(
                "inbound.config.invalid",
                extra={
                    "connector": spec.name,
                    "tenant_id": tenant_id,
                    "connection_id": record.connection_id,
                    "error": type(exc).__name__,
                },
            )
            return "invalid_config"
        if not block.enabled:
            return "not_enabled"
        return InboundConnection(tenant_id, record.connection_id, block)

    def _open(self, spec: ConnectorSpec, record: ConnectionRecord) -> InboundSettings:
        opened = open_settings(
            record.settings,
            box=self._box,
            tenant_id=record.tenant_id,
            connection_id=record.connection_id,
        )
        return inbound_model(spec).model_validate(_raw_block(opened))


# -- deduplication --------------------------------------------------------------------------

# KEYS: the highlights' keys. ARGV: the reservation token, its lease in ms.
# Returns, per key: "" when this call reserved it, else the value found (confirmed or a lease).
_RESERVE: Final = """
local found = {}
for i, key in ipairs(KEYS) do
  local value = redis.call('GET', key)
  if value then
    found[i] = value
  else
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    found[i] = ''
  end
end
return found
"""

# KEYS: keys this request reserved. ARGV: the token, then the confirmation's TTL in seconds
# ("0": release). Only keys still holding the token are touched.
_SETTLE: Final = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    if ARGV[2] == '0' then
      redis.call('DEL', key)
    else
      redis.call('SET', key, '1', 'EX', ARGV[2])
    end
  end
end
return 0
"""

Reservation = Literal["new", "duplicate", "in_flight"]


class Deduplicator(Protocol):
    """Remembers the partner events taken (see :class:`DedupeStore`)."""

    def key(self, tenant_id: str, inbound: str) -> str: ...

    async def reserve(self, keys: Sequence[str], token: str) -> list[Reservation]: ...

    async def confirm(self, keys: Sequence[str], token: str) -> None: ...

    async def release(self, keys: Sequence[str], token: str) -> None: ...


class DedupeStore:
    """The seen partner events, in Redis (reserve, then confirm or release)."""

    def __init__(
        self, redis: Redis, *, key_prefix: str, ttl_seconds: int, lease_seconds: float
    ) -> None:
        self._prefix = key_prefix
        self._ttl = ttl_seconds
        self._lease_ms = max(1, int(lease_seconds * 1000))
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)

    @classmethod
    def for_settings(cls, redis: Redis, *, key_prefix: str, intake: IntakeSettings) -> DedupeStore:
        """Leases outlive the produce bound by a margin; confirmations last the dedupe TTL."""
        return cls(
            redis,
            key_prefix=key_prefix,
            ttl_seconds=intake.inbound_dedupe_ttl_seconds,
            lease_seconds=intake.inbound_produce_timeout_seconds + _LEASE_MARGIN_SECONDS,
        )

    def key(self, tenant_id: str, inbound: str) -> str:
        return f"{self._prefix}tenant:{tenant_id}:inbound:seen:{inbound}"

    async def reserve(self, keys: Sequence[str], token: str) -> list[Reservation]:
        if not keys:
            return []
        found = await self._reserve(keys=list(keys), args=[token, self._lease_ms])
        states: list[Reservation] = []
        for value in found:
            text = value.decode() if isinstance(value, bytes) else str(value)
            states.append(
                "new" if text == "" else "duplicate" if text == _CONFIRMED else "in_flight"
            )
        return states

    async def confirm(self, keys: Sequence[str], token: str) -> None:
        if keys:
            await self._settle(keys=list(keys), args=[token, self._ttl])

    async def release(self, keys: Sequence[str], token: str) -> None:
        if keys:
            await self._settle(keys=list(keys), args=[token, 0])


# -- the producer ---------------------------------------------------------------------------


class Publisher(Protocol):
    """Produces records and says, for each, whether Kafka acknowledged it in time."""

    async def send(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> list[bool]: ...


class InboundProducer:
    """The API's producer of ``integrations.inbound``: made with the app, polled by a thread
    of its own from :meth:`start`, flushed by :meth:`close` at shutdown.

    ``message.timeout.ms`` is the acknowledgement bound, so librdkafka gives a record up when
    :meth:`send` stops waiting for it (see the module docstring)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        ack_timeout_seconds: float,
        factory: Callable[..., Producer] = producer,
    ) -> None:
        self._timeout = ack_timeout_seconds
        self._producer = factory(
            kafka,
            **{
                "message.timeout.ms": max(1, int(ack_timeout_seconds * 1000)),
                "linger.ms": 1,
                "client.id": f"{kafka.client_id}-inbound",
            },
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_settings(cls, kafka: KafkaSettings, intake: IntakeSettings) -> InboundProducer:
        return cls(kafka, ack_timeout_seconds=intake.inbound_produce_timeout_seconds)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._poll, name="inbound-producer", daemon=True)
            self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    async def send(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> list[bool]:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[bool]] = [loop.create_future() for _ in records]

        def settle(future: asyncio.Future[bool], ok: bool) -> None:
            if not future.done():
                future.set_result(ok)

        def on_delivery(
            future: asyncio.Future[bool],
        ) -> Callable[[KafkaError | None, Message], None]:
            def delivered(error: KafkaError | None, _message: Message) -> None:
                try:
                    loop.call_soon_threadsafe(settle, future, error is None)
                except RuntimeError:  # the loop is closed: nobody waits any more
                    return

            return delivered

        for (key, value), future in zip(records, futures, strict=True):
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=on_delivery(future))
            except (BufferError, KafkaException):
                settle(future, False)
        if futures:
            await asyncio.wait(futures, timeout=self._timeout + 1.0)
        return [future.done() and future.result() for future in futures]

    def close(self, timeout: float = 10.0) -> int:
        """Stop polling and flush; returns how many records were never acknowledged."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        return int(self._producer.flush(timeout))


# -- the service ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """A partner request as the router hands it over (the body is read by the service)."""

    method: str
    base_url: str
    """The API's own base URL (used when ``QI_PUBLIC_BASE_URL`` is unset)."""
    raw_path: str
    query: str
    headers: Sequence[tuple[str, str]]
    """Every header as received, names lower-cased."""
    peer: str | None
    read_body: Callable[[], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class IntakeResult:
    accepted: int
    duplicates: int


class InboundIntake:
    """The intake service: check, verify, parse, deduplicate, produce (module docstring)."""

    def __init__(
        self,
        *,
        connections: ConnectionFinder,
        dedupe: Deduplicator,
        publisher: Publisher,
        settings: IntakeSettings,
        topic: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._connections = connections
        self._dedupe = dedupe
        self._publisher = publisher
        self._settings = settings
        self._topic = topic
        self._clock = clock
        self._trusted: tuple[IPNetwork, ...] = tuple(settings.trusted_proxies)

    async def receive(
        self, connector: str, tenant_id: str, request: ReceivedRequest
    ) -> IntakeResult:
        spec = registered().get(connector)
        if spec is None:
            raise self._refuse("unknown", "unknown_connector", NotFound())
        adapter: InboundAdapter[Any] | None = spec.inbound
        if adapter is None:
            raise self._refuse(spec.name, "no_adapter", NotFound())
        body = await self._read(spec.name, request)
        connection = await self._connection(spec, tenant_id)
        self._check_source(spec.name, connection, request)
        inbound = self._inbound_request(request, body)
        try:
            adapter.verify(inbound, connection.settings)
        except InboundAuthError as exc:
            reason = exc.reason if _REASON.match(exc.reason) else "auth_failed"
            raise self._refuse(spec.name, reason, _unauthorized(), connection) from None
        try:
            highlights = adapter.highlights(inbound, connection.settings)
        except InboundPayloadError:
            error = BadRequest(
                "the payload is not one this connector reads", code="malformed_payload"
            )
            raise self._refuse(spec.name, "malformed", error, connection) from None
        return await self._take(spec.name, connection, highlights)

    async def _read(self, connector: str, request: ReceivedRequest) -> bytes:
        try:
            return await request.read_body()
        except ServiceError as exc:
            outcome = (
                "too_large"
                if isinstance(exc, PayloadTooLarge)
                else "body_timeout"
                if isinstance(exc, RequestTimeout)
                else "bad_body"
            )
            raise self._refuse(connector, outcome, exc) from None

    async def _connection(self, spec: ConnectorSpec, tenant_id: str) -> InboundConnection:
        if not _TENANT_ID.match(tenant_id):
            raise self._refuse(spec.name, "unknown_tenant", _unauthorized())
        try:
            found = await self._connections.find(tenant_id, spec)
        except RedisError:
            self._count(spec.name, "store_unavailable")
            raise
        if isinstance(found, str):
            raise self._refuse(spec.name, found, _unauthorized(), tenant_id=tenant_id)
        return found

    def _check_source(
        self, connector: str, connection: InboundConnection, request: ReceivedRequest
    ) -> None:
        allowlist = connection.settings.ip_allowlist
        if not allowlist:
            return
        forwarded = [value for name, value in request.headers if name == "x-forwarded-for"]
        address = client_address(request.peer, forwarded, self._trusted)
        if address is None or not _within(address, allowlist):
            error = Forbidden("the source address is not allowed", code="forbidden")
            raise self._refuse(connector, "forbidden_source", error, connection)

    def _inbound_request(self, request: ReceivedRequest, body: bytes) -> InboundRequest:
        base = self._settings.public_base_url or request.base_url.rstrip("/")
        url = base + request.raw_path + (f"?{request.query}" if request.query else "")
        headers: dict[str, str] = {}
        for name, value in request.headers:
            headers.setdefault(name, value)
        return InboundRequest(
            method=request.method,
            url=url,
            headers=headers,
            body=body,
            received_at=self._clock(),
        )

    async def _take(
        self, connector: str, connection: InboundConnection, highlights: Sequence[InboundHighlight]
    ) -> IntakeResult:
        tenant = connection.tenant_id
        unique: dict[str, InboundHighlight] = {}
        for highlight in highlights:
            unique.setdefault(
                inbound_id(tenant, connection.connection_id, highlight.partner_event_id), highlight
            )
        ids = list(unique)
        keys = [self._dedupe.key(tenant, inbound) for inbound in ids]
        token = f"lease:{uuid.uuid4().hex}"
        try:
            states = await self._dedupe.reserve(keys, token)
        except RedisError:
            self._count(connector, "store_unavailable")
            raise
        fresh = [i for i, state in enumerate(states) if state == "new"]
        duplicates = sum(1 for state in states if state == "duplicate")
        try:
            if any(state == "in_flight" for state in states):
                await self._dedupe.release([keys[i] for i in fresh], token)
                error = KafkaUnavailable(
                    "the same event is being received; try again shortly",
                    retry_after=_IN_FLIGHT_RETRY_AFTER_SECONDS,
                    code="in_flight",
                )
                raise self._refuse(connector, "in_flight", error, connection)
            received = datetime.fromtimestamp(self._clock(), UTC)
            records = [
                self._record(connector, connection, ids[i], unique[ids[i]], received) for i in fresh
            ]
            acknowledged = await self._send(records, [keys[i] for i in fresh], token)
            done = [keys[i] for i, ok in zip(fresh, acknowledged, strict=True) if ok]
            failed = [keys[i] for i, ok in zip(fresh, acknowledged, strict=True) if not ok]
            await self._dedupe.confirm(done, token)
            if failed:
                await self._dedupe.release(failed, token)
                error = KafkaUnavailable(
                    "the events could not be stored in time; try again later",
                    retry_after=_UNAVAILABLE_RETRY_AFTER_SECONDS,
                    code="service_unavailable",
                )
                raise self._refuse(connector, "unavailable", error, connection, failed=len(failed))
        except RedisError:
            self._count(connector, "store_unavailable")
            raise
        outcome = "accepted" if fresh else "duplicate" if duplicates else "empty"
        self._count(connector, outcome)
        logger.info(
            "inbound.accepted",
            extra={
                "connector": connector,
                "tenant_id": tenant,
                "connection_id": connection.connection_id,
                "accepted": len(fresh),
                "duplicates": duplicates,
            },
        )
        return IntakeResult(accepted=len(fresh), duplicates=duplicates)

    async def _send(
        self, records: Sequence[tuple[bytes, bytes]], keys: Sequence[str], token: str
    ) -> list[bool]:
        if not records:
            return []
        try:
            return await self._publisher.send(self._topic, records)
        except BaseException:
            await asyncio.shield(self._dedupe.release(keys, token))
            raise

    def _record(
        self,
        connector: str,
        connection: InboundConnection,
        inbound: str,
        highlight: InboundHighlight,
        received: datetime,
    ) -> tuple[bytes, bytes]:
        event = InboundEvent(
            inbound_id=inbound,
            tenant_id=connection.tenant_id,
            connector=connector,
            connection_id=connection.connection_id,
            partner_event_id=highlight.partner_event_id,
            company=highlight.company,
            note=highlight.note,
            occurred_at=highlight.occurred_at,
            received_at=received,
            correlation_id=inbound,
        )
        return connection.tenant_id.encode(), event.model_dump_json().encode()

    def _count(self, connector: str, outcome: str) -> None:
        INBOUND.labels(connector=connector, outcome=outcome).inc()

    def _refuse(
        self,
        connector: str,
        outcome: str,
        error: ServiceError,
        connection: InboundConnection | None = None,
        *,
        tenant_id: str | None = None,
        failed: int | None = None,
    ) -> ServiceError:
        self._count(connector, outcome)
        extra: dict[str, object] = {"connector": connector, "outcome": outcome}
        if connection is not None:
            extra["tenant_id"] = connection.tenant_id
            extra["connection_id"] = connection.connection_id
        elif tenant_id is not None:
            extra["tenant_id"] = tenant_id
        if failed is not None:
            extra["failed"] = failed
        logger.warning("inbound.refused", extra=extra)
        return error

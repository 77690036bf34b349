"""``WebhookSink``: one signed Standard Webhooks POST per record.

Outcomes (Standard Webhooks "Delivery success and failure"; mapping in
``connectors.base.http``):

- 2xx: delivered;
- 410 Gone: ``EndpointGoneError``, the connection is to be disabled;
- 429, 502, 504: ``BackpressureError`` honouring ``Retry-After``;
- 408, 425, other 5xx, timeouts, connection errors: ``TransientError`` honouring
  ``Retry-After``;
- 401: ``AuthenticationError``;
- 3xx (redirects are never followed), other 4xx, a refused destination: ``PermanentError``.

The body carries the record's JSON form (``payload``) as the contract's Avro schema gave
it, never the typed record, so a payload that fails the kit's contract model is still sent
(:meth:`WebhookSink.contract_error` declines) and the signed body stays byte-identical.

Every attempt is signed afresh: ``webhook-id`` stays the record's idempotency key while
``webhook-timestamp`` is the time of the attempt, read from the context's clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar, Final

import httpx

from connectors.base.attempts import Attempt
from connectors.base.context import SinkContext
from connectors.base.contract import ContractViolation
from connectors.base.errors import ConnectorError, PermanentError
from connectors.base.ratelimit import RateLimit, TokenBucket
from connectors.base.sink import BatchingSink, BatchOutcome, DeliveryResult, OutboundRecord
from connectors.webhook.client import Resolver, WebhookClient, resolve_host
from connectors.webhook.config import WebhookConnectionConfig
from connectors.webhook.payloads import build_webhook_request

__all__ = ["WebhookSink"]

_DEFAULT_MAX_CONCURRENCY: Final[int] = 4


class WebhookSink(BatchingSink[WebhookConnectionConfig]):
    """Delivers records to a tenant's signed webhook endpoint, one request per record.

    ``setup`` checks that a plain-HTTP URL is only used with ``allow_private_networks``
    and opens the HTTP client; ``write`` sends one record; ``close`` closes the client.
    The SSRF guard runs before every request, and the request connects to the address it
    checked (see ``connectors.webhook.client``); each request has a total deadline of the
    connection's ``timeout_seconds``. Requests to the endpoint are capped by a
    token bucket (``rate_limit_per_second``, else :attr:`default_rate_limit`) and by
    ``max_concurrency`` concurrent requests; a rate-limit wait longer than
    :attr:`max_rate_limit_wait` seconds fails the record with ``BackpressureError``.
    """

    name: ClassVar[str] = "webhook"
    config_class: ClassVar[type[WebhookConnectionConfig]] = WebhookConnectionConfig
    max_batch_size: ClassVar[int] = 1
    default_rate_limit: ClassVar[RateLimit | None] = RateLimit(rate=10, per_seconds=1)
    max_rate_limit_wait: ClassVar[float] = 1.0

    def __init__(
        self,
        context: SinkContext[WebhookConnectionConfig],
        *,
        resolver: Resolver = resolve_host,
    ) -> None:
        super().__init__(context)
        self._resolver = resolver
        self._http: httpx.AsyncClient | None = None
        self._client: WebhookClient | None = None
        self._bucket: TokenBucket | None = None
        self._concurrency = asyncio.Semaphore(_DEFAULT_MAX_CONCURRENCY)

    def contract_error(
        self, record: OutboundRecord, violation: ContractViolation
    ) -> ConnectorError | None:
        """``None``: the webhook sends the JSON form as it is, whatever the typed model says."""
        return None

    async def setup(self) -> None:
        """Called once before the first write: check the config, size the limits, open the client.

        Raises ``PermanentError`` when the config is not a webhook config or uses plain
        HTTP without ``allow_private_networks`` (the connection cannot be used).
        """
        config: object = self.context.config
        if not isinstance(config, WebhookConnectionConfig):
            raise PermanentError("connection config is not a webhook config", partner=self.name)
        if config.url.scheme != "https" and not self.context.allow_private_networks:
            raise PermanentError("webhook URL must use https", partner=self.name)
        limit = (
            RateLimit(rate=config.rate_limit_per_second, per_seconds=1)
            if config.rate_limit_per_second is not None
            else self.default_rate_limit
        )
        if limit is not None:
            self._bucket = limit.bucket(clock=self.context.clock.monotonic)
        concurrency = config.max_concurrency or _DEFAULT_MAX_CONCURRENCY
        self._concurrency = asyncio.Semaphore(concurrency)
        self._http = self.context.http_client_factory(
            timeout_seconds=config.timeout_seconds, max_connections=concurrency
        )
        self._client = WebhookClient(
            http_client=self._http,
            url=str(config.url),
            allow_private_networks=self.context.allow_private_networks,
            resolver=self._resolver,
            wall_clock=self.context.clock.time,
        )

    async def close(self) -> None:
        """Called once at shutdown: close the HTTP client."""
        if self._http is not None:
            await self._http.aclose()
        self._http = None
        self._client = None

    async def write(self, batch: Sequence[OutboundRecord]) -> BatchOutcome:
        """Send the single record of ``batch``; a failure is raised as its outcome."""
        delivered = [await self._send(record) for record in batch]
        return BatchOutcome(delivered=tuple(delivered))

    async def _send(self, record: OutboundRecord) -> DeliveryResult:
        if self._client is None:
            msg = "WebhookSink.setup() must be called before write()"
            raise RuntimeError(msg)
        client = self._client
        clock = self.context.clock
        attempt = Attempt(
            clock, self.context.logger, {**record.log_fields(), "endpoint": client.endpoint}
        )
        try:
            if self._bucket is not None:
                await self._bucket.acquire_or_wait(
                    max_wait=self.max_rate_limit_wait, partner=self.name, sleep=clock.sleep
                )
            async with self._concurrency:
                attempt.restart()  # the attempt itself, not the waits before it
                request = build_webhook_request(
                    record,
                    secret=self.config.secret,
                    attempt_timestamp=int(clock.time()),
                )
                status_code = await client.send(request)
        except ConnectorError as error:
            attempt.failed(error)
            raise
        return attempt.delivered(record.delivery_id, status_code)

"""A real local Standard Webhooks receiver for integration tests and the local demo.

Tenants' HTTPS endpoints are stood in for by ``POST /hooks/{endpoint}`` on a uvicorn server
bound to loopback; every endpoint name is independent (tests use one per tenant). Each
request is verified with ``standardwebhooks.Webhook(secret).verify`` against the endpoint's
secret (or the default secret) and recorded, valid or not; it is answered as the endpoint's
``Behaviour`` says, which tests script from Python or, from another process, over HTTP:

- ``PUT    /_control/endpoints/{endpoint}``           ``{"behaviour": {...}, "secret": "..."}``
- ``GET    /_control/endpoints/{endpoint}``           behaviour and whether a secret is set
- ``GET    /_control/endpoints/{endpoint}/received``  the recorded deliveries
- ``PUT    /_control/default``                        same body; applies to unconfigured endpoints
- ``GET    /_control/received``                       every endpoint's deliveries
- ``DELETE /_control``                                back to the state the receiver started with

Time comes from ``ReceiverState(clock=..., monotonic=...)`` (default: real wall and monotonic
time): ``monotonic`` times ``fail_for_seconds`` and the rate limit, ``clock`` stamps
``received_at`` and ``answered_at``. The receiver's own unit tests inject a clock they move
by hand, so scripted windows never depend on how fast a loaded machine sends requests;
``delay_seconds`` is always a real wait (it holds a real connection open).

In tests, ``ReceiverServer`` runs it in a daemon thread (``with ReceiverServer(...) as srv``);
for the demo, ``python -m tests.sandboxes.webhook_receiver --port 8900 --secret whsec_...``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import uvicorn
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.sandboxes._server import (
    ThreadedServer,
    base_url,
    listen,
    serve_until_interrupted,
    uvicorn_config,
)

__all__ = [
    "Behaviour",
    "Delivery",
    "DeliveryState",
    "EndpointConfig",
    "ReceiverApp",
    "ReceiverServer",
    "ReceiverState",
    "generate_secret",
    "main",
]

DeliveryState = Literal["pending", "answered", "abandoned"]

_SIGNATURE_HEADERS: Final[tuple[str, ...]] = (
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
)
_NO_SECRET: Final[str] = "no secret configured for this endpoint"
_SHUTTING_DOWN_STATUS: Final[int] = 503


def generate_secret(num_bytes: int = 32) -> str:
    """A fresh random Standard Webhooks secret (``whsec_`` + base64)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(num_bytes)).decode("ascii")


class Behaviour(BaseModel):
    """How an endpoint answers.

    Checked per request, in order: a bad signature with ``reject_bad_signatures`` gets 401;
    over ``rate_limit_per_second`` (token bucket, burst of one second's worth) gets 429; the
    first ``fail_first_n`` requests, and any arriving within ``fail_for_seconds`` of the
    behaviour being set, get ``fail_status``; the rest get ``status``. Only requests past the
    401 and 429 gates count towards ``fail_first_n``. Every non-2xx answer carries
    ``Retry-After: retry_after`` when it is set (429 otherwise carries the bucket's refill
    time). ``retry_after_text``, when set, is sent verbatim as ``Retry-After`` instead
    (a hostile or broken endpoint: ``1e308``, ``inf``, a date in the year 9999). Every answer
    waits ``delay_seconds`` first.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    status: int = Field(default=200, ge=200, le=599)
    fail_status: int = Field(default=503, ge=200, le=599)
    fail_for_seconds: float = Field(default=0.0, ge=0)
    fail_first_n: int = Field(default=0, ge=0)
    retry_after: float | None = Field(default=None, ge=0)
    retry_after_text: str | None = Field(default=None, max_length=1000)
    delay_seconds: float = Field(default=0.0, ge=0)
    rate_limit_per_second: float | None = Field(default=None, gt=0)
    reject_bad_signatures: bool = False


class EndpointConfig(BaseModel):
    """Body of ``PUT /_control/...``: fields left out are unchanged; ``null`` reverts to default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    behaviour: Behaviour | None = None
    secret: str | None = None


class Delivery(BaseModel):
    """One request received on ``/hooks/{endpoint}``.

    ``status`` is decided on arrival; ``state`` says whether it was sent: ``pending`` while a
    delay runs, ``abandoned`` if the client hung up first. ``type``, ``timestamp`` and ``data``
    are ``None`` when the body is not a JSON object.
    """

    model_config = ConfigDict(frozen=True)

    endpoint: str
    webhook_id: str | None
    webhook_timestamp: int | None
    signature_valid: bool
    signature_error: str | None
    received_at: float
    answered_at: float | None
    type: str | None
    timestamp: str | None
    data: Any
    correlation_id: str | None
    status: int
    state: DeliveryState
    replay_id: str | None = None
    """``x-queast-replay-id``: the operator run that sent this copy again."""

    @property
    def delivered(self) -> bool:
        """Whether a 2xx answer was sent."""
        return self.state == "answered" and 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class _Policy:
    """A behaviour and when it was set (the state's monotonic clock); a new one resets
    counters."""

    behaviour: Behaviour
    set_at: float


@dataclass(slots=True)
class _Endpoint:
    """Mutable per-endpoint state, guarded by ``ReceiverState._lock``."""

    policy: _Policy | None = None
    verifier: Webhook | None = None
    tracked: _Policy | None = None
    admitted: int = 0
    tokens: float = 0.0
    refilled_at: float = 0.0
    deliveries: list[Delivery] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Decision:
    status: int
    headers: dict[str, str]
    delay: float


@dataclass(frozen=True, slots=True)
class _Handle:
    endpoint: str
    generation: int
    index: int


def _format_seconds(seconds: float) -> str:
    """``Retry-After`` text: whole seconds as an integer, else up to millisecond decimals."""
    if seconds == int(seconds):
        return str(int(seconds))
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def _verifier(secret: str) -> Webhook:
    """A verifier for ``secret``; ``ValueError`` if it is not a usable secret."""
    try:
        return Webhook(secret)
    except (EmptyWebhookSecretError, ValueError) as exc:
        raise ValueError(f"invalid webhook secret: {exc}") from exc


class ReceiverState:
    """Thread-safe secrets, behaviours and recorded deliveries of every endpoint.

    ``clock`` (wall seconds) stamps deliveries; ``monotonic`` times behaviours (see the
    module docstring). Both default to real time.
    """

    def __init__(
        self,
        *,
        default_secret: str | None = None,
        default_behaviour: Behaviour | None = None,
        endpoint_secrets: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._initial_secret = default_secret
        self._initial_behaviour = default_behaviour or Behaviour()
        self._initial_endpoint_secrets = dict(endpoint_secrets or {})
        self._default_verifier: Webhook | None = None
        self._default_policy = _Policy(self._initial_behaviour, self._monotonic())
        self._endpoints: dict[str, _Endpoint] = {}
        self._generation = 0
        self.reset()

    # -- configuration -------------------------------------------------------------------

    def set_behaviour(self, endpoint: str, behaviour: Behaviour | None) -> None:
        """Script ``endpoint``; ``None`` makes it follow the default behaviour again."""
        policy = None if behaviour is None else _Policy(behaviour, self._monotonic())
        with self._lock:
            self._endpoint(endpoint).policy = policy

    def set_default_behaviour(self, behaviour: Behaviour) -> None:
        """Behaviour of every endpoint without its own; its clocks and counters restart."""
        with self._lock:
            self._default_policy = _Policy(behaviour, self._monotonic())

    def set_secret(self, endpoint: str, secret: str | None) -> None:
        """``endpoint``'s secret; ``None`` makes it use the default secret."""
        verifier = None if secret is None else _verifier(secret)
        with self._lock:
            self._endpoint(endpoint).verifier = verifier

    def set_default_secret(self, secret: str | None) -> None:
        """The secret of every endpoint without its own."""
        verifier = None if secret is None else _verifier(secret)
        with self._lock:
            self._default_verifier = verifier

    def configure(self, endpoint: str | None, config: EndpointConfig) -> None:
        """Apply the fields set in ``config`` to ``endpoint`` (``None``: the defaults)."""
        fields = config.model_fields_set
        if endpoint is None:
            if "secret" in fields:
                self.set_default_secret(config.secret)
            if "behaviour" in fields:
                self.set_default_behaviour(config.behaviour or Behaviour())
            return
        if "secret" in fields:
            self.set_secret(endpoint, config.secret)
        if "behaviour" in fields:
            self.set_behaviour(endpoint, config.behaviour)

    def behaviour(self, endpoint: str) -> Behaviour:
        """The behaviour ``endpoint`` answers with now."""
        with self._lock:
            return self._policy_of(self._peek(endpoint)).behaviour

    def has_secret(self, endpoint: str) -> bool:
        """Whether requests to ``endpoint`` can be verified."""
        with self._lock:
            return self._verifier_of(self._peek(endpoint)) is not None

    def reset(self) -> None:
        """Forget every record, and every setting made since construction."""
        default = _verifier(self._initial_secret) if self._initial_secret else None
        own = {name: _verifier(secret) for name, secret in self._initial_endpoint_secrets.items()}
        with self._lock:
            self._endpoints = {name: _Endpoint(verifier=v) for name, v in own.items()}
            self._generation += 1
            self._default_verifier = default
            self._default_policy = _Policy(self._initial_behaviour, self._monotonic())

    def now(self) -> float:
        """Wall-clock seconds from the state's clock (what deliveries are stamped with)."""
        return self._clock()

    # -- records -------------------------------------------------------------------------

    def received(self, endpoint: str) -> list[Delivery]:
        """Deliveries to ``endpoint`` in arrival order (including pending ones)."""
        with self._lock:
            found = self._endpoints.get(endpoint)
            return [] if found is None else list(found.deliveries)

    def delivered_ids(self, endpoint: str) -> list[str]:
        """Webhook ids answered 2xx, in arrival order, duplicates kept."""
        return [
            d.webhook_id
            for d in self.received(endpoint)
            if d.delivered and d.webhook_id is not None
        ]

    def count_by_id(self, endpoint: str, *, delivered_only: bool = False) -> Counter[str]:
        """How many requests (or 2xx answers) each webhook id got."""
        return Counter(
            d.webhook_id
            for d in self.received(endpoint)
            if d.webhook_id is not None and (d.delivered or not delivered_only)
        )

    def all_received(self) -> dict[str, list[Delivery]]:
        """The deliveries of every endpoint that received any."""
        with self._lock:
            return {
                name: list(ep.deliveries) for name, ep in self._endpoints.items() if ep.deliveries
            }

    # -- request path (called by the app) ------------------------------------------------

    def verify(self, endpoint: str, body: bytes, headers: Mapping[str, str]) -> str | None:
        """``None`` if the request's signature verifies, else why not."""
        with self._lock:
            verifier = self._verifier_of(self._peek(endpoint))
        if verifier is None:
            return _NO_SECRET
        try:
            verifier.verify(body, dict(headers), json_parse=False)
        except (WebhookVerificationError, ValueError) as exc:
            # ValueError covers malformed signature lists, bad base64 and non-UTF-8 bodies.
            return str(exc) or type(exc).__name__
        return None

    def decide(self, endpoint: str, *, signature_valid: bool) -> _Decision:
        """The answer to a request arriving now on ``endpoint``."""
        now = self._monotonic()
        with self._lock:
            ep = self._endpoint(endpoint)
            policy = self._policy_of(ep)
            b = policy.behaviour
            if ep.tracked is not policy:
                ep.tracked = policy
                ep.admitted = 0
                ep.tokens = max(1.0, b.rate_limit_per_second or 0.0)
                ep.refilled_at = now
            if b.reject_bad_signatures and not signature_valid:
                return self._answer(b, 401)
            if b.rate_limit_per_second is not None:
                rate = b.rate_limit_per_second
                ep.tokens = min(max(1.0, rate), ep.tokens + (now - ep.refilled_at) * rate)
                ep.refilled_at = now
                if ep.tokens < 1.0:
                    wait = b.retry_after if b.retry_after is not None else (1.0 - ep.tokens) / rate
                    headers = {"retry-after": _format_seconds(max(wait, 0.001))}
                    return _Decision(429, headers, b.delay_seconds)
                ep.tokens -= 1.0
            ep.admitted += 1
            failing = ep.admitted <= b.fail_first_n or now - policy.set_at < b.fail_for_seconds
            return self._answer(b, b.fail_status if failing else b.status)

    def record(self, delivery: Delivery) -> _Handle:
        """Append ``delivery``; the handle lets ``settle`` update it."""
        with self._lock:
            deliveries = self._endpoint(delivery.endpoint).deliveries
            deliveries.append(delivery)
            return _Handle(delivery.endpoint, self._generation, len(deliveries) - 1)

    def settle(self, handle: _Handle, *, status: int, state: DeliveryState) -> None:
        """Mark a recorded delivery answered or abandoned (ignored after ``reset``)."""
        with self._lock:
            ep = self._endpoints.get(handle.endpoint)
            if ep is None or handle.generation != self._generation:
                return
            current = ep.deliveries[handle.index]
            ep.deliveries[handle.index] = current.model_copy(
                update={"status": status, "state": state, "answered_at": self._clock()}
            )

    # -- internals (lock held) -----------------------------------------------------------

    def _peek(self, endpoint: str) -> _Endpoint:
        """``endpoint``'s state, or a blank one (not stored) if it was never used."""
        return self._endpoints.get(endpoint) or _Endpoint()

    def _endpoint(self, endpoint: str) -> _Endpoint:
        found = self._endpoints.get(endpoint)
        if found is None:
            found = self._endpoints[endpoint] = _Endpoint()
        return found

    def _policy_of(self, ep: _Endpoint) -> _Policy:
        return ep.policy if ep.policy is not None else self._default_policy

    def _verifier_of(self, ep: _Endpoint) -> Webhook | None:
        return ep.verifier if ep.verifier is not None else self._default_verifier

    @staticmethod
    def _answer(b: Behaviour, status: int) -> _Decision:
        headers: dict[str, str] = {}
        if not 200 <= status < 300 and b.retry_after_text is not None:
            headers["retry-after"] = b.retry_after_text
        elif not 200 <= status < 300 and b.retry_after is not None:
            headers["retry-after"] = _format_seconds(b.retry_after)
        return _Decision(status, headers, b.delay_seconds)


def _parse_envelope(body: bytes) -> tuple[str | None, str | None, Any]:
    """``type``, ``timestamp`` and ``data`` of a Standard Webhooks JSON body, if it is one."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None, None, None
    if not isinstance(doc, dict):
        return None, None, None
    kind, stamp = doc.get("type"), doc.get("timestamp")
    return (
        kind if isinstance(kind, str) else None,
        stamp if isinstance(stamp, str) else None,
        doc.get("data"),
    )


def _parse_int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


async def _wait_for_disconnect(receive: Receive) -> None:
    """Return once the client has gone (call only after the body was read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class ReceiverApp:
    """The ASGI app: ``/hooks/{endpoint}`` plus the ``/_control`` API over a ``ReceiverState``."""

    def __init__(self, state: ReceiverState) -> None:
        self.state = state
        self._closing = asyncio.Event()
        self._app = Starlette(
            routes=[
                Route("/hooks/{endpoint}", self._hook, methods=["POST"]),
                Route("/_control", self._reset, methods=["DELETE"]),
                Route("/_control/default", self._put_default, methods=["PUT"]),
                Route("/_control/received", self._get_all_received, methods=["GET"]),
                Route("/_control/endpoints/{endpoint}", self._put_endpoint, methods=["PUT"]),
                Route("/_control/endpoints/{endpoint}", self._get_endpoint, methods=["GET"]),
                Route(
                    "/_control/endpoints/{endpoint}/received",
                    self._get_received,
                    methods=["GET"],
                ),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    def close_pending(self) -> None:
        """End running and future delays with a 503 (call on the server's event loop)."""
        self._closing.set()

    # -- webhooks ------------------------------------------------------------------------

    async def _hook(self, request: Request) -> Response:
        received_at = self.state.now()
        endpoint: str = request.path_params["endpoint"]
        body = await request.body()
        headers = {
            name: request.headers[name] for name in _SIGNATURE_HEADERS if name in request.headers
        }
        error = self.state.verify(endpoint, body, headers)
        decision = self.state.decide(endpoint, signature_valid=error is None)
        kind, stamp, data = _parse_envelope(body)
        delivery = Delivery(
            endpoint=endpoint,
            webhook_id=headers.get("webhook-id"),
            webhook_timestamp=_parse_int(headers.get("webhook-timestamp")),
            signature_valid=error is None,
            signature_error=error,
            received_at=received_at,
            answered_at=None if decision.delay > 0 else self.state.now(),
            type=kind,
            timestamp=stamp,
            data=data,
            correlation_id=request.headers.get("x-correlation-id"),
            replay_id=request.headers.get("x-queast-replay-id"),
            status=decision.status,
            state="pending" if decision.delay > 0 else "answered",
        )
        handle = self.state.record(delivery)
        if decision.delay <= 0:
            return Response(status_code=decision.status, headers=decision.headers)
        outcome = await self._delay(decision.delay, request.receive)
        if outcome == "disconnected":
            self.state.settle(handle, status=decision.status, state="abandoned")
            return Response(status_code=decision.status, headers=decision.headers)
        if outcome == "closing":
            self.state.settle(handle, status=_SHUTTING_DOWN_STATUS, state="answered")
            return Response(status_code=_SHUTTING_DOWN_STATUS)
        self.state.settle(handle, status=decision.status, state="answered")
        return Response(status_code=decision.status, headers=decision.headers)

    async def _delay(
        self, seconds: float, receive: Receive
    ) -> Literal["elapsed", "disconnected", "closing"]:
        """Sleep ``seconds`` unless the client hangs up or the server shuts down first."""
        sleeper = asyncio.ensure_future(asyncio.sleep(seconds))
        watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
        closer = asyncio.ensure_future(self._closing.wait())
        tasks = (sleeper, watcher, closer)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
        if closer in done:
            return "closing"
        if watcher in done:
            return "disconnected"
        return "elapsed"

    # -- control API ---------------------------------------------------------------------

    async def _put_endpoint(self, request: Request) -> Response:
        endpoint: str = request.path_params["endpoint"]
        return await self._configure(request, endpoint) or self._endpoint_view(endpoint)

    async def _put_default(self, request: Request) -> Response:
        return await self._configure(request, None) or Response(status_code=204)

    async def _configure(self, request: Request, endpoint: str | None) -> Response | None:
        """Apply the request's ``EndpointConfig``; an error response if it is not valid."""
        try:
            config = EndpointConfig.model_validate_json(await request.body())
            self.state.configure(endpoint, config)
        except ValidationError as exc:
            return JSONResponse({"detail": json.loads(exc.json(include_url=False))}, 422)
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, 422)
        return None

    async def _get_endpoint(self, request: Request) -> Response:
        return self._endpoint_view(request.path_params["endpoint"])

    def _endpoint_view(self, endpoint: str) -> Response:
        return JSONResponse(
            {
                "endpoint": endpoint,
                "behaviour": self.state.behaviour(endpoint).model_dump(mode="json"),
                "has_secret": self.state.has_secret(endpoint),
            }
        )

    async def _get_received(self, request: Request) -> Response:
        endpoint: str = request.path_params["endpoint"]
        deliveries = [d.model_dump(mode="json") for d in self.state.received(endpoint)]
        return JSONResponse({"endpoint": endpoint, "deliveries": deliveries})

    async def _get_all_received(self, request: Request) -> Response:
        everything = {
            name: [d.model_dump(mode="json") for d in found]
            for name, found in self.state.all_received().items()
        }
        return JSONResponse({"endpoints": everything})

    async def _reset(self, request: Request) -> Response:
        self.state.reset()
        return Response(status_code=204)


class _Uvicorn(uvicorn.Server):
    """The sandboxes' uvicorn; shutting down ends running delays."""

    def __init__(self, app: ReceiverApp, *, configure_logging: bool, log_level: str) -> None:
        super().__init__(
            uvicorn_config(app, configure_logging=configure_logging, log_level=log_level)
        )
        self.receiver = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Answer pending delays 503 first, so the graceful wait is short."""
        self.receiver.close_pending()
        await super().shutdown(sockets)


class ReceiverServer(ThreadedServer):
    """A ``ReceiverApp`` served for real by uvicorn in a daemon thread.

    ``with ReceiverServer(default_secret=s) as srv: httpx.post(srv.endpoint_url("t_001"))``.
    The port is bound in ``start()`` (``0``: ephemeral), so ``url`` is known from then on.
    Stopping ends running delays with a 503 rather than waiting them out.
    """

    name = "the webhook receiver"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default_secret: str | None = None,
        default_behaviour: Behaviour | None = None,
        state: ReceiverState | None = None,
    ) -> None:
        super().__init__(host=host, port=port)
        self.state = state or ReceiverState(
            default_secret=default_secret, default_behaviour=default_behaviour
        )

    def endpoint_url(self, endpoint: str) -> str:
        """The URL webhooks for ``endpoint`` are posted to."""
        return f"{self.url}/hooks/{endpoint}"

    def _new_server(self) -> uvicorn.Server:
        return _Uvicorn(ReceiverApp(self.state), configure_logging=False, log_level="warning")

    # -- the ReceiverState API, for convenience ------------------------------------------

    def set_behaviour(self, endpoint: str, behaviour: Behaviour | None) -> None:
        """See ``ReceiverState.set_behaviour``."""
        self.state.set_behaviour(endpoint, behaviour)

    def set_default_behaviour(self, behaviour: Behaviour) -> None:
        """See ``ReceiverState.set_default_behaviour``."""
        self.state.set_default_behaviour(behaviour)

    def set_secret(self, endpoint: str, secret: str | None) -> None:
        """See ``ReceiverState.set_secret``."""
        self.state.set_secret(endpoint, secret)

    def set_default_secret(self, secret: str | None) -> None:
        """See ``ReceiverState.set_default_secret``."""
        self.state.set_default_secret(secret)

    def received(self, endpoint: str) -> list[Delivery]:
        """See ``ReceiverState.received``."""
        return self.state.received(endpoint)

    def delivered_ids(self, endpoint: str) -> list[str]:
        """See ``ReceiverState.delivered_ids``."""
        return self.state.delivered_ids(endpoint)

    def count_by_id(self, endpoint: str, *, delivered_only: bool = False) -> Counter[str]:
        """See ``ReceiverState.count_by_id``."""
        return self.state.count_by_id(endpoint, delivered_only=delivered_only)

    def all_received(self) -> dict[str, list[Delivery]]:
        """See ``ReceiverState.all_received``."""
        return self.state.all_received()

    def reset(self) -> None:
        """See ``ReceiverState.reset``."""
        self.state.reset()

    def wait_for(
        self,
        predicate: Callable[[ReceiverState], bool],
        *,
        timeout: float = 10.0,
        interval: float = 0.01,
    ) -> bool:
        """Poll until ``predicate(state)`` holds; whether it did within ``timeout``."""
        deadline = time.monotonic() + timeout
        while not predicate(self.state):
            if time.monotonic() > deadline:
                return False
            time.sleep(interval)
        return True


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.sandboxes.webhook_receiver",
        description="Local Standard Webhooks receiver: POST /hooks/{endpoint}, control /_control.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--secret", help="default whsec_... secret of every endpoint")
    parser.add_argument(
        "--endpoint-secret",
        action="append",
        default=[],
        metavar="ENDPOINT=SECRET",
        help="secret of one endpoint (repeatable)",
    )
    parser.add_argument("--reject-bad-signatures", action="store_true")
    parser.add_argument("--log-level", default="warning")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve in the foreground until interrupted (the local demo's tenant endpoints)."""
    args = _parse_args(argv)
    endpoint_secrets: dict[str, str] = {}
    for item in args.endpoint_secret:
        endpoint, sep, secret = str(item).partition("=")
        if not sep or not endpoint:
            raise SystemExit(f"--endpoint-secret wants ENDPOINT=SECRET, got {item!r}")
        endpoint_secrets[endpoint] = secret
    try:
        state = ReceiverState(
            default_secret=args.secret,
            default_behaviour=Behaviour(reject_bad_signatures=args.reject_bad_signatures),
            endpoint_secrets=endpoint_secrets,
        )
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    sock = listen(args.host, args.port)
    server = _Uvicorn(ReceiverApp(state), configure_logging=True, log_level=args.log_level)
    print(
        f"webhook receiver on {base_url(args.host, sock.getsockname()[1])}/hooks/<endpoint>",
        flush=True,
    )
    serve_until_interrupted(server, sock)


if __name__ == "__main__":
    main()

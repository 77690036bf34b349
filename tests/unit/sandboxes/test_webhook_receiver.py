"""The local webhook receiver, served for real on loopback and driven with httpx.

The receiver's clock is a :class:`SteeredClock`: real time unless a test about a scripted
time window freezes it and moves it by hand, so no outcome depends on how fast a loaded
machine sends the requests. No test bounds how long anything may take (request timeouts
only end a hang); the delay tests check outcomes, and that a scripted delay was waited out.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook

from tests.sandboxes.webhook_receiver import (
    Behaviour,
    Delivery,
    ReceiverServer,
    ReceiverState,
    generate_secret,
)
from tests.unit.sandboxes.clocks import SteeredClock

PROJECT_ROOT = Path(__file__).resolve().parents[3]
SECRET = generate_secret()
OTHER_SECRET = generate_secret()
HANG_GUARD_SECONDS = 120.0
"""httpx timeout of the tests' requests: only ends a request that will never be answered.
On a loaded 2-core machine one of many concurrent requests was seen to wait 10 s."""


def envelope(n: int = 1) -> bytes:
    """A compact Standard Webhooks body, as the webhook connector sends them."""
    doc = {"data": {"contact_id": f"c_{n}"}, "timestamp": "2026-01-02T03:04:05Z", "type": "x.y"}
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def signed(
    body: bytes,
    *,
    msg_id: str = "msg_1",
    secret: str = SECRET,
    at: datetime | None = None,
    correlation_id: str | None = "corr-1",
) -> dict[str, str]:
    """Standard Webhooks headers for ``body``, signed with the reference library."""
    when = at or datetime.now(tz=UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body.decode()),
    }
    if correlation_id is not None:
        headers["x-correlation-id"] = correlation_id
    return headers


def post(
    server: ReceiverServer, endpoint: str, msg_id: str = "msg_1", secret: str = SECRET
) -> httpx.Response:
    """POST one correctly formed delivery (signed with ``secret``) to ``endpoint``."""
    body = envelope()
    headers = signed(body, msg_id=msg_id, secret=secret)
    return httpx.post(
        server.endpoint_url(endpoint), content=body, headers=headers, timeout=HANG_GUARD_SECONDS
    )


@pytest.fixture
def clock() -> SteeredClock:
    """The receiver's clock: real time unless the test freezes it."""
    return SteeredClock()


@pytest.fixture
def server(clock: SteeredClock) -> Iterator[ReceiverServer]:
    state = ReceiverState(default_secret=SECRET, clock=clock.time, monotonic=clock.monotonic)
    with ReceiverServer(state=state) as srv:
        yield srv


# -- signatures and records ------------------------------------------------------------------


def test_signed_request_is_recorded_valid_and_answered_200(server: ReceiverServer) -> None:
    body = envelope(7)
    before = time.time()
    response = httpx.post(
        server.endpoint_url("t_001"), content=body, headers=signed(body, msg_id="msg_a")
    )

    assert response.status_code == 200
    [got] = server.received("t_001")
    assert got.signature_valid
    assert got.signature_error is None
    assert got.webhook_id == "msg_a"
    assert got.webhook_timestamp is not None
    assert int(before) <= got.webhook_timestamp <= time.time()
    assert before <= got.received_at <= time.time()
    assert (got.type, got.timestamp, got.data) == (
        "x.y",
        "2026-01-02T03:04:05Z",
        {"contact_id": "c_7"},
    )
    assert got.correlation_id == "corr-1"
    assert (got.status, got.state, got.delivered) == (200, "answered", True)
    assert server.delivered_ids("t_001") == ["msg_a"]
    assert server.count_by_id("t_001") == {"msg_a": 1}
    assert server.received("t_002") == []
    assert set(server.all_received()) == {"t_001"}


def test_wrong_signature_is_recorded_invalid_but_answered_by_default(
    server: ReceiverServer,
) -> None:
    assert post(server, "t_001", secret=OTHER_SECRET).status_code == 200

    [got] = server.received("t_001")
    assert not got.signature_valid
    assert got.signature_error == "No matching signature found"
    assert got.delivered


def test_reject_bad_signatures_answers_401(server: ReceiverServer) -> None:
    server.set_behaviour("t_001", Behaviour(reject_bad_signatures=True))

    assert post(server, "t_001", msg_id="bad", secret=OTHER_SECRET).status_code == 401
    assert post(server, "t_001", msg_id="good").status_code == 200
    assert [(d.webhook_id, d.signature_valid, d.status) for d in server.received("t_001")] == [
        ("bad", False, 401),
        ("good", True, 200),
    ]
    assert server.delivered_ids("t_001") == ["good"]


def test_each_endpoint_verifies_with_its_own_secret(server: ReceiverServer) -> None:
    server.set_secret("t_002", OTHER_SECRET)

    post(server, "t_001", secret=OTHER_SECRET)
    post(server, "t_002", secret=OTHER_SECRET)

    assert [d.signature_valid for d in server.received("t_001")] == [False]
    assert [d.signature_valid for d in server.received("t_002")] == [True]


def test_stale_timestamp_missing_headers_and_no_secret_are_invalid() -> None:
    with ReceiverServer() as srv:  # no default secret
        body = envelope()
        httpx.post(srv.endpoint_url("none"), content=body, headers=signed(body))
        srv.set_default_secret(SECRET)
        old = datetime.now(tz=UTC) - timedelta(minutes=10)
        httpx.post(srv.endpoint_url("old"), content=body, headers=signed(body, at=old))
        httpx.post(srv.endpoint_url("bare"), content=b"not json")
        malformed = {**signed(body), "webhook-signature": "garbage"}
        httpx.post(srv.endpoint_url("malformed"), content=body, headers=malformed)

        errors = {
            name: [d.signature_error for d in got] for name, got in srv.all_received().items()
        }

    assert errors == {
        "none": ["no secret configured for this endpoint"],
        "old": ["Message timestamp too old"],
        "bare": ["Missing required headers"],
        "malformed": [errors["malformed"][0]],
    }
    assert errors["malformed"][0]  # the library's ValueError, recorded rather than raised


def test_non_json_body_is_recorded_without_envelope(server: ReceiverServer) -> None:
    httpx.post(server.endpoint_url("t_001"), content=b"[1,2]", headers=signed(b"[1,2]"))

    [got] = server.received("t_001")
    assert (got.signature_valid, got.type, got.timestamp, got.data) == (True, None, None, None)


# -- scripted failures -------------------------------------------------------------------------


def test_fail_for_seconds_answers_503_with_retry_after_then_200(
    server: ReceiverServer, clock: SteeredClock
) -> None:
    clock.freeze()
    server.set_behaviour("t_001", Behaviour(fail_for_seconds=0.5, retry_after=0.25))

    failing = post(server, "t_001")
    other = post(server, "t_002")
    clock.advance(0.6)
    recovered = post(server, "t_001")

    assert (failing.status_code, failing.headers["retry-after"]) == (503, "0.25")
    assert other.status_code == 200
    assert recovered.status_code == 200
    assert "retry-after" not in recovered.headers
    assert server.delivered_ids("t_001") == ["msg_1"]
    assert server.count_by_id("t_001") == {"msg_1": 2}
    assert server.count_by_id("t_001", delivered_only=True) == {"msg_1": 1}


def test_fail_first_n_then_status(server: ReceiverServer) -> None:
    server.set_behaviour("t_001", Behaviour(fail_first_n=2, fail_status=500, status=202))

    statuses = [post(server, "t_001", msg_id=f"m{i}").status_code for i in range(4)]

    assert statuses == [500, 500, 202, 202]
    assert server.delivered_ids("t_001") == ["m2", "m3"]


def test_new_behaviour_restarts_the_counters(server: ReceiverServer) -> None:
    server.set_behaviour("t_001", Behaviour(fail_first_n=1))
    assert post(server, "t_001").status_code == 503
    assert post(server, "t_001").status_code == 200

    server.set_behaviour("t_001", Behaviour(fail_first_n=1))

    assert post(server, "t_001").status_code == 503


def test_default_behaviour_applies_to_endpoints_without_their_own(server: ReceiverServer) -> None:
    server.set_default_behaviour(Behaviour(status=204))
    server.set_behaviour("t_002", Behaviour(status=500, retry_after=3))

    assert post(server, "t_001").status_code == 204
    assert post(server, "t_003").status_code == 204
    slow = post(server, "t_002")
    assert (slow.status_code, slow.headers["retry-after"]) == (500, "3")

    server.set_behaviour("t_002", None)
    assert post(server, "t_002").status_code == 204


def test_rate_limit_answers_429_with_retry_after(
    server: ReceiverServer, clock: SteeredClock
) -> None:
    clock.freeze()
    server.set_behaviour("t_001", Behaviour(rate_limit_per_second=5))

    with httpx.Client() as client:
        body = envelope()
        responses = [
            client.post(server.endpoint_url("t_001"), content=body, headers=signed(body))
            for _ in range(12)
        ]
        statuses = [r.status_code for r in responses]
        other = client.post(server.endpoint_url("t_002"), content=body, headers=signed(body))

    assert statuses[:5] == [200] * 5
    assert 429 in statuses
    limited = next(r for r in responses if r.status_code == 429)
    assert 0 < float(limited.headers["retry-after"]) <= 0.2
    assert other.status_code == 200
    clock.advance(0.25)
    assert post(server, "t_001").status_code == 200


async def test_delay_on_one_endpoint_does_not_delay_another(server: ReceiverServer) -> None:
    server.set_behaviour("slow", Behaviour(delay_seconds=600))
    body = envelope()
    async with httpx.AsyncClient(timeout=HANG_GUARD_SECONDS) as client:
        slow = asyncio.create_task(
            client.post(server.endpoint_url("slow"), content=body, headers=signed(body))
        )
        assert await asyncio.to_thread(
            server.wait_for, lambda s: bool(s.received("slow")), timeout=30
        )

        fast = await client.post(server.endpoint_url("fast"), content=body, headers=signed(body))

        # answered while the slow one still waits out its delay: not queued behind it
        assert fast.status_code == 200
        assert not slow.done()
        assert [d.state for d in server.received("slow")] == ["pending"]
        assert server.delivered_ids("slow") == []

        slow.cancel()  # the client gives up: the receiver notices the hang-up
        with pytest.raises(asyncio.CancelledError):
            await slow

    assert await asyncio.to_thread(
        server.wait_for, lambda s: s.received("slow")[0].state == "abandoned", timeout=30
    )
    assert server.delivered_ids("slow") == []


def test_delay_then_answer(server: ReceiverServer) -> None:
    server.set_behaviour("t_001", Behaviour(delay_seconds=0.3))

    started = time.monotonic()
    response = post(server, "t_001")

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3
    [got] = server.received("t_001")
    assert got.state == "answered"
    assert got.answered_at is not None
    assert got.answered_at - got.received_at >= 0.29


def test_stop_answers_a_hanging_request_503_without_waiting_it_out() -> None:
    srv = ReceiverServer(default_secret=SECRET).start()
    srv.set_behaviour("hang", Behaviour(delay_seconds=60))
    results: list[int] = []
    worker = threading.Thread(target=lambda: results.append(post(srv, "hang").status_code))
    worker.start()
    assert srv.wait_for(lambda s: bool(s.received("hang")), timeout=30)

    srv.stop()
    worker.join(45)

    # 503 is the shutdown answer: a delay waited out to its 60 s would have answered 200
    assert not worker.is_alive()
    assert results == [503]
    assert [(d.status, d.state) for d in srv.received("hang")] == [(503, "answered")]


# -- control API over HTTP ---------------------------------------------------------------------


def test_control_api_sets_behaviour_and_returns_deliveries(server: ReceiverServer) -> None:
    control = f"{server.url}/_control"
    put = httpx.put(
        f"{control}/endpoints/t_001",
        json={"behaviour": {"status": 202, "fail_first_n": 1}, "secret": OTHER_SECRET},
    )
    assert put.status_code == 200
    assert put.json()["behaviour"]["fail_first_n"] == 1
    assert put.json()["has_secret"] is True
    assert "secret" not in put.text.replace("has_secret", "")

    assert post(server, "t_001", msg_id="m1", secret=OTHER_SECRET).status_code == 503
    assert post(server, "t_001", msg_id="m2", secret=OTHER_SECRET).status_code == 202

    got = httpx.get(f"{control}/endpoints/t_001/received")
    assert got.status_code == 200
    deliveries = [Delivery.model_validate(d) for d in got.json()["deliveries"]]
    assert [(d.webhook_id, d.status, d.signature_valid) for d in deliveries] == [
        ("m1", 503, True),
        ("m2", 202, True),
    ]
    assert deliveries == server.received("t_001")
    assert httpx.get(f"{control}/endpoints/t_unused").json()["has_secret"] is True  # the default
    everything = httpx.get(f"{control}/received").json()["endpoints"]
    assert list(everything) == ["t_001"]


def test_control_api_default_and_reset(server: ReceiverServer) -> None:
    control = f"{server.url}/_control"
    assert httpx.put(f"{control}/default", json={"behaviour": {"status": 500}}).status_code == 204
    assert post(server, "t_009").status_code == 500
    assert httpx.get(f"{control}/endpoints/t_009").json()["behaviour"]["status"] == 500

    assert httpx.delete(control).status_code == 204

    assert server.all_received() == {}
    assert post(server, "t_009").status_code == 200
    assert server.received("t_009")[0].signature_valid  # the startup secret survives a reset


def test_control_api_rejects_bad_input(server: ReceiverServer) -> None:
    endpoint = f"{server.url}/_control/endpoints/t_001"

    assert httpx.put(endpoint, json={"behaviour": {"stauts": 500}}).status_code == 422
    assert httpx.put(endpoint, json={"behaviour": {"delay_seconds": -1}}).status_code == 422
    assert httpx.put(endpoint, content=b"{").status_code == 422
    assert httpx.put(endpoint, json={"secret": ""}).status_code == 422
    assert server.state.behaviour("t_001") == Behaviour()


# -- load, lifecycle, models -------------------------------------------------------------------


async def test_many_concurrent_deliveries_are_all_recorded(server: ReceiverServer) -> None:
    endpoints = [f"t_{i:03d}" for i in range(5)]
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
    async with httpx.AsyncClient(limits=limits, timeout=HANG_GUARD_SECONDS) as client:
        queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        for n in range(1000):
            queue.put_nowait((endpoints[n % 5], f"msg_{n}"))

        async def worker() -> None:
            while not queue.empty():
                endpoint, msg_id = queue.get_nowait()
                body = envelope()
                response = await client.post(
                    server.endpoint_url(endpoint), content=body, headers=signed(body, msg_id=msg_id)
                )
                assert response.status_code == 200

        await asyncio.gather(*(worker() for _ in range(20)))

    everything = server.all_received()
    assert sum(len(v) for v in everything.values()) == 1000
    assert all(d.signature_valid for v in everything.values() for d in v)
    assert len(server.delivered_ids("t_000")) == 200
    assert server.count_by_id("t_000", delivered_only=True).most_common(1)[0][1] == 1


def test_server_restarts_on_the_same_state() -> None:
    srv = ReceiverServer(default_secret=SECRET)
    with pytest.raises(RuntimeError):
        _ = srv.url
    with srv:
        post(srv, "t_001", msg_id="a")
        with pytest.raises(RuntimeError):
            srv.start()
    srv.stop()  # idempotent
    with srv:
        post(srv, "t_001", msg_id="b")
        assert srv.url.startswith("http://127.0.0.1:")
    assert srv.delivered_ids("t_001") == ["a", "b"]


def test_a_port_in_use_fails_start_in_the_calling_thread(server: ReceiverServer) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    with pytest.raises(OSError):
        ReceiverServer(port=port).start()


def test_behaviour_validation() -> None:
    with pytest.raises(ValidationError):
        Behaviour.model_validate({"status": 200, "typo": 1})
    with pytest.raises(ValidationError):
        Behaviour(rate_limit_per_second=0)
    with pytest.raises(ValidationError):
        Behaviour(status=101)
    with pytest.raises(ValidationError):
        Behaviour(delay_seconds=float("inf"))


def test_invalid_secret_is_refused_early() -> None:
    state = ReceiverState()
    with pytest.raises(ValueError, match="invalid webhook secret"):
        state.set_secret("t_001", "whsec_")
    with pytest.raises(ValueError, match="invalid webhook secret"):
        ReceiverState(default_secret="whsec_")


def test_command_line_entry_serves_until_interrupted() -> None:
    command = [sys.executable, "-m", "tests.sandboxes.webhook_receiver", "--port", "0"]
    command += ["--secret", SECRET, "--endpoint-secret", f"t_002={OTHER_SECRET}"]
    proc = subprocess.Popen(
        command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        base = line.split(" on ", 1)[1].removesuffix("/hooks/<endpoint>\n")
        httpx.put(f"{base}/_control/endpoints/t_001", json={"behaviour": {"status": 202}})
        body = envelope()
        first = httpx.post(f"{base}/hooks/t_001", content=body, headers=signed(body))
        second = httpx.post(
            f"{base}/hooks/t_002", content=body, headers=signed(body, secret=OTHER_SECRET)
        )
        everything = httpx.get(f"{base}/_control/received").json()["endpoints"]
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=10)

    assert (first.status_code, second.status_code) == (202, 200)
    assert [d["signature_valid"] for d in everything["t_001"] + everything["t_002"]] == [True, True]
    assert proc.returncode == 0, stderr

"""The intake service with fakes: the order of its checks, what each refusal leaves behind
(nothing produced, no dedupe key), reserve-then-confirm, the client address behind proxies,
the URL handed to the adapter, and the inbound block's model."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr, ValidationError

from connectors.base.inbound import InboundAuthError, InboundRequest, InboundSettings
from connectors.registry import ConnectorSpec, extended
from processors.errors import PayloadTooLarge, ServiceError
from processors.inbound.intake import (
    InboundConnection,
    InboundIntake,
    IntakeResult,
    LookupOutcome,
    ReceivedRequest,
    Reservation,
    client_address,
    inbound_id,
    inbound_model,
)
from processors.inbound.models import InboundEvent
from processors.settings import IntakeSettings
from tests.support.inbound import (
    NAME,
    PLAIN_NAME,
    PLAIN_SPEC,
    SPEC,
    HmacInbound,
    events_body,
    sign,
)

BASE = "https://hooks.example.com"
SECRET = "unit-inbound-secret"
TENANT = "t_unit"
PATH = f"/webhooks/{NAME}/{TENANT}"
NOW = 1_800_000_000.0


class FakeConnections:
    def __init__(self, outcome: InboundConnection | LookupOutcome) -> None:
        self.outcome = outcome
        self.calls = 0

    async def find(self, tenant_id: str, spec: ConnectorSpec) -> InboundConnection | LookupOutcome:
        self.calls += 1
        return self.outcome


class FakeDedupe:
    """Keys in a dict: a lease token or ``"1"`` once confirmed."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}

    def key(self, tenant_id: str, inbound: str) -> str:
        return f"seen:{tenant_id}:{inbound}"

    async def reserve(self, keys: Sequence[str], token: str) -> list[Reservation]:
        states: list[Reservation] = []
        for key in keys:
            value = self.keys.get(key)
            if value is None:
                self.keys[key] = token
                states.append("new")
            else:
                states.append("duplicate" if value == "1" else "in_flight")
        return states

    async def confirm(self, keys: Sequence[str], token: str) -> None:
        for key in keys:
            if self.keys.get(key) == token:
                self.keys[key] = "1"

    async def release(self, keys: Sequence[str], token: str) -> None:
        for key in keys:
            if self.keys.get(key) == token:
                del self.keys[key]


class FakePublisher:
    def __init__(self, acks: list[bool] | None = None) -> None:
        self.acks = acks
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def send(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> list[bool]:
        acks = self.acks if self.acks is not None else [True] * len(records)
        for (key, value), ok in zip(records, acks, strict=False):
            if ok:
                self.sent.append((topic, key, value))
        return acks[: len(records)]


def _connection(**block: Any) -> InboundConnection:
    settings = HmacInbound(enabled=True, secret=SecretStr(SECRET), **block)
    return InboundConnection(TENANT, f"conn_{TENANT}", settings)


def _request(
    body: bytes,
    *,
    signed: bool = True,
    peer: str = "127.0.0.1",
    headers: Sequence[tuple[str, str]] = (),
    path: str = PATH,
    query: str = "",
    base_url: str = "http://internal:8000/",
) -> tuple[ReceivedRequest, list[int]]:
    reads: list[int] = []

    async def read_body() -> bytes:
        reads.append(1)
        return body

    url = BASE + path + (f"?{query}" if query else "")
    all_headers = list(headers)
    if signed:
        all_headers.append(("x-test-signature", sign(SECRET, "POST", url, body)))
    received = ReceivedRequest(
        method="POST",
        base_url=base_url,
        raw_path=path,
        query=query,
        headers=all_headers,
        peer=peer,
        read_body=read_body,
    )
    return received, reads


def _intake(
    connections: FakeConnections,
    dedupe: FakeDedupe,
    publisher: FakePublisher,
    **settings: Any,
) -> InboundIntake:
    return InboundIntake(
        connections=connections,
        dedupe=dedupe,
        publisher=publisher,
        settings=IntakeSettings(public_base_url=BASE, **settings),
        topic="integrations.inbound",
        clock=lambda: NOW,
    )


@pytest.fixture(autouse=True)
def _registered() -> Iterator[None]:
    with extended(SPEC, PLAIN_SPEC):
        yield


def _count(outcome: str, connector: str = NAME) -> float:
    labels = {"connector": connector, "outcome": outcome}
    return REGISTRY.get_sample_value("qi_inbound_total", labels) or 0.0


async def _refused(intake: InboundIntake, connector: str, request: ReceivedRequest) -> ServiceError:
    with pytest.raises(ServiceError) as raised:
        await intake.receive(connector, TENANT, request)
    return raised.value


# -- accepted, duplicates, produce failures -------------------------------------------------


async def test_each_new_highlight_is_produced_once_keyed_by_tenant() -> None:
    dedupe, publisher = FakeDedupe(), FakePublisher()
    intake = _intake(FakeConnections(_connection()), dedupe, publisher)
    body = events_body("e1", "e2", "e1")

    first = await intake.receive(NAME, TENANT, _request(body)[0])
    again = await intake.receive(NAME, TENANT, _request(body)[0])

    assert first == IntakeResult(accepted=2, duplicates=0)
    assert again == IntakeResult(accepted=0, duplicates=2)
    assert len(publisher.sent) == 2
    events = [InboundEvent.model_validate_json(value) for _, _, value in publisher.sent]
    assert {topic for topic, _, _ in publisher.sent} == {"integrations.inbound"}
    assert {key for _, key, _ in publisher.sent} == {TENANT.encode()}
    assert [e.partner_event_id for e in events] == ["e1", "e2"]
    assert events[0].inbound_id == inbound_id(TENANT, f"conn_{TENANT}", "e1")
    assert events[0].correlation_id == events[0].inbound_id
    assert events[0].received_at.timestamp() == NOW
    assert set(dedupe.keys.values()) == {"1"}


async def test_a_produce_kafka_does_not_acknowledge_is_503_and_its_key_released() -> None:
    dedupe, publisher = FakeDedupe(), FakePublisher(acks=[True, False])
    intake = _intake(FakeConnections(_connection()), dedupe, publisher)
    before = _count("unavailable")

    error = await _refused(intake, NAME, _request(events_body("ok", "lost"))[0])

    assert error.status_code == 503
    assert int(error.headers["Retry-After"]) > 0
    assert _count("unavailable") == before + 1
    # The acknowledged one is remembered, the lost one can come again.
    assert list(dedupe.keys.values()) == ["1"]
    publisher.acks = None
    retried = await intake.receive(NAME, TENANT, _request(events_body("ok", "lost"))[0])
    assert retried == IntakeResult(accepted=1, duplicates=1)


async def test_an_event_another_request_is_producing_is_503_and_nothing_is_produced() -> None:
    dedupe, publisher = FakeDedupe(), FakePublisher()
    intake = _intake(FakeConnections(_connection()), dedupe, publisher)
    busy = dedupe.key(TENANT, inbound_id(TENANT, f"conn_{TENANT}", "busy"))
    dedupe.keys[busy] = "lease:other"

    error = await _refused(intake, NAME, _request(events_body("fresh", "busy"))[0])

    assert (error.status_code, error.code) == (503, "in_flight")
    assert publisher.sent == []
    assert dedupe.keys == {busy: "lease:other"}


async def test_a_publisher_that_raises_releases_the_reservations() -> None:
    class Broken(FakePublisher):
        async def send(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> list[bool]:
            raise RuntimeError("broken")

    dedupe = FakeDedupe()
    intake = _intake(FakeConnections(_connection()), dedupe, Broken())
    with pytest.raises(RuntimeError):
        await intake.receive(NAME, TENANT, _request(events_body("e1"))[0])
    assert dedupe.keys == {}


# -- the order of the checks ----------------------------------------------------------------


async def test_an_unknown_connector_or_one_without_adapter_is_404_before_the_body_is_read() -> None:
    connections = FakeConnections(_connection())
    intake = _intake(connections, FakeDedupe(), FakePublisher())
    for connector, label in (("nosuch", "unknown"), (PLAIN_NAME, PLAIN_NAME)):
        request, reads = _request(b"{}")
        before = _count("unknown_connector" if label == "unknown" else "no_adapter", label)
        error = await _refused(intake, connector, request)
        assert error.status_code == 404
        assert reads == []
        after = _count("unknown_connector" if label == "unknown" else "no_adapter", label)
        assert after == before + 1
    assert connections.calls == 0


async def test_an_oversized_body_is_413_before_the_tenant_is_looked_up() -> None:
    connections = FakeConnections(_connection())
    intake = _intake(connections, FakeDedupe(), FakePublisher())

    async def too_large() -> bytes:
        raise PayloadTooLarge()

    request = dataclasses.replace(_request(b"")[0], read_body=too_large)
    error = await _refused(intake, NAME, request)
    assert error.status_code == 413
    assert connections.calls == 0


@pytest.mark.parametrize("outcome", ["unknown_tenant", "not_enabled", "invalid_config"])
async def test_no_usable_connection_answers_exactly_like_a_bad_signature(
    outcome: LookupOutcome,
) -> None:
    publisher = FakePublisher()
    missing = _intake(FakeConnections(outcome), FakeDedupe(), publisher)
    signed_wrong = _intake(FakeConnections(_connection()), FakeDedupe(), publisher)
    body = events_body("e1")

    no_connection = await _refused(missing, NAME, _request(body)[0])
    bad_signature = await _refused(
        signed_wrong, NAME, _request(body, signed=False, headers=[("x-test-signature", "ab")])[0]
    )

    assert vars(no_connection) == vars(bad_signature)
    assert no_connection.status_code == 401
    assert publisher.sent == []


async def test_a_malformed_tenant_id_is_401_without_a_lookup() -> None:
    connections = FakeConnections(_connection())
    intake = _intake(connections, FakeDedupe(), FakePublisher())
    with pytest.raises(ServiceError) as raised:
        await intake.receive(NAME, "bad tenant!", _request(b"{}")[0])
    assert raised.value.status_code == 401
    assert connections.calls == 0


async def test_a_source_outside_the_allowlist_is_403_before_the_signature() -> None:
    publisher = FakePublisher()
    intake = _intake(
        FakeConnections(_connection(ip_allowlist=["203.0.113.0/24"])), FakeDedupe(), publisher
    )
    unsigned, _ = _request(events_body("e1"), signed=False, peer="198.51.100.1")
    assert (await _refused(intake, NAME, unsigned)).status_code == 403
    inside = await intake.receive(NAME, TENANT, _request(events_body("e1"), peer="203.0.113.5")[0])
    assert inside.accepted == 1


async def test_a_body_that_does_not_parse_is_400_only_once_authenticated() -> None:
    publisher = FakePublisher()
    intake = _intake(FakeConnections(_connection()), FakeDedupe(), publisher)
    unsigned = await _refused(intake, NAME, _request(b"{oops", signed=False)[0])
    signed = await _refused(intake, NAME, _request(b"{oops")[0])
    assert (unsigned.status_code, signed.status_code) == (401, 400)
    assert signed.code == "malformed_payload"
    assert publisher.sent == []


async def test_an_adapter_reason_that_is_not_a_label_is_counted_as_auth_failed() -> None:
    class Odd:
        def verify(self, request: InboundRequest, config: HmacInbound) -> None:
            raise InboundAuthError("Not A Label {x}", "odd")

        def highlights(self, request: InboundRequest, config: HmacInbound) -> list[Any]:
            return []

    spec = ConnectorSpec.of(SPEC.sink_class, SPEC.api_options, inbound=Odd())
    intake = _intake(FakeConnections(_connection()), FakeDedupe(), FakePublisher())
    before = _count("auth_failed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("processors.inbound.intake.registered", lambda: {NAME: spec})
        error = await _refused(intake, NAME, _request(b"{}")[0])
    assert error.status_code == 401
    assert _count("auth_failed") == before + 1


# -- the URL the adapter verifies -----------------------------------------------------------


async def test_the_adapter_sees_the_public_base_url_with_the_raw_path_and_query() -> None:
    intake = _intake(FakeConnections(_connection()), FakeDedupe(), FakePublisher())
    path = f"/webhooks/{NAME}/{TENANT}"
    request, _ = _request(events_body("q"), path=path, query="a=%20b&c=d")
    assert (await intake.receive(NAME, TENANT, request)).accepted == 1


async def test_without_a_public_base_url_the_api_s_own_base_url_is_used() -> None:
    publisher = FakePublisher()
    intake = InboundIntake(
        connections=FakeConnections(_connection()),
        dedupe=FakeDedupe(),
        publisher=publisher,
        settings=IntakeSettings(),
        topic="t",
        clock=lambda: NOW,
    )
    body = events_body("own")
    own = "http://internal:8000"
    request, _ = _request(
        body,
        signed=False,
        headers=[("x-test-signature", sign(SECRET, "POST", own + PATH, body))],
    )
    assert (await intake.receive(NAME, TENANT, request)).accepted == 1


# -- the client address ---------------------------------------------------------------------

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("198.51.100.7", ["203.0.113.9"], "198.51.100.7"),  # untrusted peer: XFF ignored
        ("10.0.0.5", [], "10.0.0.5"),
        ("10.0.0.5", ["203.0.113.9"], "203.0.113.9"),
        ("10.0.0.5", ["198.51.100.7, 203.0.113.9, 10.0.0.6"], "203.0.113.9"),
        ("10.0.0.5", ["198.51.100.7", "203.0.113.9"], "203.0.113.9"),  # repeated headers
        ("10.0.0.5", ["10.1.1.1, 10.0.0.6"], "10.1.1.1"),  # every hop trusted: the leftmost
        ("10.0.0.5", ["garbage, 10.0.0.6"], None),
        ("10.0.0.5", ["203.0.113.9:4711"], "203.0.113.9"),
        ("10.0.0.5", ["[2001:db8::1]:443"], "2001:db8::1"),
        ("::ffff:10.0.0.5", ["203.0.113.9"], "203.0.113.9"),
        ("fd00::1", ["2001:db8::2"], "2001:db8::2"),
        (None, ["203.0.113.9"], None),
    ],
)
def test_the_client_address_walks_forwarded_for_from_the_right_past_trusted_hops(
    peer: str | None, forwarded: list[str], expected: str | None
) -> None:
    found = client_address(peer, forwarded, TRUSTED)
    assert (str(found) if found is not None else None) == expected


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert str(client_address("10.0.0.5", ["203.0.113.9"], ())) == "10.0.0.5"


# -- ids, the block's model, settings -------------------------------------------------------


def test_inbound_ids_are_deterministic_and_match_the_record_pattern() -> None:
    one = inbound_id("t", "c", "e")
    assert one == inbound_id("t", "c", "e")
    assert len({one, inbound_id("t", "c", "e2"), inbound_id("t2", "c", "e")}) == 3
    assert one.startswith("in_")
    assert len(one) == 35


def test_the_block_model_comes_from_the_config_field_else_the_adapter_else_the_base() -> None:
    assert inbound_model(SPEC) is HmacInbound

    class Loose:
        def verify(self, request: InboundRequest, config: HmacInbound) -> None: ...

        def highlights(self, request: InboundRequest, config: HmacInbound) -> list[Any]:
            return []

    loose = ConnectorSpec.of(PLAIN_SPEC.sink_class, SPEC.api_options, inbound=Loose())
    assert inbound_model(loose) is HmacInbound
    assert inbound_model(PLAIN_SPEC) is InboundSettings


def test_intake_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QI_PUBLIC_BASE_URL", "https://hooks.example.com/queast/")
    monkeypatch.setenv("QI_TRUSTED_PROXIES", json.dumps(["10.0.0.0/8", "fd00::/8"]))
    settings = IntakeSettings()
    assert settings.public_base_url == "https://hooks.example.com/queast"
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "fd00::/8"]
    # the default dedupe window outlasts HubSpot's documented retries (a configuration fact)
    hubspot_retry_window = 24 * 3600
    assert settings.inbound_dedupe_ttl_seconds > hubspot_retry_window


@pytest.mark.parametrize("url", ["ftp://x", "https://x/?a=1", "https://x/#f", "hooks.example.com"])
def test_a_public_base_url_with_a_query_or_another_scheme_is_refused(url: str) -> None:
    with pytest.raises(ValidationError):
        IntakeSettings(public_base_url=url)

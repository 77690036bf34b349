from __future__ import annotations

import json
import time
from datetime import datetime, tzinfo
from typing import Any

import pytest
import standardwebhooks.webhooks
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from connectors.base import USER_AGENT, PermanentError
from connectors.webhook.payloads import build_body, build_webhook_request, sign
from tests.unit.connectors.fakes import make_record

# PARTNERS.md section d, vector S1 (standard-webhooks python tests).
S1_SECRET = SecretStr("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
S1_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
S1_TIMESTAMP = 1614265330
S1_BODY = b'{"test": 2432232314}'
S1_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
S1_BAD_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="


def test_vector_s1_signature() -> None:
    assert sign(secret=S1_SECRET, message_id=S1_ID, timestamp=S1_TIMESTAMP, body=S1_BODY) == (
        S1_SIGNATURE
    )


class _FrozenAtS1(datetime):
    @classmethod
    def now(cls, tz: tzinfo | None = None) -> _FrozenAtS1:
        return cls.fromtimestamp(S1_TIMESTAMP, tz=tz)


@pytest.fixture
def _frozen_at_s1(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference verifier checks ±5 min against the real clock: freeze it in 2021."""
    monkeypatch.setattr(standardwebhooks.webhooks, "datetime", _FrozenAtS1)


def _verify_s1(signature: str) -> None:
    headers = {
        "webhook-id": S1_ID,
        "webhook-timestamp": str(S1_TIMESTAMP),
        "webhook-signature": signature,
    }
    Webhook(S1_SECRET.get_secret_value()).verify(S1_BODY, headers)


@pytest.mark.usefixtures("_frozen_at_s1")
def test_vector_s1_verifies() -> None:
    _verify_s1(S1_SIGNATURE)


@pytest.mark.usefixtures("_frozen_at_s1")
def test_vector_s1_with_last_character_changed_fails() -> None:
    with pytest.raises(WebhookVerificationError):
        _verify_s1(S1_BAD_SIGNATURE)


@pytest.mark.usefixtures("_frozen_at_s1")
def test_vector_s1_passes_among_other_signatures() -> None:
    _verify_s1(f"v2,bogus v1,aGVsbG8= {S1_SIGNATURE}")


def test_vector_s1_is_refused_by_the_real_clock_as_too_old() -> None:
    with pytest.raises(WebhookVerificationError, match="too old"):
        _verify_s1(S1_SIGNATURE)


def test_body_is_compact_sorted_utf8_json() -> None:
    record = make_record(
        event_type="company.upserted",
        occurred_at="2026-11-26T05:00:00Z",
        payload={"name": "Café Ünïcode", "b": [1, 2.5, None, True], "a": {"z": 1, "y": 2}},
    )
    assert (
        build_body(record)
        == (
            '{"data":{"a":{"y":2,"z":1},"b":[1,2.5,null,true],"name":"Café Ünïcode"},'
            '"timestamp":"2026-11-26T05:00:00Z","type":"company.upserted"}'
        ).encode()
    )


def test_body_is_deterministic_whatever_the_key_order() -> None:
    first = make_record(payload={"a": 1, "b": 2})
    second = make_record(payload={"b": 2, "a": 1})
    assert build_body(first) == build_body(second)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {1, 2}, "\ud800"])
def test_a_payload_that_is_not_json_is_permanent(value: object) -> None:
    with pytest.raises(PermanentError, match="not JSON-serialisable"):
        build_body(make_record(payload={"value": value}))


def test_request_headers() -> None:
    record = make_record(idempotency_key="ik_abc", correlation_id="corr-9")
    request = build_webhook_request(record, secret=S1_SECRET, attempt_timestamp=1_700_000_123)
    assert dict(request.headers) == {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": "ik_abc",
        "webhook-timestamp": "1700000123",
        "webhook-signature": sign(
            secret=S1_SECRET, message_id="ik_abc", timestamp=1_700_000_123, body=request.body
        ),
        "x-correlation-id": "corr-9",
    }


def test_a_copy_sent_by_an_operator_run_names_the_run_and_keeps_its_webhook_id() -> None:
    record = make_record(idempotency_key="ik_abc").model_copy(update={"replay_id": "rp_7"})
    request = build_webhook_request(record, secret=S1_SECRET, attempt_timestamp=1)
    assert request.headers["x-queast-replay-id"] == "rp_7"
    assert request.headers["webhook-id"] == "ik_abc"
    plain = build_webhook_request(make_record(), secret=S1_SECRET, attempt_timestamp=1)
    assert "x-queast-replay-id" not in plain.headers


def test_an_unsafe_correlation_id_is_left_out() -> None:
    record = make_record(correlation_id="bad\r\nheader")
    request = build_webhook_request(record, secret=S1_SECRET, attempt_timestamp=1)
    assert "x-correlation-id" not in request.headers


@pytest.mark.parametrize("key", ["t_42.company.7", "has space", "a,b", ""])
def test_an_idempotency_key_unusable_as_webhook_id_is_permanent(key: str) -> None:
    with pytest.raises(PermanentError, match="webhook-id"):
        sign(secret=S1_SECRET, message_id=key, timestamp=1, body=b"{}")


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(exclude_categories=["Cs"])),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=75, deadline=None)
@given(payload=st.dictionaries(st.text(max_size=8), _json, max_size=5))
def test_any_json_payload_round_trips_and_verifies(payload: dict[str, Any]) -> None:
    record = make_record(payload=payload)
    now = int(time.time())
    request = build_webhook_request(record, secret=S1_SECRET, attempt_timestamp=now)
    parsed = Webhook(S1_SECRET.get_secret_value()).verify(request.body, dict(request.headers))
    assert parsed == json.loads(request.body)
    assert parsed["data"] == payload
    assert parsed["type"] == record.event_type


def test_the_routing_idempotency_key_format_is_a_valid_webhook_id() -> None:
    key = "qik_" + "0123456789abcdef" * 2  # processors.routing.idempotency: qik_ + 32 hex
    assert sign(secret=S1_SECRET, message_id=key, timestamp=1, body=b"{}").startswith("v1,")

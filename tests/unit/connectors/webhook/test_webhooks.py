"""Inbound Standard Webhooks: the signature check and the interest payload."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError
from standardwebhooks.webhooks import Webhook

from connectors.base.inbound import InboundAuthError, InboundPayloadError, InboundRequest
from connectors.registry import get_connector
from connectors.webhook.config import WebhookConnectionConfig, WebhookInbound
from connectors.webhook.webhooks import (
    WebhookInboundAdapter,
    WebhookSignatureError,
    verify,
)

# PARTNERS.md section d, vector S1 (the standard-webhooks libraries' tests).
S1_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
S1_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
S1_TIMESTAMP = 1614265330
S1_BODY = b'{"test": 2432232314}'
S1_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
S1_BAD_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="

# Derived by hand: key bytes 0..31, HMAC-SHA256 over b"msg_queast_0001.1767225600." + body.
PINNED_SECRET = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
PINNED_ID = "msg_queast_0001"
PINNED_TIMESTAMP = 1767225600
PINNED_BODY = (
    b'{"data":{"company":{"domain":"acme.example"}},'
    b'"timestamp":"2026-01-01T00:00:00Z","type":"company.interest"}'
)
PINNED_SIGNATURE = "v1,Y5KYKtrPDSRP0VxPAATM3cOIKCPaU4fzuLNha/6ztGc="

OTHER_SECRET = "whsec_" + base64.b64encode(b"another key of 24+ bytes!!").decode()


def headers(
    *, msg_id: str = S1_ID, timestamp: int | str = S1_TIMESTAMP, signature: str = S1_SIGNATURE
) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def signed(
    body: bytes, *, secret: str = PINNED_SECRET, msg_id: str = "msg_1", at: int = PINNED_TIMESTAMP
) -> dict[str, str]:
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(at, tz=UTC), body)
    return headers(msg_id=msg_id, timestamp=at, signature=signature)


def reason(exc: pytest.ExceptionInfo[WebhookSignatureError]) -> str:
    return exc.value.reason


# --- vectors -------------------------------------------------------------------------------


def test_s1_vector_verifies_at_its_own_time() -> None:
    verify(secret=S1_SECRET, headers=headers(), body=S1_BODY, now=S1_TIMESTAMP)


def test_s1_vector_with_the_last_character_changed_is_refused() -> None:
    with pytest.raises(WebhookSignatureError) as exc:
        verify(
            secret=S1_SECRET,
            headers=headers(signature=S1_BAD_SIGNATURE),
            body=S1_BODY,
            now=S1_TIMESTAMP,
        )
    assert reason(exc) == "bad_signature"


def test_pinned_vector_matches_a_hand_computed_hmac() -> None:
    key = base64.b64decode(PINNED_SECRET.removeprefix("whsec_"))
    content = f"{PINNED_ID}.{PINNED_TIMESTAMP}.".encode() + PINNED_BODY
    by_hand = "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    assert by_hand == PINNED_SIGNATURE
    verify(
        secret=PINNED_SECRET,
        headers=headers(msg_id=PINNED_ID, timestamp=PINNED_TIMESTAMP, signature=PINNED_SIGNATURE),
        body=PINNED_BODY,
        now=PINNED_TIMESTAMP + 10,
    )


def test_library_signed_requests_verify() -> None:
    body = b'{"type":"company.interest"}'
    verify(secret=PINNED_SECRET, headers=signed(body), body=body, now=PINNED_TIMESTAMP)


def test_unpadded_secret_verifies() -> None:
    verify(
        secret=PINNED_SECRET.rstrip("="),
        headers=headers(msg_id=PINNED_ID, timestamp=PINNED_TIMESTAMP, signature=PINNED_SIGNATURE),
        body=PINNED_BODY,
        now=PINNED_TIMESTAMP,
    )


def test_header_names_are_case_insensitive() -> None:
    mixed = {key.title(): value for key, value in headers().items()}
    verify(secret=S1_SECRET, headers=mixed, body=S1_BODY, now=S1_TIMESTAMP)


# --- multiple signatures -------------------------------------------------------------------


def test_any_one_v1_signature_of_several_is_enough() -> None:
    header = f"v1,Zm9v v2,{S1_SIGNATURE[3:]} v1a,aGVsbG8= {S1_SIGNATURE} v1,YmFy"
    verify(secret=S1_SECRET, headers=headers(signature=header), body=S1_BODY, now=S1_TIMESTAMP)


def test_a_matching_value_under_another_version_is_not_trusted() -> None:
    header = f"v2,{S1_SIGNATURE[3:]} v1a,{S1_SIGNATURE[3:]}"
    with pytest.raises(WebhookSignatureError) as exc:
        verify(secret=S1_SECRET, headers=headers(signature=header), body=S1_BODY, now=S1_TIMESTAMP)
    assert reason(exc) == "bad_signature"


def test_too_many_signatures_are_refused() -> None:
    header = " ".join(["v1,Zm9v"] * 16 + [S1_SIGNATURE])
    with pytest.raises(WebhookSignatureError) as exc:
        verify(secret=S1_SECRET, headers=headers(signature=header), body=S1_BODY, now=S1_TIMESTAMP)
    assert reason(exc) == "malformed_signature"


# --- forged, stale, future, missing --------------------------------------------------------


def test_wrong_secret_is_refused() -> None:
    with pytest.raises(WebhookSignatureError) as exc:
        verify(secret=OTHER_SECRET, headers=headers(), body=S1_BODY, now=S1_TIMESTAMP)
    assert reason(exc) == "bad_signature"


@pytest.mark.parametrize(
    "body", [S1_BODY + b" ", b'{"test": 2432232315}', b"", S1_BODY.replace(b" ", b"")]
)
def test_a_changed_body_is_refused(body: bytes) -> None:
    with pytest.raises(WebhookSignatureError) as exc:
        verify(secret=S1_SECRET, headers=headers(), body=body, now=S1_TIMESTAMP)
    assert reason(exc) == "bad_signature"


def test_the_signed_id_and_timestamp_are_bound() -> None:
    with pytest.raises(WebhookSignatureError):
        verify(
            secret=S1_SECRET, headers=headers(msg_id="msg_other"), body=S1_BODY, now=S1_TIMESTAMP
        )
    with pytest.raises(WebhookSignatureError):
        verify(
            secret=S1_SECRET,
            headers=headers(timestamp=S1_TIMESTAMP + 1),
            body=S1_BODY,
            now=S1_TIMESTAMP,
        )


@pytest.mark.parametrize(
    ("offset", "expected"),
    [(301, "stale_timestamp"), (-301, "future_timestamp"), (86_400 * 365, "stale_timestamp")],
)
def test_timestamps_outside_five_minutes_are_refused(offset: int, expected: str) -> None:
    with pytest.raises(WebhookSignatureError) as exc:
        verify(secret=S1_SECRET, headers=headers(), body=S1_BODY, now=S1_TIMESTAMP + offset)
    assert reason(exc) == expected


@pytest.mark.parametrize("offset", [300, -300, 0])
def test_timestamps_at_the_edge_of_the_window_pass(offset: int) -> None:
    verify(secret=S1_SECRET, headers=headers(), body=S1_BODY, now=S1_TIMESTAMP + offset)


@pytest.mark.parametrize("now", [float("nan"), float("inf"), float("-inf")])
def test_a_clock_that_is_not_a_time_refuses_instead_of_accepting(now: float) -> None:
    with pytest.raises(WebhookSignatureError) as exc:
        verify(secret=S1_SECRET, headers=headers(), body=S1_BODY, now=now)
    assert reason(exc) in {"stale_timestamp", "future_timestamp"}


def test_tolerance_is_the_callers() -> None:
    with pytest.raises(WebhookSignatureError) as exc:
        verify(
            secret=S1_SECRET,
            headers=headers(),
            body=S1_BODY,
            now=S1_TIMESTAMP + 61,
            tolerance_seconds=60,
        )
    assert reason(exc) == "stale_timestamp"


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_headers_are_refused(missing: str) -> None:
    partial = {k: v for k, v in headers().items() if k != missing}
    with pytest.raises(WebhookSignatureError) as exc:
        verify(secret=S1_SECRET, headers=partial, body=S1_BODY, now=S1_TIMESTAMP)
    assert reason(exc) == "missing_signature"
    empty = {**headers(), missing: ""}
    with pytest.raises(WebhookSignatureError):
        verify(secret=S1_SECRET, headers=empty, body=S1_BODY, now=S1_TIMESTAMP)


@pytest.mark.parametrize(
    "timestamp", [f"{S1_TIMESTAMP}.0", f" {S1_TIMESTAMP}", f"{S1_TIMESTAMP}\n", "-1", "1e9", "nan"]
)
def test_timestamps_that_are_not_integer_seconds_are_refused(timestamp: str) -> None:
    # The library itself would accept some of these (it float()s the header).
    with pytest.raises(WebhookSignatureError) as exc:
        verify(
            secret=S1_SECRET, headers=headers(timestamp=timestamp), body=S1_BODY, now=S1_TIMESTAMP
        )
    assert reason(exc) == "malformed_signature"


@pytest.mark.parametrize("msg_id", ["msg.1", "msg 1", "msg,1", "x" * 257, "msg\u00e9"])
def test_ids_the_spec_forbids_are_refused(msg_id: str) -> None:
    with pytest.raises(WebhookSignatureError) as exc:
        verify(secret=S1_SECRET, headers=headers(msg_id=msg_id), body=S1_BODY, now=S1_TIMESTAMP)
    assert reason(exc) == "malformed_signature"


def test_errors_never_carry_the_secret_or_headers() -> None:
    with pytest.raises(WebhookSignatureError) as exc:
        verify(secret=S1_SECRET, headers=headers(), body=S1_BODY, now=S1_TIMESTAMP + 10_000)
    text = str(exc.value)
    assert S1_SECRET not in text
    assert S1_SIGNATURE[3:] not in text
    assert isinstance(exc.value, InboundAuthError)


def test_a_malformed_secret_is_the_callers_error() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        verify(secret="not-a-secret", headers=headers(), body=S1_BODY, now=S1_TIMESTAMP)


REASONS = {
    "missing_signature",
    "malformed_signature",
    "stale_timestamp",
    "future_timestamp",
    "bad_signature",
}
_HEADER_TEXT = st.text(st.characters(codec="latin-1"), max_size=80)


@settings(max_examples=300, deadline=None)
@given(
    header_values=st.dictionaries(
        st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature", "x-other"]),
        _HEADER_TEXT | st.just(str(S1_TIMESTAMP)) | st.just(S1_SIGNATURE) | st.just(S1_ID),
    ),
    body=st.binary(max_size=200),
    now=st.floats(min_value=0, max_value=4e9),
)
def test_verify_raises_only_its_error(
    header_values: dict[str, str], body: bytes, now: float
) -> None:
    refused: WebhookSignatureError | None = None
    try:
        verify(secret=S1_SECRET, headers=header_values, body=body, now=now)
    except WebhookSignatureError as exc:
        refused = exc
    if refused is not None:
        assert refused.reason in REASONS
    else:  # only the genuine request passes
        assert body == S1_BODY
        assert S1_SIGNATURE in header_values["webhook-signature"].split(" ")


# --- the adapter ---------------------------------------------------------------------------

ADAPTER = WebhookInboundAdapter()
CONFIG = WebhookInbound(enabled=True, secret=SecretStr(PINNED_SECRET))


def interest_body(**overrides: Any) -> bytes:
    body: dict[str, Any] = {
        "type": "company.interest",
        "timestamp": "2026-01-01T00:00:00Z",
        "data": {
            "company": {"domain": "acme.example", "name": "Acme", "partner_object_id": "p-1"},
            "note": "met at the fair",
        },
    }
    body.update(overrides)
    return json.dumps(body).encode()


def request(body: bytes, *, msg_id: str = "msg_1", at: int = PINNED_TIMESTAMP) -> InboundRequest:
    return InboundRequest(
        method="POST",
        url="https://queast.example/webhooks/webhook/t1",
        headers=signed(body, msg_id=msg_id, at=at),
        body=body,
        received_at=float(at),
    )


def test_adapter_verifies_with_the_request_clock() -> None:
    ADAPTER.verify(request(interest_body()), CONFIG)
    late = request(interest_body())
    stale = InboundRequest(
        method=late.method,
        url=late.url,
        headers=late.headers,
        body=late.body,
        received_at=late.received_at + 301,
    )
    with pytest.raises(WebhookSignatureError):
        ADAPTER.verify(stale, CONFIG)
    other = WebhookInbound(enabled=True, secret=SecretStr(OTHER_SECRET))
    with pytest.raises(WebhookSignatureError):
        ADAPTER.verify(request(interest_body()), other)


def test_an_interest_is_one_highlight_keyed_by_the_webhook_id() -> None:
    [highlight] = ADAPTER.highlights(request(interest_body(), msg_id="msg_abc"), CONFIG)
    assert highlight.partner_event_id == "msg_abc"
    assert highlight.occurred_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert highlight.company.domain == "acme.example"
    assert highlight.company.name == "Acme"
    assert highlight.company.partner_object_id == "p-1"
    assert highlight.company.queast_company_id is None
    assert highlight.note == "met at the fair"


def test_the_same_message_retried_has_the_same_identity() -> None:
    body = interest_body()
    first = ADAPTER.highlights(request(body, msg_id="msg_r", at=PINNED_TIMESTAMP), CONFIG)
    retry = ADAPTER.highlights(request(body, msg_id="msg_r", at=PINNED_TIMESTAMP + 60), CONFIG)
    assert first == retry


def test_other_event_types_give_no_highlight() -> None:
    body = interest_body(type="invoice.paid", data={"anything": [1, 2, {"x": None}]})
    assert ADAPTER.highlights(request(body), CONFIG) == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"type":"company.interest"}',
        interest_body(timestamp="yesterday"),
        interest_body(timestamp="2026-01-01T00:00:00"),  # no offset
        interest_body(timestamp=1767225600),
        interest_body(extra=1),
        interest_body(data={"company": {}}),
        interest_body(data={"company": {"name": "   "}}),
        interest_body(data={"company": {"domain": "a" * 254}}),
        interest_body(data={"company": {"name": "x" * 501}}),
        interest_body(data={"company": {"name": "Acme", "industry": "x"}}),
        interest_body(data={"company": {"name": 7}}),
        interest_body(data={"company": {"name": "Acme"}, "note": "n" * 2001}),
        interest_body(data={"company": {"name": "Acme"}, "score": 1}),
        interest_body(data=[]),
        interest_body(type=""),
        interest_body(type="t" * 129),
    ],
)
def test_malformed_bodies_are_payload_errors(body: bytes) -> None:
    with pytest.raises(InboundPayloadError) as exc:
        ADAPTER.highlights(request(body), CONFIG)
    assert "Acme" not in str(exc.value)


def test_payload_errors_name_fields_not_values() -> None:
    secret_name = "Confidential Corp " * 40
    with pytest.raises(InboundPayloadError) as exc:
        ADAPTER.highlights(request(interest_body(data={"company": {"name": secret_name}})), CONFIG)
    assert "data.company.name" in str(exc.value)
    assert "Confidential" not in str(exc.value)


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=300)
    | st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
        max_leaves=20,
    ).map(lambda value: json.dumps(value).encode())
    | st.fixed_dictionaries(
        {
            "type": st.sampled_from(["company.interest", "other"]) | st.text(max_size=5),
            "timestamp": st.sampled_from(["2026-01-01T00:00:00Z", "x", ""]),
            "data": st.dictionaries(
                st.sampled_from(["company", "note", "x"]),
                st.dictionaries(
                    st.sampled_from(["domain", "name", "queast_company_id", "y"]),
                    st.text(max_size=30) | st.integers(),
                )
                | st.text(max_size=5),
            ),
        }
    ).map(lambda value: json.dumps(value).encode())
)
def test_highlights_raise_only_payload_errors(body: bytes) -> None:
    try:
        found = ADAPTER.highlights(request(body), CONFIG)
    except InboundPayloadError:
        return
    assert len(found) <= 1


# --- the config block ----------------------------------------------------------------------


def test_inbound_block_takes_a_whsec_secret_and_never_echoes_it() -> None:
    block = WebhookInbound.model_validate(
        {"enabled": True, "secret": PINNED_SECRET, "ip_allowlist": ["192.0.2.0/24"]}
    )
    assert block.secret.get_secret_value() == PINNED_SECRET
    assert PINNED_SECRET not in repr(block)
    for bad in ["whsec_short", "hunter2-plain", "whsec_" + "!" * 40]:
        with pytest.raises(ValidationError) as exc:
            WebhookInbound.model_validate({"secret": bad})
        assert bad not in str(exc.value)


def test_the_connection_config_takes_an_inbound_block_and_seals_its_secret() -> None:
    config = WebhookConnectionConfig.validate_for_connection(
        {
            "url": "https://hooks.example/in",
            "secret": PINNED_SECRET,
            "inbound": {"enabled": True, "secret": OTHER_SECRET},
        }
    )
    assert config.inbound is not None
    assert config.inbound.enabled
    assert "secret" in WebhookConnectionConfig.secret_field_names()
    assert OTHER_SECRET not in json.dumps(config.redacted())


def test_the_webhook_connector_registers_its_adapter() -> None:
    assert isinstance(get_connector("webhook").inbound, WebhookInboundAdapter)

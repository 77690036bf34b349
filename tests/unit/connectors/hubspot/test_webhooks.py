"""Inbound HubSpot webhooks: v1, v2 and v3 signatures (the documented vectors, the URI decoding
table, the 5-minute window), and company interest from webhook batches."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from connectors.base.inbound import InboundAuthError, InboundPayloadError, InboundRequest
from connectors.hubspot.api import HubSpotInboundIn
from connectors.hubspot.config import HubSpotConnectionConfig, HubSpotInbound
from connectors.hubspot.webhooks import (
    HubSpotInboundAdapter,
    HubSpotSignatureError,
    legacy_headers,
    signature_v1,
    signature_v2,
    signature_v3,
    signed_headers,
    v3_uri,
    verify,
)
from connectors.registry import get_connector

# The documented vectors (PARTNERS.md b, "Test vectors": H2, H4, H5).
SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
URI = "https://www.example.com/webhook_uri"
EXAMPLE_BODY = b"{'example_field':'example_value'}"
H2_V1 = "69fc6631a867edd4f9e9e627fc5c1148e3fbdd8b21837b6d2b8901c1fa57f750"
H4_V2 = "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
H5_V3 = "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y="
H5_TIMESTAMP = "1693657560000"
H5_NOW = 1693657560.0 + 30  # the frozen clock: 30 seconds after HubSpot signed

CONFIG = HubSpotInbound(
    enabled=True, client_secret=SecretStr(SECRET), interest_values=["true", "hot"]
)
ADAPTER = HubSpotInboundAdapter()
NOW = 1_764_000_000.0
INTAKE_URL = "https://queast.example/webhooks/hubspot/t_42"


def reason_of(**kwargs: Any) -> str:
    arguments: dict[str, Any] = {
        "client_secret": SECRET,
        "method": "POST",
        "uri": URI,
        "body": EXAMPLE_BODY,
        "headers": {},
        "now": H5_NOW,
    }
    arguments.update(kwargs)
    with pytest.raises(HubSpotSignatureError) as refused:
        verify(**arguments)
    return refused.value.reason


def v3_headers(timestamp: str = H5_TIMESTAMP, signature: str = H5_V3) -> dict[str, str]:
    return {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": timestamp}


# --- the documented vectors ----------------------------------------------------------------


def test_the_signature_functions_give_the_documented_vectors() -> None:
    assert signature_v1(SECRET, EXAMPLE_BODY) == H2_V1
    assert signature_v2(SECRET, "GET", URI, b"") == H4_V2
    assert signature_v3(SECRET, "POST", URI, EXAMPLE_BODY, H5_TIMESTAMP) == H5_V3


def test_h2_v1_verifies() -> None:
    headers = {"X-HubSpot-Signature": H2_V1, "X-HubSpot-Signature-Version": "v1"}
    verify(client_secret=SECRET, method="POST", uri=URI, body=EXAMPLE_BODY, headers=headers, now=0)


def test_h4_v2_verifies() -> None:
    headers = {"X-HubSpot-Signature": H4_V2, "X-HubSpot-Signature-Version": "v2"}
    verify(client_secret=SECRET, method="GET", uri=URI, body=b"", headers=headers, now=0)


def test_h5_v3_verifies_with_a_frozen_clock() -> None:
    verify(
        client_secret=SECRET,
        method="POST",
        uri=URI,
        body=EXAMPLE_BODY,
        headers=v3_headers(),
        now=H5_NOW,
    )


def test_h5_v3_is_stale_by_the_real_clock() -> None:
    assert reason_of(headers=v3_headers(), now=datetime.now(UTC).timestamp()) == "stale_timestamp"


def test_the_adapter_verifies_h5_from_the_request() -> None:
    request = InboundRequest(
        method="POST",
        url=URI,
        headers={k.lower(): v for k, v in v3_headers().items()},
        body=EXAMPLE_BODY,
        received_at=H5_NOW,
    )
    ADAPTER.verify(request, CONFIG)


# --- the v3 URI decoding table -------------------------------------------------------------

TABLE = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}


@pytest.mark.parametrize(("escape", "character"), sorted(TABLE.items()))
def test_each_escape_of_the_table_is_decoded(escape: str, character: str) -> None:
    uri = f"https://queast.example/webhooks/hubspot/t_42?next=a{escape}b"
    assert v3_uri(uri) == f"https://queast.example/webhooks/hubspot/t_42?next=a{character}b"
    assert v3_uri(uri.replace(escape, escape.lower())) == v3_uri(uri)


@pytest.mark.parametrize("escape", ["%20", "%26", "%3D", "%25", "%2B", "%23", "%5B"])
def test_escapes_outside_the_table_stay_encoded(escape: str) -> None:
    uri = f"https://queast.example/hook?q=a{escape}b"
    assert v3_uri(uri) == uri


def test_the_query_is_kept_in_order_and_its_question_mark_untouched() -> None:
    uri = "https://queast.example/hook?z=1&a=%3A&m=x%20y&b=%3D"
    assert v3_uri(uri) == "https://queast.example/hook?z=1&a=:&m=x%20y&b=%3D"


def test_decoding_is_one_pass() -> None:
    assert v3_uri("https://q.example/hook?a=%253A") == "https://q.example/hook?a=%253A"


def test_v3_signs_the_decoded_uri() -> None:
    called = "https://queast.example/hook?from=a%40b.example&note=x%20y"
    decoded = "https://queast.example/hook?from=a@b.example&note=x%20y"
    headers = signed_headers(SECRET, "POST", called, b"[]", now=NOW)
    verify(client_secret=SECRET, method="POST", uri=called, body=b"[]", headers=headers, now=NOW)
    assert headers["X-HubSpot-Signature-v3"] == signature_v3(
        SECRET, "POST", decoded, b"[]", headers["X-HubSpot-Request-Timestamp"]
    )
    # A signer that decoded %20 too (or nothing) does not match.
    fully = signature_v3(
        SECRET, "POST", "https://queast.example/hook?from=a@b.example&note=x y", b"[]", "1"
    )
    assert fully != signature_v3(SECRET, "POST", called, b"[]", "1")


def test_v2_signs_the_uri_verbatim() -> None:
    called = "https://queast.example/hook?from=a%40b.example"
    headers = {
        "X-HubSpot-Signature": signature_v2(SECRET, "POST", called, b"[]"),
        "X-HubSpot-Signature-Version": "v2",
    }
    verify(client_secret=SECRET, method="POST", uri=called, body=b"[]", headers=headers, now=NOW)
    decoded = "https://queast.example/hook?from=a@b.example"
    refused = reason_of(uri=decoded, body=b"[]", headers=headers, now=NOW)
    assert refused == "bad_signature"


# --- the window ----------------------------------------------------------------------------


def at(offset_seconds: float) -> dict[str, str]:
    """Headers signed at ``NOW + offset_seconds``, over EXAMPLE_BODY."""
    return signed_headers(SECRET, "POST", URI, EXAMPLE_BODY, now=NOW + offset_seconds)


@pytest.mark.parametrize("offset", [0, -1, -299, 59])
def test_timestamps_inside_the_window_pass(offset: float) -> None:
    verify(
        client_secret=SECRET, method="POST", uri=URI, body=EXAMPLE_BODY, headers=at(offset), now=NOW
    )


@pytest.mark.parametrize(
    ("offset", "reason"),
    [
        (-301, "stale_timestamp"),
        (-86_400, "stale_timestamp"),
        (61, "future_timestamp"),
        (3_600, "future_timestamp"),
    ],
)
def test_timestamps_outside_the_window_are_refused(offset: float, reason: str) -> None:
    assert reason_of(headers=at(offset), now=NOW) == reason


@pytest.mark.parametrize("now", [float("nan"), float("inf"), float("-inf")])
def test_a_clock_that_is_not_a_number_refuses(now: float) -> None:
    assert reason_of(headers=at(0), now=now) in {"stale_timestamp", "future_timestamp"}


def test_the_window_is_a_parameter() -> None:
    verify(
        client_secret=SECRET,
        method="POST",
        uri=URI,
        body=EXAMPLE_BODY,
        headers=at(-400),
        now=NOW,
        max_age_seconds=600,
    )


@pytest.mark.parametrize(
    "timestamp", ["", " 1693657560000", "1693657560.0", "-1", "1e12", "x", "1" * 16, "\uff11\uff12"]
)
def test_malformed_timestamps_are_refused(timestamp: str) -> None:
    expected = "missing_signature" if timestamp == "" else "bad_timestamp"
    assert reason_of(headers=v3_headers(timestamp=timestamp)) == expected


# --- forged, missing, wrong version --------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"client_secret": "another-secret"},
        {"method": "PUT"},
        {"uri": URI + "?x=1"},
        {"body": EXAMPLE_BODY + b" "},
    ],
)
def test_a_v3_signature_over_anything_else_is_refused(change: dict[str, Any]) -> None:
    assert reason_of(headers=v3_headers(), **change) == "bad_signature"


@pytest.mark.parametrize(
    "signature",
    ["", "garbage", H5_V3[:-2], H5_V3.lower(), "A" * 300, "é" * 44, "\udcff" * 44],
)
def test_forged_v3_signatures_are_refused(signature: str) -> None:
    expected = "missing_signature" if signature == "" else "bad_signature"
    assert reason_of(headers=v3_headers(signature=signature)) == expected


def test_a_v3_signature_with_another_timestamp_is_refused() -> None:
    assert reason_of(headers=v3_headers(timestamp="1693657560001")) == "bad_signature"


def test_a_failing_v3_does_not_fall_back_to_a_matching_v1() -> None:
    headers = {
        **v3_headers(signature="forged"),
        "X-HubSpot-Signature": H2_V1,
        "X-HubSpot-Signature-Version": "v1",
    }
    assert reason_of(headers=headers) == "bad_signature"


def test_a_v3_signature_without_its_timestamp_is_missing() -> None:
    assert reason_of(headers={"X-HubSpot-Signature-v3": H5_V3}) == "missing_signature"


def test_no_signature_header_is_missing() -> None:
    assert reason_of(headers={}) == "missing_signature"
    assert reason_of(headers={"X-HubSpot-Request-Timestamp": H5_TIMESTAMP}) == "missing_signature"
    assert reason_of(headers={"X-HubSpot-Signature-Version": "v1"}) == "missing_signature"


@pytest.mark.parametrize("version", [None, "", "v0", "v3", "v4", "V 1"])
def test_legacy_signatures_of_unknown_versions_are_refused(version: str | None) -> None:
    headers = {"X-HubSpot-Signature": H2_V1}
    if version is not None:
        headers["X-HubSpot-Signature-Version"] = version
    assert reason_of(headers=headers) == "unsupported_version"


@pytest.mark.parametrize(
    ("version", "signature"),
    [("v1", H4_V2), ("v2", H2_V1), ("v1", H2_V1[:-1]), ("v1", "0" * 64), ("v1", "x" * 300)],
)
def test_forged_legacy_signatures_are_refused(version: str, signature: str) -> None:
    headers = {"X-HubSpot-Signature": signature, "X-HubSpot-Signature-Version": version}
    assert reason_of(headers=headers) == "bad_signature"


def test_legacy_signatures_can_be_refused() -> None:
    headers = {"X-HubSpot-Signature": H2_V1, "X-HubSpot-Signature-Version": "v1"}
    assert reason_of(headers=headers, accept_legacy=False) == "unsupported_version"
    verify(
        client_secret=SECRET,
        method="POST",
        uri=URI,
        body=EXAMPLE_BODY,
        headers=v3_headers(),
        now=H5_NOW,
        accept_legacy=False,
    )


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_legacy_headers_verify(version: str) -> None:
    headers = legacy_headers(SECRET, "POST", INTAKE_URL, b"[]", version=version)
    verify(client_secret=SECRET, method="POST", uri=INTAKE_URL, body=b"[]", headers=headers, now=0)
    with pytest.raises(ValueError, match="v1 or v2"):
        legacy_headers(SECRET, "POST", INTAKE_URL, b"[]", version="v3")


def test_the_adapter_applies_the_connections_legacy_setting() -> None:
    request = InboundRequest(
        method="POST",
        url=URI,
        headers={"x-hubspot-signature": H2_V1, "x-hubspot-signature-version": "v1"},
        body=EXAMPLE_BODY,
        received_at=NOW,
    )
    ADAPTER.verify(request, CONFIG)
    strict = CONFIG.model_copy(update={"accept_legacy_signatures": False})
    with pytest.raises(HubSpotSignatureError) as refused:
        ADAPTER.verify(request, strict)
    assert refused.value.reason == "unsupported_version"


@pytest.mark.parametrize(
    "headers",
    [
        {"x-hubspot-signature-v3": H5_V3, "x-hubspot-request-timestamp": H5_TIMESTAMP},
        {"X-HUBSPOT-SIGNATURE-V3": H5_V3, "X-HUBSPOT-REQUEST-TIMESTAMP": H5_TIMESTAMP},
        {"X-HubSpot-Signature-V3": H5_V3, "x-HubSpot-request-timestamp": H5_TIMESTAMP},
    ],
)
def test_header_names_are_case_insensitive(headers: dict[str, str]) -> None:
    verify(
        client_secret=SECRET, method="POST", uri=URI, body=EXAMPLE_BODY, headers=headers, now=H5_NOW
    )


def test_legacy_header_names_and_hex_are_case_insensitive() -> None:
    headers = {"x-hubspot-signature": H2_V1.upper(), "X-HUBSPOT-SIGNATURE-VERSION": "V1"}
    verify(client_secret=SECRET, method="POST", uri=URI, body=EXAMPLE_BODY, headers=headers, now=0)


def test_errors_carry_no_secret_header_or_body() -> None:
    body = b'[{"secret-looking": "body-marker-123"}]'
    for headers in (
        v3_headers(signature="header-marker-456"),
        {"X-HubSpot-Signature": "header-marker-456", "X-HubSpot-Signature-Version": "v1"},
        {"X-HubSpot-Signature": "header-marker-456", "X-HubSpot-Signature-Version": "v9-marker"},
        v3_headers(timestamp="ts-marker-789"),
    ):
        with pytest.raises(HubSpotSignatureError) as refused:
            verify(
                client_secret=SECRET, method="POST", uri=URI, body=body, headers=headers, now=NOW
            )
        text = str(refused.value) + repr(refused.value.args)
        for marker in (SECRET, "body-marker", "header-marker", "v9-marker", "ts-marker"):
            assert marker not in text
        assert isinstance(refused.value, InboundAuthError)


header_names = st.sampled_from(
    [
        "X-HubSpot-Signature-v3",
        "x-hubspot-signature-v3",
        "X-HubSpot-Request-Timestamp",
        "X-HubSpot-Signature",
        "X-HubSpot-Signature-Version",
        "content-type",
    ]
)
header_values = st.one_of(
    st.text(max_size=80),
    st.sampled_from([H5_V3, H5_TIMESTAMP, H2_V1, H4_V2, "v1", "v2", "v3", "9" * 15]),
    st.integers(min_value=0, max_value=10**15).map(str),
)


@settings(max_examples=400, deadline=None)
@given(
    headers=st.dictionaries(header_names, header_values, max_size=6),
    body=st.binary(max_size=200),
    method=st.sampled_from(["POST", "GET", "", "pOsT"]),
    uri=st.text(max_size=80),
    now=st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
    accept_legacy=st.booleans(),
)
def test_verify_raises_nothing_but_the_typed_error(
    headers: dict[str, str],
    body: bytes,
    method: str,
    uri: str,
    now: float,
    accept_legacy: bool,
) -> None:
    reason = None
    try:
        verify(
            client_secret=SECRET,
            method=method,
            uri=uri,
            body=body,
            headers=headers,
            now=now,
            accept_legacy=accept_legacy,
        )
    except HubSpotSignatureError as refused:
        reason = refused.reason
    assert reason in {
        None,
        "missing_signature",
        "bad_signature",
        "bad_timestamp",
        "stale_timestamp",
        "future_timestamp",
        "unsupported_version",
    }


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=300), offset=st.floats(min_value=-299, max_value=59))
def test_whatever_hubspot_signs_verifies(body: bytes, offset: float) -> None:
    headers = signed_headers(SECRET, "POST", INTAKE_URL, body, now=NOW + offset)
    verify(client_secret=SECRET, method="POST", uri=INTAKE_URL, body=body, headers=headers, now=NOW)


# --- highlights ----------------------------------------------------------------------------


def event(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "eventId": 3418880613,
        "subscriptionId": 1859972,
        "portalId": 27356661,
        "appId": 1109808,
        "occurredAt": 1663842379678,
        "subscriptionType": "company.propertyChange",
        "attemptNumber": 0,
        "objectId": 6355821024,
        "propertyName": "queast_interest",
        "propertyValue": "true",
        "changeSource": "CRM_UI",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def highlights(events: Any, config: HubSpotInbound = CONFIG) -> list[Any]:
    body = events if isinstance(events, bytes) else json.dumps(events).encode()
    request = InboundRequest(method="POST", url=INTAKE_URL, headers={}, body=body, received_at=NOW)
    return ADAPTER.highlights(request, config)


def test_a_property_change_of_interest_to_a_listed_value_is_a_highlight() -> None:
    [found] = highlights([event()])
    assert found.partner_event_id == "3418880613:company.propertyChange:6355821024:1663842379678"
    assert found.occurred_at == datetime(2022, 9, 22, 10, 26, 19, 678000, tzinfo=UTC)
    assert found.company.partner_object_id == "6355821024"
    assert found.company.model_dump(exclude_none=True) == {"partner_object_id": "6355821024"}
    assert found.note is None


@pytest.mark.parametrize("value", ["true", " true ", "hot", "cold;hot", "hot; warm"])
def test_listed_values_match_as_text_and_as_checkbox_options(value: str) -> None:
    assert len(highlights([event(propertyValue=value)])) == 1


@pytest.mark.parametrize("value", ["false", "", "TRUE", "truee", "cold;warm", None])
def test_a_change_to_another_value_is_no_highlight(value: str | None) -> None:
    assert highlights([event(propertyValue=value)]) == []


def test_a_change_of_another_property_is_no_highlight() -> None:
    assert highlights([event(propertyName="hubspot_owner_id", propertyValue="true")]) == []
    assert highlights([event(propertyName=None)]) == []


def test_the_interest_property_and_values_are_the_connections() -> None:
    config = HubSpotInbound(
        enabled=True,
        client_secret=SecretStr(SECRET),
        interest_property="lead_tier",
        interest_values=["a"],
    )
    assert highlights([event()], config) == []
    assert len(highlights([event(propertyName="lead_tier", propertyValue="a")], config)) == 1


@pytest.mark.parametrize(
    "subscription",
    [
        "contact.propertyChange",
        "contact.creation",
        "contact.deletion",
        "company.deletion",
        "company.merge",
        "company.restore",
        "company.associationChange",
        "deal.propertyChange",
        "object.propertyChange",
    ],
)
def test_other_events_give_nothing(subscription: str) -> None:
    assert highlights([event(subscriptionType=subscription)]) == []


def test_event_type_is_accepted_like_subscription_type() -> None:
    by_event_type = event(subscriptionType=None, eventType="company.propertyChange")
    [found] = highlights([by_event_type])
    [same] = highlights([event()])
    assert found.partner_event_id == same.partner_event_id
    both = event(eventType="company.propertyChange")
    assert len(highlights([both])) == 1


def test_generic_object_events_of_companies_count() -> None:
    generic = event(subscriptionType="object.propertyChange", objectTypeId="0-2")
    assert len(highlights([generic])) == 1
    contact = event(subscriptionType="object.propertyChange", objectTypeId="0-1")
    assert highlights([contact]) == []


def test_a_creation_is_judged_on_its_payload_only() -> None:
    plain_creation = event(
        subscriptionType="company.creation", propertyName=None, propertyValue=None
    )
    assert highlights([plain_creation]) == []
    carrying = event(subscriptionType="company.creation")
    [found] = highlights([carrying])
    assert found.partner_event_id.split(":")[1] == "company.creation"


def test_a_mixed_batch_gives_only_the_interest() -> None:
    batch = [
        event(eventId=1, objectId=11),
        event(eventId=2, objectId=12, propertyValue="false"),
        event(eventId=3, objectId=13, propertyName="name", propertyValue="true"),
        event(eventId=4, objectId=14, subscriptionType="contact.propertyChange"),
        event(eventId=5, objectId=15, subscriptionType="contact.creation"),
        event(eventId=6, objectId=16, subscriptionType=None, eventType="company.propertyChange"),
        event(eventId=7, objectId=17, subscriptionType="company.deletion"),
    ]
    found = highlights(batch)
    assert [h.company.partner_object_id for h in found] == ["11", "16"]


def test_the_event_identity_is_stable_across_retries_and_tells_events_apart() -> None:
    [first] = highlights([event(attemptNumber=0)])
    [retry] = highlights([event(attemptNumber=3, changeSource="API")])
    assert retry.partner_event_id == first.partner_event_id
    others = highlights(
        [
            event(objectId=1),
            event(occurredAt=1663842379679),
            event(subscriptionType="company.creation"),
            event(eventId=7),
        ]
    )
    ids = {h.partner_event_id for h in [first, *others]}
    assert len(ids) == 5


def test_a_batch_of_100_events_is_read_and_101_refused() -> None:
    batch = [event(eventId=i, objectId=i + 1) for i in range(100)]
    assert len(highlights(batch)) == 100
    with pytest.raises(InboundPayloadError, match="more than 100"):
        highlights([*batch, event()])


def test_an_empty_batch_gives_nothing() -> None:
    assert highlights([]) == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"{}",
        b'"text"',
        b"null",
        b"[1]",
        b"[[]]",
        b'[{"eventId": 1}]',
        b"[" * 100_000,
    ],
)
def test_bodies_that_are_not_hubspot_batches_are_refused(body: bytes) -> None:
    with pytest.raises(InboundPayloadError):
        highlights(body)


@pytest.mark.parametrize(
    "fields",
    [
        {"objectId": "6355821024"},
        {"objectId": -1},
        {"objectId": True},
        {"objectId": 1.5},
        {"objectId": 2**64},
        {"eventId": "x"},
        {"occurredAt": "2022-09-22T10:26:19Z"},
        {"occurredAt": 10**17},
        {"propertyName": 5},
        {"propertyValue": {"v": "true"}},
        {"propertyValue": ["true"]},
        {"subscriptionType": 7},
        {"subscriptionType": "x" * 200},
        {"subscriptionType": ""},
        {"subscriptionType": None, "eventType": None},
        {"eventType": "contact.creation"},
        {"changeSource": 3},
        {"objectTypeId": 2},
    ],
)
def test_bad_field_types_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(InboundPayloadError) as refused:
        highlights([event(), {**event(), **fields}])
    assert "event 1" in str(refused.value)


@pytest.mark.parametrize("missing", ["eventId", "objectId", "occurredAt"])
def test_an_interest_event_without_its_identity_is_refused(missing: str) -> None:
    incomplete = {k: v for k, v in event().items() if k != missing}
    with pytest.raises(InboundPayloadError, match=missing):
        highlights([incomplete])


def test_a_contact_event_without_identity_fields_gives_nothing() -> None:
    assert highlights([{"subscriptionType": "contact.deletion"}]) == []


def test_payload_errors_name_no_value() -> None:
    with pytest.raises(InboundPayloadError) as refused:
        highlights([event(objectId="value-marker-1")])
    assert "value-marker" not in str(refused.value)


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(["company.propertyChange", "company.creation", "queast_interest", "true"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
IDENTITY_AND_VALUE = ("objectId", "propertyValue", "occurredAt", "eventId")
event_keys = st.sampled_from(
    [
        "eventId",
        "objectId",
        "occurredAt",
        "subscriptionType",
        "eventType",
        "propertyName",
        "propertyValue",
        "objectTypeId",
        "changeSource",
        "other",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.lists(st.dictionaries(event_keys, json_values, max_size=10), max_size=5).map(
            lambda events: json.dumps(events).encode()
        ),
        json_values.map(lambda value: json.dumps(value).encode()),
        st.lists(
            st.fixed_dictionaries(
                {},
                optional=dict.fromkeys(IDENTITY_AND_VALUE, json_values),
            ).map(lambda extra: {**event(), **extra}),
            max_size=4,
        ).map(lambda events: json.dumps(events).encode()),
    )
)
def test_highlights_raise_nothing_but_the_payload_error(body: bytes) -> None:
    try:
        found = highlights(body)
    except InboundPayloadError:
        return
    for highlight in found:
        assert highlight.company.partner_object_id is not None


# --- the inbound block ---------------------------------------------------------------------


def test_the_inbound_block_defaults() -> None:
    block = HubSpotInbound.model_validate({"client_secret": SECRET})
    assert block.enabled is False
    assert block.interest_property == "queast_interest"
    assert block.interest_values == ["true"]
    assert block.accept_legacy_signatures is True
    assert block.ip_allowlist == []


@pytest.mark.parametrize(
    "change",
    [
        {"client_secret": ""},
        {"client_secret": "   "},
        {"client_secret": "s" * 257},
        {"interest_property": "Queast Interest"},
        {"interest_property": "x" * 101},
        {"interest_values": []},
        {"interest_values": ["v"] * 101},
        {"interest_values": [""]},
        {"ip_allowlist": ["not-a-network"]},
        {"unknown": True},
    ],
)
def test_malformed_inbound_blocks_are_refused(change: dict[str, Any]) -> None:
    block = {"enabled": True, "client_secret": SECRET, **change}
    with pytest.raises(ValidationError) as refused:
        HubSpotInbound.model_validate(block)
    assert SECRET not in str(refused.value)
    with pytest.raises(ValidationError):
        HubSpotInboundIn.model_validate(block)


def test_the_connection_config_takes_the_inbound_block() -> None:
    config = HubSpotConnectionConfig.validate_for_connection(
        {
            "auth": {"type": "private_app", "token": "pat-na1-x"},
            "inbound": {"enabled": True, "client_secret": SECRET, "interest_values": ["yes"]},
        }
    )
    assert config.inbound is not None
    assert config.inbound.client_secret.get_secret_value() == SECRET
    assert "client_secret" in HubSpotConnectionConfig.secret_field_names()


def test_the_hubspot_spec_names_its_inbound_adapter_and_block() -> None:
    spec = get_connector("hubspot")
    assert isinstance(spec.inbound, HubSpotInboundAdapter)
    assert spec.inbound_options is HubSpotInboundIn
    assert "inbound" not in spec.option_names

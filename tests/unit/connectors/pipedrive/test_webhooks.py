"""Inbound Pipedrive webhooks: Basic auth, and organization interest from v1 and v2 payloads."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from connectors.base.inbound import InboundAuthError, InboundPayloadError, InboundRequest
from connectors.pipedrive.config import PipedriveConnectionConfig, PipedriveInbound
from connectors.pipedrive.webhooks import PipedriveAuthError, PipedriveInboundAdapter, verify
from connectors.registry import get_connector

USER = "queast-hook"
PASSWORD = "correct horse battery staple"
KEY = "9f3c2a1b4d5e6f708192a3b4c5d6e7f809a1b2c3"  # a custom field key: 40 hex characters

CONFIG = PipedriveInbound(
    enabled=True,
    username=USER,
    password=SecretStr(PASSWORD),
    interest_field_key=KEY,
    interest_values=["37", "yes"],
)
ADAPTER = PipedriveInboundAdapter()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {token}"}


def check(headers: dict[str, str]) -> None:
    verify(username=USER, password=PASSWORD, headers=headers)


# --- basic auth ----------------------------------------------------------------------------


def test_the_configured_credentials_pass() -> None:
    check(basic(USER, PASSWORD))
    check({"Authorization": basic(USER, PASSWORD)["authorization"].replace("Basic", "basic")})


def test_a_password_with_a_colon_passes() -> None:
    verify(username=USER, password="a:b:c", headers=basic(USER, "a:b:c"))


def test_non_ascii_credentials_are_utf8() -> None:
    verify(username="usér", password="pässwörd", headers=basic("usér", "pässwörd"))


@pytest.mark.parametrize(
    ("user", "password"),
    [
        (USER, PASSWORD + "x"),
        (USER, PASSWORD[:-1]),
        (USER + "x", PASSWORD),
        ("", PASSWORD),
        (USER, ""),
        ("", ""),
        (PASSWORD, USER),
    ],
)
def test_wrong_credentials_are_refused(user: str, password: str) -> None:
    with pytest.raises(PipedriveAuthError) as exc:
        check(basic(user, password))
    assert exc.value.reason == "bad_credentials"
    assert PASSWORD not in str(exc.value)


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": ""}, {"x-other": "Basic x"}, {"authorization": "Bearer abc"}],
)
def test_missing_or_non_basic_authorization_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(PipedriveAuthError) as exc:
        check(headers)
    assert exc.value.reason == "missing_credentials"
    assert isinstance(exc.value, InboundAuthError)


@pytest.mark.parametrize(
    "value",
    [
        "Basic",
        "Basic !!!!",
        "Basic " + base64.b64encode(b"no colon here").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()[:-2],
        "Basic " + "QUFB" * 2000,
        "Basic dXNlcjpwYXNz\u00e9",
    ],
)
def test_garbled_basic_credentials_are_refused(value: str) -> None:
    with pytest.raises(PipedriveAuthError) as exc:
        check({"authorization": value})
    assert exc.value.reason == "bad_credentials"


@settings(max_examples=300, deadline=None)
@given(
    headers=st.dictionaries(
        st.sampled_from(["authorization", "Authorization", "x-other"]),
        st.text(max_size=60)
        | st.builds(lambda token: f"Basic {token}", st.text(max_size=40))
        | st.builds(lambda raw: "Basic " + base64.b64encode(raw).decode(), st.binary(max_size=40)),
    )
)
def test_verify_raises_only_its_error(headers: dict[str, str]) -> None:
    refused: PipedriveAuthError | None = None
    try:
        check(headers)
    except PipedriveAuthError as exc:
        refused = exc
    if refused is not None:
        assert refused.reason in {"missing_credentials", "bad_credentials"}
    else:
        assert basic(USER, PASSWORD)["authorization"] in headers.values()


def test_adapter_verifies_with_the_inbound_block() -> None:
    ADAPTER.verify(request(b"{}", headers=basic(USER, PASSWORD)), CONFIG)
    with pytest.raises(PipedriveAuthError):
        ADAPTER.verify(request(b"{}", headers=basic(USER, "nope")), CONFIG)


# --- payloads ------------------------------------------------------------------------------


def request(body: bytes, *, headers: dict[str, str] | None = None) -> InboundRequest:
    return InboundRequest(
        method="POST",
        url="https://queast.example/webhooks/pipedrive/t1",
        headers=headers or basic(USER, PASSWORD),
        body=body,
        received_at=1_767_225_600.0,
    )


def v2(
    *,
    action: str = "change",
    entity: str = "organization",
    value: Any = None,
    previous: dict[str, Any] | None = None,
    **meta: Any,
) -> dict[str, Any]:
    data: dict[str, Any] | None = {
        "id": 42,
        "name": "Acme GmbH",
        "website": "https://www.acme.example/about",
        "custom_fields": {KEY: value, "0" * 40: {"type": "varchar", "value": "other"}},
    }
    if action == "delete":
        data = None
    return {
        "meta": {
            "action": action,
            "entity": entity,
            "entity_id": "42",
            "id": "8d2b4e6a-1f3c-4a5b-9c7d-0e1f2a3b4c5d",
            "is_bulk_edit": False,
            "timestamp": "2026-01-01T10:00:00.000Z",
            "type": "general",
            "version": "2.0",
            "webhook_id": "77",
            "attempt": 1,
            **meta,
        },
        "data": data,
        "previous": previous,
    }


def v1(
    *,
    event: str = "updated.organization",
    value: Any = None,
    before: Any = None,
    previous: bool = True,
    **meta: Any,
) -> dict[str, Any]:
    current = {"id": 42, "name": "Acme GmbH", KEY: value, "owner_id": 5}
    action, _, obj = event.partition(".")
    return {
        "v": 1,
        "matches_filters": {"current": []},
        "meta": {
            "v": 1,
            "action": action,
            "object": obj,
            "id": 42,
            "company_id": 9,
            "timestamp": 1767261600,
            "timestamp_micro": 1767261600123456,
            "is_bulk_update": False,
            "webhook_id": "77",
            **meta,
        },
        "retry": 0,
        "current": current,
        "previous": {**current, KEY: before} if previous else None,
        "event": event,
    }


def found(payload: dict[str, Any]) -> list[Any]:
    return ADAPTER.highlights(request(json.dumps(payload).encode()), CONFIG)


ENUM_37 = {"type": "enum", "id": 37}


def test_v2_change_of_the_interest_field_is_a_highlight() -> None:
    [highlight] = found(v2(value=ENUM_37, previous={"custom_fields": {KEY: None}}))
    assert highlight.partner_event_id == "8d2b4e6a-1f3c-4a5b-9c7d-0e1f2a3b4c5d"
    assert highlight.occurred_at == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert highlight.company.partner_object_id == "42"
    assert highlight.company.name == "Acme GmbH"
    assert highlight.company.domain == "acme.example"


def test_v2_create_with_the_interest_value_set_is_a_highlight() -> None:
    assert len(found(v2(action="create", value={"type": "varchar", "value": "yes"}))) == 1


def test_v2_change_of_another_field_is_not_a_highlight() -> None:
    assert found(v2(value=ENUM_37, previous={"name": "Acme"})) == []
    assert found(v2(value=ENUM_37, previous=None)) == []


def test_v2_change_to_a_value_that_is_not_interest_is_not_a_highlight() -> None:
    assert (
        found(v2(value={"type": "enum", "id": 38}, previous={"custom_fields": {KEY: ENUM_37}}))
        == []
    )
    assert (
        found(v2(value={"type": "enum", "id": 38}, previous={"custom_fields": {KEY: None}})) == []
    )
    assert found(v2(value=None, previous={"custom_fields": {KEY: ENUM_37}})) == []


def test_v2_delete_other_entities_and_merges_are_not_highlights() -> None:
    assert found(v2(action="delete", previous={"custom_fields": {KEY: ENUM_37}})) == []
    for entity in ("person", "deal"):
        assert (
            found(v2(entity=entity, value=ENUM_37, previous={"custom_fields": {KEY: None}})) == []
        )
    assert found(v2(action="merge", value=ENUM_37)) == []


def test_v2_bulk_edits_count_like_single_edits() -> None:
    payload = v2(value=ENUM_37, previous={"custom_fields": {KEY: None}}, is_bulk_edit=True)
    assert len(found(payload)) == 1


@pytest.mark.parametrize(
    "value",
    [37, "37", 37.0, {"type": "set", "values": [{"id": 12}, {"id": 37}]}, {"ids": [37]}, ["37"]],
)
def test_values_are_compared_as_text(value: Any) -> None:
    assert len(found(v2(action="create", value=value))) == 1


def test_the_field_may_be_at_the_top_level_of_the_organization() -> None:
    payload = v2(action="create")
    assert payload["data"] is not None
    payload["data"]["custom_fields"] = {}
    payload["data"][KEY] = "yes"
    assert len(found(payload)) == 1


def test_v2_retries_keep_the_identity() -> None:
    first = found(v2(value=ENUM_37, previous={"custom_fields": {KEY: None}}))
    retry = found(v2(value=ENUM_37, previous={"custom_fields": {KEY: None}}, attempt=3))
    assert first == retry


def test_v2_without_an_event_id_falls_back_to_webhook_entity_and_time() -> None:
    payload = v2(value=ENUM_37, previous={"custom_fields": {KEY: None}})
    del payload["meta"]["id"]
    [highlight] = found(payload)
    assert highlight.partner_event_id == "v2:77:42:2026-01-01T10:00:00.000Z"
    retried = copy.deepcopy(payload)
    retried["meta"]["attempt"] = 2
    assert found(retried) == [highlight]
    del payload["meta"]["timestamp"]
    with pytest.raises(InboundPayloadError):
        found(payload)


def test_v1_update_of_the_interest_field_is_a_highlight() -> None:
    [highlight] = found(v1(value="37", before=None))
    assert highlight.partner_event_id == "v1:77:42:1767261600123456"
    assert highlight.company.partner_object_id == "42"
    assert highlight.company.name == "Acme GmbH"
    assert highlight.company.domain is None
    assert highlight.occurred_at == datetime(2026, 1, 1, 10, tzinfo=UTC)


def test_v1_added_with_the_value_set_is_a_highlight() -> None:
    assert len(found(v1(event="added.organization", value="yes", previous=False))) == 1


def test_v1_unchanged_interest_value_is_not_a_highlight() -> None:
    assert found(v1(value="37", before="37")) == []
    assert found(v1(value=37, before="37")) == []


def test_v1_multi_option_values_count_by_id() -> None:
    assert len(found(v1(value="12,37", before="12"))) == 1
    assert found(v1(value="12,41", before="12")) == []


def test_v1_retries_keep_the_identity() -> None:
    first = found(v1(value="37"))
    retry = v1(value="37")
    retry["retry"] = 2
    assert found(retry) == first


def test_v1_deletes_other_objects_and_bulk_updates() -> None:
    assert found(v1(event="deleted.organization", value="37")) == []
    assert found(v1(event="updated.person", value="37")) == []
    assert found(v1(event="updated.deal", value="37")) == []
    assert len(found(v1(value="37", is_bulk_update=True))) == 1


def test_v1_identity_needs_webhook_and_time() -> None:
    payload = v1(value="37")
    del payload["meta"]["webhook_id"]
    with pytest.raises(InboundPayloadError):
        found(payload)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"meta": []}',
        b'{"data": {}}',
        b'{"meta": {}}',
        b'{"meta": {"entity": "organization", "action": 5}}',
        json.dumps(v2(action="create", value=ENUM_37) | {"data": []}).encode(),
        b"[" * 5000 + b"]" * 5000,
    ],
)
def test_bodies_that_are_not_pipedrive_payloads_are_payload_errors(body: bytes) -> None:
    with pytest.raises(InboundPayloadError):
        ADAPTER.highlights(request(body), CONFIG)


def test_an_overlong_organization_name_is_a_payload_error() -> None:
    payload = v2(action="create", value=ENUM_37)
    assert payload["data"] is not None
    payload["data"]["name"] = "x" * 501
    with pytest.raises(InboundPayloadError):
        found(payload)


@pytest.mark.parametrize(
    ("website", "domain"),
    [
        ("acme.example", "acme.example"),
        ("http://WWW.Acme.Example/", "acme.example"),
        ("https://shop.acme.example:8443/x?y=1", "shop.acme.example"),
        ("not a website", None),
        ("https://", None),
        ("localhost", None),
        (12, None),
    ],
)
def test_the_website_gives_the_domain(website: Any, domain: str | None) -> None:
    payload = v2(action="create", value=ENUM_37)
    assert payload["data"] is not None
    payload["data"]["website"] = website
    [highlight] = found(payload)
    assert highlight.company.domain == domain


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=25,
)
_META = st.fixed_dictionaries(
    {},
    optional={
        "action": st.sampled_from(["create", "change", "delete", "added", "updated"]) | _JSON,
        "entity": st.sampled_from(["organization", "person"]) | _JSON,
        "object": st.sampled_from(["organization", "deal"]) | _JSON,
        "id": st.text(max_size=10) | st.integers() | _JSON,
        "entity_id": st.text(max_size=5) | st.integers(),
        "webhook_id": st.text(max_size=5) | st.integers(),
        "timestamp": st.text(max_size=30) | st.integers(),
    },
)
_ORG = st.fixed_dictionaries(
    {},
    optional={
        "id": _JSON,
        "name": _JSON,
        "website": _JSON,
        KEY: st.sampled_from(["37", "yes", 37]) | _JSON,
        "custom_fields": st.dictionaries(st.sampled_from([KEY, "x"]), _JSON),
    },
)


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=200)
    | st.fixed_dictionaries(
        {"meta": _META | _JSON},
        optional={"data": _ORG | _JSON, "current": _ORG, "previous": _ORG | _JSON, "event": _JSON},
    ).map(lambda payload: json.dumps(payload).encode())
)
def test_highlights_raise_only_payload_errors(body: bytes) -> None:
    try:
        highlights = ADAPTER.highlights(request(body), CONFIG)
    except InboundPayloadError:
        return
    assert len(highlights) <= 1


# --- the config block ----------------------------------------------------------------------

BASE = {"auth": {"type": "api_token", "token": "t"}, "domain_field_key": "domain"}


def test_the_connection_config_takes_an_inbound_block() -> None:
    config = PipedriveConnectionConfig.validate_for_connection(
        {
            **BASE,
            "inbound": {
                "enabled": True,
                "username": USER,
                "password": PASSWORD,
                "interest_field_key": KEY,
                "interest_values": ["37", " yes "],
                "ip_allowlist": ["185.166.140.0/22"],
            },
        }
    )
    assert config.inbound is not None
    assert config.inbound.interest_values == ["37", "yes"]
    assert "password" in PipedriveConnectionConfig.secret_field_names()
    assert PASSWORD not in json.dumps(config.redacted())


@pytest.mark.parametrize(
    "change",
    [
        {"username": "a:b"},
        {"username": ""},
        {"password": "short"},
        {"interest_field_key": "has space"},
        {"interest_field_key": "x" * 65},
        {"interest_values": []},
        {"interest_values": [""]},
        {"interest_values": ["v"] * 101},
        {"unknown": 1},
    ],
)
def test_bad_inbound_blocks_are_refused_without_echo(change: dict[str, Any]) -> None:
    block = {
        "username": USER,
        "password": PASSWORD,
        "interest_field_key": KEY,
        "interest_values": ["37"],
        **change,
    }
    with pytest.raises(ValidationError) as exc:
        PipedriveInbound.model_validate(block)
    assert PASSWORD not in str(exc.value)


def test_the_pipedrive_connector_registers_its_adapter() -> None:
    assert isinstance(get_connector("pipedrive").inbound, PipedriveInboundAdapter)

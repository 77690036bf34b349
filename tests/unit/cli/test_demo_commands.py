from __future__ import annotations

import io
import re
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
from rich.console import Console

from connectors.base.config import ALLOW_PRIVATE_NETWORKS
from connectors.base.inbound import InboundRequest
from connectors.registry import ConnectorSpec, registered
from connectors.webhook.config import WebhookInbound
from connectors.webhook.webhooks import WebhookInboundAdapter, WebhookSignatureError
from processors.api import create_api
from processors.cli import _parser
from processors.console import router as console_router
from processors.demo import (
    _ALLOWLISTED,
    _HUBSPOT_LOOKALIKES,
    _INBOUND_TENANT,
    _KNOWN_COMPANY,
    _PIPEDRIVE_ACCOUNT,
    _PIPEDRIVE_DOMAIN_KEY,
    _PIPEDRIVE_QUEAST_ID_KEY,
    _SANDBOXES,
    _TWIN_COMPANIES,
    DEMO_TENANTS,
    _company_events,
    _demo_connections,
    _demo_token,
    _interest_request,
    _print_api_hints,
    _print_operator_commands,
    _referenced_companies,
    _resolve_curl,
    _write_sample_event,
)
from processors.domain.events import CompanyData, DomainEventEnvelope
from processors.inbound.intake import inbound_model
from processors.inbound.reviews_api import DecisionIn
from processors.inbound.reviews_api import router as reviews_router
from processors.samples import sample_events
from processors.settings import Settings
from processors.tenants.models import SERVICE_KEYS
from tests.sandboxes.pipedrive import AccountSpec
from tests.sandboxes.pipedrive import SandboxState as PipedriveSandboxState


def test_every_command_the_demo_suggests_is_a_real_command(tmp_path: Path) -> None:
    out = io.StringIO()
    sample = _write_sample_event(tmp_path)
    _print_operator_commands(
        Console(file=out, width=200), since=datetime(2026, 12, 4, 10, tzinfo=UTC), sample=sample
    )
    commands = [
        shlex.split(line.strip())
        for line in out.getvalue().splitlines()
        if line.strip().startswith("queast-integrations ")
    ]
    assert {argv[1] for argv in commands} == {"preview", "replay", "dlq", "backfill"}
    for argv in commands:
        args = _parser().parse_args(argv[1:])  # exits (fails the test) on a bad command
        assert callable(args.handler)
    assert sample.read_bytes().count(b"\n") == 1


def _review_record() -> dict[str, object]:
    """An ``integrations.match-review`` record as the inbound agent writes it (the fields the
    demo reads)."""
    return {
        "review_id": "rv_" + "0" * 32,
        "tenant_id": _INBOUND_TENANT,
        "candidates": [
            {"company_id": _TWIN_COMPANIES[0]["company_id"], "score": 1.0, "strategy": "name"},
            {"company_id": _TWIN_COMPANIES[1]["company_id"], "score": 1.0, "strategy": "name"},
        ],
    }


def _curl_parts(curl: str) -> tuple[str, str, dict[str, str], str]:
    """Method, URL, headers and body of a ``curl -X ... -H ... -d ... URL`` line."""
    argv = shlex.split(curl)
    assert argv[0] == "curl"
    method, url, body, headers = "GET", "", "", {}
    rest = iter(argv[1:])
    for arg in rest:
        if arg == "-X":
            method = next(rest)
        elif arg == "-H":
            name, _, value = next(rest).partition(": ")
            headers[name.lower()] = value
        elif arg == "-d":
            body = next(rest)
        else:
            url = arg
    return method, url, headers, body


def _api_routes(path: str, method: str) -> list[tuple[str, dict[str, str]]]:
    """The API app's routes (as its OpenAPI document lists them) that ``method path`` hits,
    each with its path parameters, checked against the parameters' declared patterns."""
    document = create_api(Settings()).openapi()
    found = []
    for template, operations in document["paths"].items():
        operation = operations.get(method.lower())
        if operation is None:
            continue
        patterns = {
            p["name"]: p.get("schema", {}).get("pattern")
            for p in operation.get("parameters", [])
            if p["in"] == "path"
        }
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
        match = re.fullmatch(regex, path)
        if match is None:
            continue
        params = match.groupdict()
        if all(re.search(patterns[n], v) for n, v in params.items() if patterns.get(n)):
            found.append((template, params))
    return found


def test_the_printed_resolve_curl_targets_the_review_route_of_the_api() -> None:
    curl = _resolve_curl("http://127.0.0.1:8080", _review_record(), token="tok")
    assert curl is not None
    method, url, headers, body = _curl_parts(curl)
    parsed = urlsplit(url)
    assert parsed.netloc == "127.0.0.1:8080"
    matched = _api_routes(parsed.path, method)
    assert [template for template, _params in matched] == [
        f"{reviews_router.prefix}/{{review_id}}/resolve"
    ]
    assert matched[0][1] == {"tenant_id": _INBOUND_TENANT, "review_id": "rv_" + "0" * 32}
    assert headers["authorization"] == "Bearer tok"
    assert headers["content-type"] == "application/json"
    decision = DecisionIn.model_validate_json(body)  # the route's own body model
    assert decision.company_id == _TWIN_COMPANIES[0]["company_id"]


@pytest.mark.parametrize(
    "record",
    [{}, {"review_id": "rv_1", "tenant_id": "t"}, {"review_id": 3, "candidates": [{}]}],
)
def test_no_curl_is_printed_for_a_record_without_a_candidate(record: dict[str, object]) -> None:
    assert _resolve_curl("http://127.0.0.1:8080", record, token="tok") is None


def test_the_demo_token_in_the_curl_is_a_tenant_admin_of_the_inbound_tenant() -> None:
    claims = jwt.decode(
        _demo_token("s" * 32, tenant_id=_INBOUND_TENANT), "s" * 32, algorithms=["HS256"]
    )
    assert claims["roles"] == ["tenant_admin"]
    assert claims["tenant_id"] == _INBOUND_TENANT


def _outbound_block(spec: ConnectorSpec, settings: dict[str, Any]) -> dict[str, Any]:
    """The config block the worker's sinks validate from stored ``settings``
    (:mod:`processors.deliveries.sinks`), with the sandbox base URL the demo sets."""
    if spec.carries_webhook_copies:
        extra = {k: v for k, v in settings.items() if k == "rate_limit_per_second"}
        return {**settings["webhook"], **extra}
    block = {k: v for k, v in settings.items() if k not in SERVICE_KEYS}
    return {**block, "base_url": "http://127.0.0.1:8910"}


def test_every_demo_connection_validates_against_its_connector() -> None:
    connections = _demo_connections()
    for connection in connections:
        spec = registered()[connection.connector.value]
        config = spec.config_class.model_validate(
            _outbound_block(spec, connection.settings), context={ALLOW_PRIVATE_NETWORKS: True}
        )
        assert config is not None
        if "inbound" in connection.settings:
            inbound = inbound_model(spec).model_validate(connection.settings["inbound"])
            assert inbound.enabled
    by_connector = {(c.tenant_id, c.connector.value): c for c in connections}
    # every partner connector with a sandbox has a demo connection on an allowlisted tenant
    assert {name for _tenant, name in by_connector} >= {"webhook", *_SANDBOXES}
    for name in _SANDBOXES:
        assert any(t in _ALLOWLISTED for t, n in by_connector if n == name), name
    # inbound is on for the inbound tenant's webhook and HubSpot connections
    for name in ("webhook", "hubspot"):
        inbound = by_connector[(_INBOUND_TENANT, name)].settings["inbound"]
        assert inbound["enabled"] is True


def test_the_demo_pipedrive_connection_names_the_sandbox_accounts_field_keys() -> None:
    pipedrive = next(c for c in _demo_connections() if c.connector.value == "pipedrive")
    state = PipedriveSandboxState()
    info = state.add_account(
        AccountSpec(
            name=_PIPEDRIVE_ACCOUNT,
            api_tokens=[pipedrive.settings["auth"]["token"]],
            domain_field_key=_PIPEDRIVE_DOMAIN_KEY,
            queast_id_field_key=_PIPEDRIVE_QUEAST_ID_KEY,
        )
    )
    assert pipedrive.settings["domain_field_key"] == info.domain_field_key
    assert pipedrive.settings["queast_id_field_key"] == info.queast_id_field_key


def test_the_demo_interest_is_signed_for_the_inbound_connection_and_reads_as_a_highlight() -> None:
    webhook = next(
        c
        for c in _demo_connections()
        if c.tenant_id == _INBOUND_TENANT and c.connector.value == "webhook"
    )
    inbound = inbound_model(registered()["webhook"]).model_validate(webhook.settings["inbound"])
    assert isinstance(inbound, WebhookInbound)
    now = 1_800_000_000
    body, headers = _interest_request(
        {"domain": _KNOWN_COMPANY["domain"]}, message_id="msg_demo1", now=now
    )
    request = InboundRequest(
        method="POST",
        url=f"http://127.0.0.1:8080/webhooks/webhook/{_INBOUND_TENANT}",
        headers=headers,
        body=body,
        received_at=now + 1,
    )
    adapter = WebhookInboundAdapter()
    adapter.verify(request, inbound)  # raises on a bad signature
    [highlight] = adapter.highlights(request, inbound)
    assert highlight.partner_event_id == "msg_demo1"
    assert highlight.company.domain == _KNOWN_COMPANY["domain"]
    forged = InboundRequest(
        method="POST", url=request.url, headers=headers, body=body + b" ", received_at=now + 1
    )
    with pytest.raises(WebhookSignatureError):
        adapter.verify(forged, inbound)


def test_the_demo_sends_the_companies_its_tenants_signals_and_people_name() -> None:
    stream = sample_events(DEMO_TENANTS, 200, version_offset=100)
    upserts = _referenced_companies(stream, version=101)
    known = {
        (e["tenant_id"], e["data"]["company_id"])
        for e in [*upserts, *stream]
        if e["event_type"] in ("company.upserted", "company.deleted")
    }
    named = {
        (e["tenant_id"], e["data"]["company_id"])
        for e in stream
        if e["event_type"] in ("signal.emitted", "person.upserted")
    }
    assert named <= known
    for event in upserts:
        assert event["event_type"] == "company.upserted"
        DomainEventEnvelope.model_validate(event)
        CompanyData.model_validate(event["data"])
    # the inbound tenant's directory learns one company by domain and two sharing a name
    directory = _company_events(version=1)
    assert {e["tenant_id"] for e in directory} == {_INBOUND_TENANT}
    names = [e["data"]["name"] for e in directory]
    assert names.count(_TWIN_COMPANIES[0]["name"]) == 2


def test_the_printed_api_curl_and_console_url_are_real_routes_with_working_tokens() -> None:
    out = io.StringIO()
    secret = "s" * 32
    _print_api_hints(Console(file=out, width=80), secret)
    lines = [line.strip() for line in out.getvalue().splitlines()]
    [curl] = [line for line in lines if line.startswith("curl ")]
    method, url, headers, _body = _curl_parts(curl)
    parsed = urlsplit(url)
    assert [t for t, _ in _api_routes(parsed.path, method)] == [
        "/v1/tenants/{tenant_id}/deliveries"
    ]
    token = headers["authorization"].removeprefix("Bearer ")
    assert jwt.decode(token, secret, algorithms=["HS256"])["roles"] == ["platform_admin"]
    [login] = re.findall(r"http://127\.0\.0\.1:8080(/console/login)", out.getvalue())
    console_paths = {getattr(r, "path", "") for r in console_router.routes}
    assert login in console_paths
    [tenant_token] = [line for line in lines if line.count(".") == 2 and " " not in line]
    claims = jwt.decode(tenant_token, secret, algorithms=["HS256"])
    assert claims["tenant_id"] == DEMO_TENANTS[0]


def test_the_hubspot_sandbox_starts_with_two_lookalikes_so_a_match_waits_in_the_console() -> None:
    _port, _args, prepare = _SANDBOXES["hubspot"]
    assert prepare is not None, "the HubSpot sandbox is seeded before the worker writes"
    names = {c["name"] for c in _HUBSPOT_LOOKALIKES}
    domains = {c["domain"] for c in _HUBSPOT_LOOKALIKES}
    assert names == {_KNOWN_COMPANY["name"]}, "found by name: two candidates, no lead"
    assert len(domains) == 2
    assert _KNOWN_COMPANY["domain"] not in domains, "not found by domain"
    out = io.StringIO()
    _print_api_hints(Console(file=out, width=300), "s" * 32)
    [matches] = re.findall(r"http://127\.0\.0\.1:8080(/console/t/[^/]+/matches)", out.getvalue())
    assert matches == f"/console/t/{DEMO_TENANTS[0]}/matches"
    console_paths = {getattr(r, "path", "") for r in console_router.routes}
    assert "/console/t/{tenant_id}/matches" in console_paths

"""Test doubles for the Pipedrive connector: a scripted API, an identity resolver, records."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from connectors.base import (
    Clock,
    EntityKind,
    EntityRecord,
    HttpClientFactory,
    IdentityCandidate,
    IdentityDecision,
    IdentityOutcome,
    OutboundRecord,
    SinkContext,
    http_client_factory,
)
from connectors.base.oauth import GrantStore
from connectors.pipedrive import PipedriveConnectionConfig, PipedriveSink
from tests.unit.connectors.fakes import FakeClock, make_record

DOMAIN_KEY = "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0"
QUEAST_KEY = "9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e"
API_TOKEN = "pd-api-token-secret"
BASE = "https://api.pipedrive.com"

Responder = Callable[[httpx.Request], httpx.Response]


def ok(data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> httpx.Response:
    """A Pipedrive success answer ``{"success": true, "data": ...}``."""
    return httpx.Response(status, json={"success": True, "data": data}, headers=headers or {})


def failure(status: int, *, headers: Mapping[str, str] | None = None) -> httpx.Response:
    """A Pipedrive error answer."""
    body = {
        "success": False,
        "error": "error",
        "error_info": "info",
        "data": None,
        "additional_data": None,
    }
    return httpx.Response(status, json=body, headers=headers or {})


def search_result(*ids: int) -> dict[str, Any]:
    return {"items": [{"result_score": 1.0, "item": {"id": i, "type": "x"}} for i in ids]}


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    answers: list[httpx.Response | Responder]


@dataclass
class MockPipedrive:
    """Scripted answers per ``(method, path regex)``; every request is recorded.

    An answer list is consumed in order; its last entry repeats. An unscripted request is a
    test failure (raised out of the transport, not translated into a connector error).
    """

    requests: list[httpx.Request] = field(default_factory=list)
    _routes: list[_Route] = field(default_factory=list)

    def on(self, method: str, path: str, *answers: httpx.Response | Responder) -> None:
        self._routes.insert(0, _Route(method, re.compile(path + r"\Z"), list(answers)))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for route in self._routes:
            if route.method == request.method and route.pattern.match(request.url.path):
                answer = route.answers[0] if len(route.answers) == 1 else route.answers.pop(0)
                return answer(request) if callable(answer) else answer
        raise AssertionError(f"unscripted request {request.method} {request.url.path}")

    def calls(self, method: str | None = None, path: str | None = None) -> list[httpx.Request]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method)
            and (path is None or re.fullmatch(path, r.url.path))
        ]

    def factory(self) -> HttpClientFactory:
        transport = httpx.MockTransport(self)

        def build(
            *,
            timeout_seconds: float = 15.0,
            connect_timeout_seconds: float = 5.0,
            max_connections: int = 10,
            headers: dict[str, str] | None = None,
        ) -> httpx.AsyncClient:
            return http_client_factory(
                timeout_seconds=timeout_seconds,
                connect_timeout_seconds=connect_timeout_seconds,
                max_connections=max_connections,
                headers=headers,
                transport=transport,
            )

        return build


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


@dataclass
class FakeIdentity:
    """An in-memory identity resolver with a simple exact-match policy.

    ``decide`` links when exactly one candidate carries the Queast id, the record's domain
    or its email; none is ``no_match``, several are ``ambiguous``. ``outcome`` forces one.
    """

    links: dict[tuple[EntityKind, str], str] = field(default_factory=dict)
    decided: list[tuple[EntityKind, str, tuple[IdentityCandidate, ...]]] = field(
        default_factory=list
    )
    linked_by_connector: list[tuple[EntityKind, str, str, str]] = field(default_factory=list)
    outcome: IdentityOutcome | None = None
    waiting: dict[str, set[str]] = field(default_factory=dict)

    async def linked(self, kind: EntityKind, queast_id: str) -> str | None:
        return self.links.get((kind, queast_id))

    async def decide(
        self,
        kind: EntityKind,
        queast_id: str,
        record: EntityRecord,
        candidates: Sequence[IdentityCandidate],
    ) -> IdentityDecision:
        self.decided.append((kind, queast_id, tuple(candidates)))
        matches = [c for c in candidates if _matches(c, queast_id, record)]
        outcome = self.outcome
        if outcome is None:
            outcome = (
                IdentityOutcome.NO_MATCH
                if not matches
                else IdentityOutcome.LINKED
                if len(matches) == 1
                else IdentityOutcome.AMBIGUOUS
            )
        if outcome is IdentityOutcome.LINKED:
            chosen = (matches or list(candidates))[0].partner_object_id
            self.links[(kind, queast_id)] = chosen
            return IdentityDecision(outcome, partner_object_id=chosen, strategy="fake")
        if outcome is IdentityOutcome.AMBIGUOUS:
            return IdentityDecision(outcome, review_id="rev_1")
        return IdentityDecision(outcome)

    async def link(
        self, kind: EntityKind, queast_id: str, partner_object_id: str, *, strategy: str
    ) -> None:
        self.links[(kind, queast_id)] = partner_object_id
        self.linked_by_connector.append((kind, queast_id, partner_object_id, strategy))

    async def wait_for_company(self, company_id: str, person_id: str) -> str | None:
        self.waiting.setdefault(company_id, set()).add(person_id)
        return self.links.get((EntityKind.COMPANY, company_id))

    async def people_waiting(self, company_id: str) -> Mapping[str, str]:
        return {
            person_id: self.links[(EntityKind.PERSON, person_id)]
            for person_id in sorted(self.waiting.get(company_id, ()))
            if (EntityKind.PERSON, person_id) in self.links
        }

    async def associated(self, company_id: str, person_ids: Sequence[str]) -> None:
        self.waiting.get(company_id, set()).difference_update(person_ids)


def _matches(candidate: IdentityCandidate, queast_id: str, record: EntityRecord) -> bool:
    if queast_id in candidate.queast_ids:
        return True
    domains = {d.lower() for d in candidate.domains}
    emails = {e.lower() for e in candidate.emails}
    wanted_domains = {
        str(d).lower() for d in [getattr(record, "domain", None), *getattr(record, "domains", [])]
    }
    wanted_emails = {
        str(e).lower() for e in [getattr(record, "email", None), *getattr(record, "emails", [])]
    }
    return bool(domains & wanted_domains or emails & wanted_emails)


# -- records ------------------------------------------------------------------------------


def _record(event_type: str, entity_id: str, body: dict[str, Any]) -> OutboundRecord:
    record = make_record(connector="pipedrive", event_type=event_type, entity_id=entity_id)
    header = {
        "event_type": event_type,
        "schema_version": "1.0",
        "occurred_at": record.occurred_at,
        "idempotency_key": record.idempotency_key,
        "tenant_id": record.tenant_id,
        "connection_id": record.connection_id,
        "correlation_id": record.correlation_id,
        "event_id": record.event_id,
        "entity_version": record.entity_version,
    }
    return record.model_copy(update={"payload": {**header, **body}})


def company_record(company_id: str = "co_1", **fields: Any) -> OutboundRecord:
    body: dict[str, Any] = {
        "company_id": company_id,
        "name": "Acme GmbH",
        "domain": "acme.example",
        "domains": ["acme.example"],
        "website": None,
        "linkedin_url": None,
        "industry": None,
        "employee_count": None,
        "country": None,
        "deleted": False,
    }
    body.update(fields)
    return _record("company.upserted", company_id, body)


def person_record(person_id: str = "pe_1", **fields: Any) -> OutboundRecord:
    body: dict[str, Any] = {
        "person_id": person_id,
        "company_id": "co_1",
        "full_name": "Ada Lovelace",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@acme.example",
        "emails": ["ada@acme.example"],
        "linkedin_url": None,
        "title": None,
        "deleted": False,
    }
    body.update(fields)
    return _record("person.upserted", person_id, body)


def deletion_record(kind: str, entity_id: str) -> OutboundRecord:
    key = "company_id" if kind == "company" else "person_id"
    return _record(f"{kind}.deleted", entity_id, {key: entity_id, "deleted": True})


def signal_record(company_id: str = "co_1", **fields: Any) -> OutboundRecord:
    body: dict[str, Any] = {
        "signal_id": "sig_1",
        "company_id": company_id,
        "person_ids": [],
        "signal_type": "hiring_surge",
        "contract_mode": "strict",
        "contract_version": "1.0",
        "title": "Hiring surge in engineering",
        "summary": "Twelve new engineering roles in two weeks.",
        "score": 0.87,
        "reasons": [
            {
                "code": "JOB_ADS_SPIKE",
                "description": "12 job ads in 14 days",
                "evidence_ids": ["ja_1"],
            }
        ],
        "evidence": [
            {
                "kind": "job_ad",
                "id": "ja_1",
                "url": "https://jobs.example/1",
                "title": "Senior Engineer",
            }
        ],
        "decorations": {"technology_tags": ["kafka", "python"]},
        "detected_at": "2026-11-26T05:00:00Z",
    }
    body.update(fields)
    return _record("signal.emitted", body["signal_id"], body)


def job_ad_record(company_id: str = "co_1", **fields: Any) -> OutboundRecord:
    body: dict[str, Any] = {
        "job_ad_id": "ja_1",
        "company_id": company_id,
        "title": "Senior Engineer",
        "url": "https://jobs.example/1",
        "location": "Berlin",
        "posted_at": "2026-11-20T00:00:00Z",
    }
    body.update(fields)
    return _record("job_ad.published", body["job_ad_id"], body)


# -- sinks --------------------------------------------------------------------------------


SEARCH_PATH: dict[str, Any] = {"enabled": False}
"""``candidate_index`` settings that make every first link search (the fallback path)."""


def api_token_config(**overrides: Any) -> dict[str, Any]:
    """Settings of an API-token connection; first links take the search path unless
    ``candidate_index`` is overridden (the index has its own tests)."""
    settings: dict[str, Any] = {
        "auth": {"type": "api_token", "token": API_TOKEN},
        "domain_field_key": DOMAIN_KEY,
        "queast_id_field_key": QUEAST_KEY,
        "candidate_index": SEARCH_PATH,
    }
    settings.update(overrides)
    return settings


@asynccontextmanager
async def open_sink(
    api: MockPipedrive | HttpClientFactory,
    *,
    identity: FakeIdentity | None = None,
    clock: Clock | None = None,
    settings: dict[str, Any] | None = None,
    allow_private_networks: bool = False,
    grants: GrantStore | None = None,
    **sink_options: Any,
) -> AsyncIterator[PipedriveSink]:
    """A set-up ``PipedriveSink`` talking to ``api`` (a mock, or a real client factory)."""
    config = PipedriveConnectionConfig.validate_for_connection(
        settings if settings is not None else api_token_config(),
        allow_private_networks=allow_private_networks,
    )
    factory = api.factory() if isinstance(api, MockPipedrive) else api
    context: SinkContext[PipedriveConnectionConfig] = SinkContext(
        tenant_id="t_42",
        connection_id="c_1",
        connector="pipedrive",
        config=config,
        allow_private_networks=allow_private_networks,
        clock=clock or FakeClock(),
        http_client_factory=factory,
        identity=identity if identity is not None else FakeIdentity(),
        grant_store=grants,
    )
    async with PipedriveSink(context, **sink_options) as sink:
        yield sink

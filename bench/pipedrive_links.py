"""Pipedrive first links: the search path against the candidate index, same sandbox, same run.

A first sync of one account (``--companies`` companies, ``--people`` people, as
``processors.samples.sample_sync`` makes them; a share of them already in Pipedrive with a
matching domain or email, so they are linked rather than created) goes through a real
``PipedriveSink`` twice, against the Pipedrive sandbox (``tests/sandboxes/pipedrive.py``,
served by uvicorn on loopback, with Pipedrive's limits for ``--plan``: the burst window per
API token, 10 searches per 2 s, token costs):

- **search**: ``candidate_index.enabled = false``: one search per unlinked entity, plus a
  read per hit;
- **index**: the default: the account listed 500 objects per request, changes fetched
  every ``refresh_seconds``.

Each run has its own sandbox account with the same seeded objects, its own sink and an
in-memory identity resolver that applies the identity layer's real matcher
(``processors.identity.matching``). Records go through four concurrent callers (the sink's
default concurrency); a record refused with backpressure waits ``retry_after`` and goes
again, as the delivery engine's retry would. The daily budget is lifted so the search path
can finish (on a Lite seat it would run out: see the tokens).

Reported per path: requests by route, tokens spent, wall time, and per first link.
Results are printed and written to ``bench/results/pipedrive_links.json`` (keyed by plan).

Run: ``python -m bench.pipedrive_links`` (``--companies 400 --people 1000 --plan lite``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from bench import _kit as kit
from connectors.base import (
    BackpressureError,
    EntityKind,
    EntityRecord,
    IdentityCandidate,
    IdentityDecision,
    IdentityOutcome,
    OutboundRecord,
    SinkContext,
)
from connectors.pipedrive import PipedriveConnectionConfig, PipedrivePlan, PipedriveSink
from processors.identity.matching import MatchOutcome, match_company, match_person
from processors.identity.strategies import (
    DEFAULT_COMPANY_STRATEGIES,
    DEFAULT_PERSON_STRATEGIES,
    CompanyIdentity,
    PartnerCandidate,
    PersonIdentity,
)
from processors.samples import sample_sync
from tests.sandboxes.pipedrive import AccountLimits, AccountSpec, PipedriveSandbox, SandboxStats

TENANT = "t_pd_bench"
_BURST = {"lite": 20, "growth": 40, "premium": 100, "ultimate": 120}
_CALLERS = 4


class MemoryIdentity:
    """The service's resolver without Redis: links in a dict, the real matcher."""

    def __init__(self) -> None:
        self.links: dict[tuple[EntityKind, str], str] = {}
        self.owners: dict[tuple[EntityKind, str], str] = {}
        self.outcomes: Counter[str] = Counter()
        self.waiting: dict[str, set[str]] = {}

    async def linked(self, kind: EntityKind, queast_id: str) -> str | None:
        return self.links.get((kind, queast_id))

    async def decide(
        self,
        kind: EntityKind,
        queast_id: str,
        record: EntityRecord,
        candidates: Sequence[IdentityCandidate],
    ) -> IdentityDecision:
        offered = [
            PartnerCandidate(
                partner_object_id=c.partner_object_id,
                name=c.name,
                domains=c.domains,
                emails=c.emails,
                linkedin_url=c.linkedin_url,
                queast_ids=c.queast_ids,
            )
            for c in candidates
            if self.owners.get((kind, c.partner_object_id), queast_id) == queast_id
        ]
        if kind is EntityKind.COMPANY:
            decision = match_company(
                CompanyIdentity(
                    company_id=queast_id,
                    name=getattr(record, "name", None),
                    domain=getattr(record, "domain", None),
                    domains=tuple(getattr(record, "domains", None) or ()),
                    linkedin_url=getattr(record, "linkedin_url", None),
                ),
                offered,
                strategies=DEFAULT_COMPANY_STRATEGIES,
            )
        else:
            decision = match_person(
                PersonIdentity(
                    person_id=queast_id,
                    full_name=getattr(record, "full_name", None),
                    email=getattr(record, "email", None),
                    emails=tuple(getattr(record, "emails", None) or ()),
                    linkedin_url=getattr(record, "linkedin_url", None),
                ),
                offered,
                strategies=DEFAULT_PERSON_STRATEGIES,
            )
        self.outcomes[f"{kind.value}:{decision.outcome}"] += 1
        if decision.outcome is MatchOutcome.AUTO_LINKED and decision.partner_object_id:
            await self.link(kind, queast_id, decision.partner_object_id, strategy="matched")
            return IdentityDecision(
                IdentityOutcome.LINKED, decision.partner_object_id, str(decision.strategy)
            )
        if decision.outcome is MatchOutcome.AMBIGUOUS:
            return IdentityDecision(IdentityOutcome.AMBIGUOUS, review_id=queast_id)
        return IdentityDecision(IdentityOutcome.NO_MATCH)

    async def link(
        self, kind: EntityKind, queast_id: str, partner_object_id: str, *, strategy: str
    ) -> None:
        self.links[(kind, queast_id)] = partner_object_id
        self.owners[(kind, partner_object_id)] = queast_id

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


def _records(companies: int, people: int) -> list[OutboundRecord]:
    records = []
    for n, event in enumerate(sample_sync([TENANT], companies=companies, people=people, seed=11)):
        data = event["data"]
        entity_id = data.get("company_id") if event["event_type"] == "company.upserted" else None
        entity_id = entity_id or data["person_id"]
        records.append(
            OutboundRecord(
                delivery_id=f"d_{n}",
                tenant_id=TENANT,
                connection_id="conn_bench",
                connector="pipedrive",
                event_type=event["event_type"],
                event_id=event["event_id"],
                idempotency_key=f"ik_{n}",
                correlation_id=event["correlation_id"],
                entity_id=entity_id,
                entity_version=data["version"],
                occurred_at=event["occurred_at"],
                schema_version="1.0",
                payload=data,
                attempt=1,
            )
        )
    return records


def _seed(sandbox: PipedriveSandbox, account: str, records: list[OutboundRecord]) -> None:
    """Every 4th company and every 5th person already in Pipedrive, made by hand."""
    for record in records:
        data = record.payload
        if record.event_type == "company.upserted" and int(record.entity_id[3:]) % 4 == 0:
            sandbox.seed_organization(account, name=f"{data['name']} (CRM)", domain=data["domain"])
        if record.event_type == "person.upserted" and int(record.entity_id[3:]) % 5 == 0:
            sandbox.seed_person(account, name=f"{data['full_name']} (CRM)", emails=[data["email"]])


def _diff(after: SandboxStats, before: SandboxStats) -> dict[str, int]:
    routes = Counter(after.by_route)
    routes.subtract(before.by_route)
    return {route: count for route, count in sorted(routes.items()) if count}


async def _run(
    sandbox: PipedriveSandbox,
    *,
    path: str,
    plan: str,
    records: list[OutboundRecord],
) -> dict[str, Any]:
    account = f"acme-{path}-{plan}"
    token = f"tok-{account}"
    info = sandbox.add_account(
        AccountSpec(
            name=account,
            api_tokens=[token],
            limits=AccountLimits(api_token_burst=_BURST[plan], daily_budget=10_000_000),
        )
    )
    _seed(sandbox, account, records)
    config = PipedriveConnectionConfig.validate_for_connection(
        {
            "auth": {"type": "api_token", "token": token},
            "base_url": sandbox.url,
            "domain_field_key": info.domain_field_key,
            "queast_id_field_key": info.queast_id_field_key,
            "plan": plan,
            "daily_budget": 10_000_000,
            "candidate_index": {"enabled": path == "index"},
        },
        allow_private_networks=True,
    )
    identity = MemoryIdentity()
    context: SinkContext[PipedriveConnectionConfig] = SinkContext(
        tenant_id=TENANT,
        connection_id="conn_bench",
        connector="pipedrive",
        config=config,
        allow_private_networks=True,
        identity=identity,
    )
    queue: asyncio.Queue[OutboundRecord] = asyncio.Queue()
    for record in records:
        queue.put_nowait(record)
    failures: Counter[str] = Counter()
    waits = 0

    async def caller(sink: PipedriveSink) -> None:
        nonlocal waits
        while not queue.empty():
            record = queue.get_nowait()
            while True:
                outcome = await sink.deliver([record])
                if not outcome.failed:
                    break
                error = outcome.failed[0].error
                if isinstance(error, BackpressureError):
                    waits += 1
                    await asyncio.sleep(error.retry_after)
                    continue
                failures[type(error).__name__] += 1
                break

    before = sandbox.stats()
    started = time.monotonic()
    async with PipedriveSink(context) as sink:
        await asyncio.gather(*(caller(sink) for _ in range(_CALLERS)))
        index = sink.candidate_index
        counters = None if index is None else index.counters
    wall = time.monotonic() - started
    after = sandbox.stats()
    routes = _diff(after, before)
    requests = sum(routes.values())
    tokens = sandbox.state.spent(account)
    searches = sum(n for r, n in routes.items() if r.endswith("/search"))
    list_pages = routes.get("GET /api/v2/organizations", 0) + routes.get("GET /api/v2/persons", 0)
    reads = sum(n for r, n in routes.items() if r.startswith("GET") and r.endswith("/{id}"))
    # a person update reads the person first (to keep its emails): not a lookup
    hit_reads = max(0, reads - routes.get("PATCH /api/v2/persons/{id}", 0))
    lookup_requests = searches + list_pages + hit_reads
    lookup_tokens = 20 * searches + 10 * list_pages + hit_reads
    links = len(records)
    return {
        "path": path,
        "plan": plan,
        "first_links": links,
        "wall_s": round(wall, 1),
        "requests": requests,
        "tokens": tokens,
        "requests_by_route": routes,
        "searches": searches,
        "list_pages": list_pages,
        "candidate_reads": hit_reads,
        "lookup_requests": lookup_requests,
        "lookup_tokens": lookup_tokens,
        "per_first_link": {
            "requests": round(requests / links, 3),
            "tokens": round(tokens / links, 2),
            "lookup_requests": round(lookup_requests / links, 4),
            "lookup_tokens": round(lookup_tokens / links, 3),
            "ms": round(wall * 1000 / links, 1),
        },
        "linked_to_existing": sum(
            n for k, n in identity.outcomes.items() if k.endswith(str(MatchOutcome.AUTO_LINKED))
        ),
        "decisions": dict(sorted(identity.outcomes.items())),
        "throttled_429": after.throttled - before.throttled,
        "backpressure_waits": waits,
        "failures": dict(failures),
        "index": None
        if counters is None
        else {
            "pages": counters.pages,
            "builds": counters.builds,
            "refreshes": counters.refreshes,
            "fallbacks": counters.fallbacks,
        },
    }


def _print(result: dict[str, Any]) -> None:
    per = result["per_first_link"]
    print(
        f"{result['path']:>6} ({result['plan']}): {result['first_links']} first links in "
        f"{result['wall_s']} s, {result['requests']} requests, {result['tokens']} tokens; "
        f"lookups {result['lookup_requests']} requests / {result['lookup_tokens']} tokens; "
        f"per link {per['requests']} req, {per['tokens']} tokens, {per['ms']} ms; "
        f"linked to existing {result['linked_to_existing']}, 429s {result['throttled_429']}",
        flush=True,
    )


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    records = _records(args.companies, args.people)
    with PipedriveSandbox() as sandbox:
        runs = []
        for path in ("search", "index"):
            result = await _run(sandbox, path=path, plan=args.plan, records=records)
            _print(result)
            runs.append(result)
    search, index = runs
    return {
        "companies": args.companies,
        "people": args.people,
        "plan": args.plan,
        "runs": runs,
        "speedup": round(search["wall_s"] / index["wall_s"], 1),
        "tokens_saved": search["tokens"] - index["tokens"],
    }


def main() -> None:
    parser = kit.parser(__doc__, prog="python -m bench.pipedrive_links")
    parser.add_argument("--companies", type=int, default=400)
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--plan", choices=[p.value for p in PipedrivePlan], default="lite")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    result = asyncio.run(_main(args))
    kit.write_results("pipedrive_links", result, key=args.plan, echo=False)
    print(f"search/index wall time: {result['speedup']}x; tokens saved: {result['tokens_saved']}")


if __name__ == "__main__":
    main()

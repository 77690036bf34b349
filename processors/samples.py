"""Sample domain events for the demo, tests and benchmarks: deterministic for a given seed.

:func:`sample_events` makes valid events of every type over a set of tenants, with
monotonically increasing entity versions; :func:`invalid_samples` makes one record of each kind
of bad input that can be written to a JSON-lines file, with the reason the router must give.
"""

from __future__ import annotations

import itertools
import json
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "InvalidSample",
    "invalid_samples",
    "sample_company",
    "sample_events",
    "sample_person",
    "sample_sync",
    "to_json_line",
]

_COMPANY_WORDS = ("Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay")
_SUFFIXES = ("Inc", "GmbH", "Ltd", "AB", "Oy", "SAS")
_FIRST = ("Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Ken", "Radia")
_LAST = ("Lovelace", "Hopper", "Torvalds", "Hamilton", "Turing", "Liskov", "Thompson", "Perlman")
_TAGS = ("kubernetes", "snowflake", "react", "terraform", "kafka")
_BASE_TIME = datetime(2026, 11, 26, 5, 0, tzinfo=UTC)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _envelope(
    rng: random.Random, tenant: str, event_type: str, data: dict[str, Any], n: int
) -> dict[str, Any]:
    return {
        "event_id": _uuid(rng),
        "event_type": event_type,
        "schema_version": "1.0",
        "tenant_id": tenant,
        "occurred_at": (_BASE_TIME + timedelta(seconds=n)).isoformat().replace("+00:00", "Z"),
        "correlation_id": _uuid(rng),
        "data": data,
    }


def _company(rng: random.Random, index: int, version: int) -> dict[str, Any]:
    word = _COMPANY_WORDS[index % len(_COMPANY_WORDS)]
    domain = f"{word.lower()}{index}.example.com"
    return {
        "company_id": f"co_{index}",
        "name": f"{word} {index} {_SUFFIXES[index % len(_SUFFIXES)]}",
        "domain": domain,
        "domains": [domain],
        "website": f"https://www.{domain}/",
        "linkedin_url": f"https://www.linkedin.com/company/{word.lower()}-{index}",
        "industry": rng.choice(("software", "logistics", "retail", "energy")),
        "employee_count": rng.randint(5, 5000),
        "country": rng.choice(("SE", "FI", "DE", "US")),
        "version": version,
    }


def _person(rng: random.Random, index: int, version: int) -> dict[str, Any]:
    first, last = _FIRST[index % len(_FIRST)], _LAST[index % len(_LAST)]
    email = f"{first.lower()}.{last.lower()}{index}@example.com"
    return {
        "person_id": f"pe_{index}",
        "company_id": f"co_{index % 50}",
        "full_name": f"{first} {last}",
        "first_name": first,
        "last_name": last,
        "email": email,
        "emails": [email],
        "linkedin_url": f"https://www.linkedin.com/in/{first.lower()}-{last.lower()}-{index}",
        "title": rng.choice(("CTO", "Head of Data", "VP Sales", "Engineer")),
        "version": version,
    }


def _signal(rng: random.Random, index: int, version: int) -> dict[str, Any]:
    mode = ("strict", "strict", "informational", "legacy")[index % 4]
    evidence = [
        {
            "kind": "job_ad",
            "id": f"ja_{index}",
            "url": f"https://jobs.example.com/{index}",
            "title": "Data Engineer",
        },
    ]
    return {
        "signal_id": f"si_{index}",
        "company_id": f"co_{index % 50}",
        "person_ids": [f"pe_{index % 80}"],
        "signal_type": ("hiring_surge", "tech_adoption", "funding", "expansion")[index % 4],
        "contract_mode": mode,
        "contract_version": "2.1" if mode == "strict" else "1.0",
        "title": f"Signal {index}",
        "summary": "Hiring for data roles grew this month.",
        "score": round(rng.random(), 3),
        "reasons": [
            {
                "code": "hiring.data_roles",
                "description": "Three new data engineering roles.",
                "evidence_ids": [f"ja_{index}"],
            },
        ],
        "evidence": evidence,
        "decorations": {"technology_tags": rng.sample(_TAGS, k=2)},
        "detected_at": (_BASE_TIME + timedelta(minutes=index)).isoformat().replace("+00:00", "Z"),
        "version": version,
    }


def _job_ad(rng: random.Random, index: int, version: int) -> dict[str, Any]:
    return {
        "job_ad_id": f"ja_{index}",
        "company_id": f"co_{index % 50}",
        "title": rng.choice(("Data Engineer", "Platform Engineer", "Account Executive")),
        "url": f"https://jobs.example.com/{index}",
        "location": rng.choice(("Stockholm", "Helsinki", "Berlin", "Remote")),
        "posted_at": (_BASE_TIME - timedelta(days=index % 30)).isoformat().replace("+00:00", "Z"),
        "version": version,
    }


_MAKERS = (
    ("company.upserted", _company),
    ("person.upserted", _person),
    ("signal.emitted", _signal),
    ("job_ad.published", _job_ad),
)


def sample_events(
    tenants: Sequence[str], count: int, *, seed: int = 7, version_offset: int = 0
) -> list[dict[str, Any]]:
    """``count`` valid events spread over ``tenants`` and the event types (deletions included).

    Entity versions start at ``version_offset + 1``: two calls with different offsets give
    newer states of the same entities (other idempotency keys), as a live stream would.
    """
    rng = random.Random(seed)  # noqa: S311 - sample data, not security
    versions: dict[tuple[str, str, int], int] = {}
    events: list[dict[str, Any]] = []
    for n in range(count):
        tenant = tenants[n % len(tenants)]
        slot = (n // len(tenants)) % 10
        if slot == 9:
            kind = "company.deleted" if n % 2 else "person.deleted"
            index = n % 40
            entity_key = "company_id" if kind == "company.deleted" else "person_id"
            prefix = "co" if kind == "company.deleted" else "pe"
            version = (
                versions.get((tenant, kind.split(".", maxsplit=1)[0], index), version_offset) + 1
            )
            versions[(tenant, kind.split(".", maxsplit=1)[0], index)] = version
            data: dict[str, Any] = {entity_key: f"{prefix}_{index}", "version": version}
            events.append(_envelope(rng, tenant, kind, data, n))
            continue
        event_type, maker = _MAKERS[slot % len(_MAKERS)]
        index = n // 3
        family = event_type.split(".")[0]
        version = versions.get((tenant, family, index), version_offset) + 1
        versions[(tenant, family, index)] = version
        events.append(_envelope(rng, tenant, event_type, maker(rng, index, version), n))
    return events


def sample_company(index: int, *, version: int = 1, seed: int = 7) -> dict[str, Any]:
    """The ``data`` of company ``co_{index}`` as :func:`sample_events` makes it."""
    return _company(random.Random(seed * 1_000_003 + index), index, version)  # noqa: S311


def sample_person(
    index: int, *, company_index: int, version: int = 1, seed: int = 7
) -> dict[str, Any]:
    """The ``data`` of person ``pe_{index}``, working at ``co_{company_index}``."""
    data = _person(random.Random(seed * 1_000_003 + index), index, version)  # noqa: S311
    return {**data, "company_id": f"co_{company_index}"}


def sample_sync(
    tenants: Sequence[str], *, companies: int, people: int, seed: int = 7
) -> list[dict[str, Any]]:
    """A first sync: ``companies`` company and ``people`` person upserts per tenant.

    Person ``pe_i`` works at ``co_{i % companies}``. The stream interleaves the two kinds the
    way a live one does: a person may come before or after the company it works at.
    """
    rng = random.Random(seed)  # noqa: S311 - sample data, not security
    events: list[dict[str, Any]] = []
    for tenant in tenants:
        kinds = ["company"] * companies + ["person"] * people
        rng.shuffle(kinds)
        counters = {"company": 0, "person": 0}
        for kind in kinds:
            index = counters[kind]
            counters[kind] += 1
            if kind == "company":
                data = sample_company(index, seed=seed)
                event_type = "company.upserted"
            else:
                data = sample_person(index, company_index=index % companies, seed=seed)
                event_type = "person.upserted"
            events.append(_envelope(rng, tenant, event_type, data, len(events)))
    # tenants interleaved, each tenant's own order kept
    by_tenant = [[e for e in events if e["tenant_id"] == t] for t in tenants]
    return [e for group in itertools.zip_longest(*by_tenant) for e in group if e is not None]


def to_json_line(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class InvalidSample:
    """One bad record for a JSON-lines file, and the reason the router must give."""

    line: bytes
    reason: str


def invalid_samples(tenant: str, *, max_event_bytes: int = 512 * 1024) -> list[InvalidSample]:
    """One record of each kind of bad input that a JSON-lines file can carry."""
    rng = random.Random(99)  # noqa: S311 - sample data
    good = _envelope(rng, tenant, "company.upserted", _company(rng, 1, 1), 0)
    bad_version = dict(good, schema_version="2.0")
    unknown_type = dict(good, event_type="company.exploded")
    no_tenant = {k: v for k, v in good.items() if k != "tenant_id"}
    bad_id = dict(good, event_id="not-a-uuid")
    bad_data = dict(good, data={"name": "no id", "version": -1})
    strict = _envelope(rng, tenant, "signal.emitted", _signal(rng, 0, 1), 0)
    strict["data"]["reasons"][0]["evidence_ids"] = ["ja_missing"]
    oversized = dict(good, data=dict(good["data"], industry="x" * max_event_bytes))
    return [
        InvalidSample(b"{not json", "unparseable"),
        InvalidSample(b"[1, 2, 3]", "not_an_object"),
        InvalidSample(to_json_line(no_tenant), "missing_tenant"),
        InvalidSample(to_json_line(unknown_type), "unknown_event_type"),
        InvalidSample(to_json_line(bad_version), "unsupported_schema_version"),
        InvalidSample(to_json_line(bad_id), "validation_failed"),
        InvalidSample(to_json_line(bad_data), "validation_failed"),
        InvalidSample(to_json_line(strict), "contract_violation"),
        InvalidSample(to_json_line(oversized), "oversized"),
    ]

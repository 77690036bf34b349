"""Hand-written contract records shared by the contract tests."""

from __future__ import annotations

from processors.contracts import ContractFamily, ContractMode

HEADER: dict[str, object] = {
    "schema_version": "1.0",
    "occurred_at": "2026-11-26T05:00:00Z",
    "idempotency_key": "idem-7f3a",
    "tenant_id": "tenant-42",
    "connection_id": "conn-hubspot-1",
    "correlation_id": "corr-0001",
    "event_id": "evt-9001",
    "entity_version": 17,
}

POPULATED: dict[ContractFamily, dict[str, object]] = {
    ContractFamily.COMPANY: {
        **HEADER,
        "event_type": "company.upserted",
        "company_id": "cmp-1",
        "name": "Acme GmbH",
        "domain": "acme.example",
        "domains": ["acme.example", "acme-group.example"],
        "website": "https://acme.example",
        "linkedin_url": "https://www.linkedin.com/company/acme",
        "industry": "Manufacturing",
        "employee_count": 1250,
        "country": "DE",
        "deleted": False,
    },
    ContractFamily.PERSON: {
        **HEADER,
        "event_type": "person.upserted",
        "person_id": "per-1",
        "company_id": "cmp-1",
        "full_name": "Jana Novak",
        "first_name": "Jana",
        "last_name": "Novak",
        "email": "jana.novak@acme.example",
        "emails": ["jana.novak@acme.example", "jn@acme.example"],
        "linkedin_url": "https://www.linkedin.com/in/jana-novak",
        "title": "Head of Data",
        "deleted": False,
    },
    ContractFamily.SIGNAL: {
        **HEADER,
        "event_type": "signal.detected",
        "signal_id": "sig-1",
        "company_id": "cmp-1",
        "person_ids": ["per-1"],
        "signal_type": "hiring_surge",
        "contract_mode": ContractMode.STRICT,
        "contract_version": "2",
        "title": "Acme is hiring data engineers",
        "summary": "Five new data engineering roles in two weeks.",
        "score": 0.87,
        "reasons": [
            {
                "code": "hiring.data_team_growth",
                "description": "Data team openings doubled",
                "evidence_ids": ["job-1", "job-2"],
            }
        ],
        "evidence": [
            {"kind": "job_ad", "id": "job-1", "url": "https://jobs.example/1", "title": "DE"},
            {"kind": "job_ad", "id": "job-2", "url": None, "title": None},
        ],
        "decorations": {"technology_tags": ["snowflake", "dbt"]},
        "detected_at": "2026-11-26T04:59:00Z",
    },
    ContractFamily.JOB_AD_EVIDENCE: {
        **HEADER,
        "event_type": "job_ad_evidence.upserted",
        "job_ad_id": "job-1",
        "company_id": "cmp-1",
        "title": "Senior Data Engineer",
        "url": "https://jobs.example/1",
        "location": "Berlin",
        "posted_at": "2026-11-20T08:00:00Z",
    },
}

# Only what the contract requires; everything else is left to its default.
MINIMAL: dict[ContractFamily, dict[str, object]] = {
    ContractFamily.COMPANY: {**HEADER, "event_type": "company.upserted", "company_id": "cmp-1"},
    ContractFamily.PERSON: {**HEADER, "event_type": "person.upserted", "person_id": "per-1"},
    ContractFamily.SIGNAL: {
        **HEADER,
        "event_type": "signal.detected",
        "signal_id": "sig-2",
        "company_id": "cmp-1",
        "signal_type": "news_mention",
        "contract_mode": "legacy",
        "contract_version": "0",
        "title": "Acme in the news",
        "detected_at": "2026-11-26T04:59:00Z",
    },
    ContractFamily.JOB_AD_EVIDENCE: {
        **HEADER,
        "event_type": "job_ad_evidence.upserted",
        "job_ad_id": "job-1",
        "company_id": "cmp-1",
    },
}

# What a minimal record decodes to: the defaults filled in.
MINIMAL_DEFAULTS: dict[ContractFamily, dict[str, object]] = {
    ContractFamily.COMPANY: {
        "name": None,
        "domain": None,
        "domains": [],
        "website": None,
        "linkedin_url": None,
        "industry": None,
        "employee_count": None,
        "country": None,
        "deleted": False,
    },
    ContractFamily.PERSON: {
        "company_id": None,
        "full_name": None,
        "first_name": None,
        "last_name": None,
        "email": None,
        "emails": [],
        "linkedin_url": None,
        "title": None,
        "deleted": False,
    },
    ContractFamily.SIGNAL: {
        "person_ids": [],
        "summary": None,
        "score": None,
        "reasons": [],
        "evidence": [],
        "decorations": {"technology_tags": []},
    },
    ContractFamily.JOB_AD_EVIDENCE: {
        "title": None,
        "url": None,
        "location": None,
        "posted_at": None,
    },
}

"""Contract records to HubSpot request bodies: the pure mapping, tested hard."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.base import EntityKind
from connectors.hubspot.payloads import (
    MAX_NOTE_BODY_CHARS,
    CompanyWrite,
    Deletion,
    NoteWrite,
    PayloadError,
    PersonWrite,
    SearchKey,
    associate_default_body,
    batch_update_body,
    batch_upsert_body,
    candidate_from_object,
    candidate_matches,
    company_properties,
    contact_properties,
    export_for,
    job_ad_note_body,
    normalize_domain,
    notes_create_body,
    search_body,
    search_keys,
    signal_note_body,
)
from tests.unit.connectors.hubspot.fakes import company, deleted, job_ad, person, record, signal

QID = "queast_id"


def _signal_payload(**fields: Any) -> dict[str, Any]:
    return dict(signal("s_1", "co_1", **fields).payload)


# -- companies --------------------------------------------------------------------------------


def test_company_properties_map_every_known_field() -> None:
    payload = company(
        "co_1",
        name="Acme GmbH",
        domain="Acme.example",
        domains=["acme.example", "www.acme-group.example", "https://acme.io/about"],
        website="https://acme.example",
        linkedin_url="https://www.linkedin.com/company/acme",
        industry="Industrial Machinery",
        employee_count=420,
        country="DE",
    ).payload

    assert company_properties(payload, queast_id_property=QID) == {
        "name": "Acme GmbH",
        "domain": "acme.example",
        "hs_additional_domains": "acme-group.example;acme.io",
        "website": "https://acme.example",
        "linkedin_company_page": "https://www.linkedin.com/company/acme",
        "queast_industry": "Industrial Machinery",
        "numberofemployees": "420",
        "country": "DE",
        "queast_id": "co_1",
    }


def test_company_without_values_sends_only_its_queast_id() -> None:
    payload = company(
        "co_2",
        name=None,
        domain=None,
        domains=[],
        website="  ",
        linkedin_url=None,
        industry="",
        employee_count=None,
        country=None,
    ).payload

    assert company_properties(payload, queast_id_property="ext_id") == {"ext_id": "co_2"}


def test_company_main_domain_falls_back_to_the_first_of_domains() -> None:
    payload = company("co_3", domain=None, domains=["WWW.First.example", "second.example"]).payload
    props = company_properties(payload, queast_id_property=QID)
    assert props["domain"] == "first.example"
    assert props["hs_additional_domains"] == "second.example"


def test_single_domain_sends_no_additional_domains() -> None:
    payload = company("co_4", domain="one.example", domains=["one.example"]).payload
    assert "hs_additional_domains" not in company_properties(payload, queast_id_property=QID)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Example.COM", "example.com"),
        ("https://www.example.com/path?q=1", "example.com"),
        ("example.com:8443", "example.com"),
        ("user@example.com", "example.com"),
        ("example.com.", "example.com"),
        ("   ", None),
        (None, None),
    ],
)
def test_normalize_domain(raw: str | None, expected: str | None) -> None:
    assert normalize_domain(raw) == expected


_optional_text = st.one_of(st.none(), st.text(max_size=20))


@given(
    name=_optional_text,
    domain=_optional_text,
    domains=st.lists(st.text(max_size=15), max_size=4),
    website=_optional_text,
    industry=_optional_text,
    country=_optional_text,
    employees=st.one_of(st.none(), st.integers(min_value=-5, max_value=10**6)),
)
def test_company_properties_never_blank_a_property(
    name: str | None,
    domain: str | None,
    domains: list[str],
    website: str | None,
    industry: str | None,
    country: str | None,
    employees: int | None,
) -> None:
    payload = {
        "company_id": "co_h",
        "name": name,
        "domain": domain,
        "domains": domains,
        "website": website,
        "industry": industry,
        "country": country,
        "employee_count": employees,
    }
    props = company_properties(payload, queast_id_property=QID)
    assert all(isinstance(v, str) and v.strip() for v in props.values())
    assert props[QID] == "co_h"


# -- contacts ---------------------------------------------------------------------------------


def test_contact_properties() -> None:
    payload = person(
        "p_1",
        email=" Ada@Example.COM ",
        emails=["ada@example.com", "ada@other.example"],
        first_name="Ada",
        last_name="Lovelace",
        title="CTO",
        linkedin_url="https://www.linkedin.com/in/ada",
    ).payload
    assert contact_properties(payload, queast_id_property=QID) == {
        "email": "ada@example.com",
        "firstname": "Ada",
        "lastname": "Lovelace",
        "jobtitle": "CTO",
        "queast_linkedin_url": "https://www.linkedin.com/in/ada",
        "queast_id": "p_1",
    }


def test_contact_names_come_from_full_name_only_when_both_are_missing() -> None:
    split = person("p_2", first_name=None, last_name=None, full_name="Grace Brewster Hopper")
    kept = person("p_3", first_name=None, last_name="Hopper", full_name="Grace Hopper")
    split_props = contact_properties(split.payload, queast_id_property=QID)
    kept_props = contact_properties(kept.payload, queast_id_property=QID)
    assert (split_props["firstname"], split_props["lastname"]) == ("Grace", "Brewster Hopper")
    assert "firstname" not in kept_props
    assert kept_props["lastname"] == "Hopper"


def test_contact_without_email_or_names_sends_no_empty_values() -> None:
    payload = person(
        "p_4", email=None, emails=["not-an-email"], first_name=" ", last_name=None, title=None
    ).payload
    assert contact_properties(payload, queast_id_property=QID) == {"queast_id": "p_4"}


# -- notes ------------------------------------------------------------------------------------


def _paragraphs(body: str) -> list[str]:
    return re.findall(r"<p>(.*?)</p>", body)


def test_signal_note_contains_title_summary_reasons_and_evidence() -> None:
    body = signal_note_body(_signal_payload())
    assert body.startswith("<p><strong>Queast signal: Hiring surge in engineering</strong></p>")
    assert "Twelve new engineering roles in two weeks." in body
    assert "<li><strong>JOB_ADS_SPIKE</strong>: 12 job ads in 14 days (evidence: ja_1)</li>" in body
    assert '<a href="https://jobs.example/1">SRE</a> (job_ad ja_1)' in body
    assert "Contract mode: strict, contract version: 1.0" in _paragraphs(body)[-1]


@pytest.mark.parametrize("mode", ["informational", "legacy"])
def test_non_strict_signal_shows_its_contract_right_under_the_title(mode: str) -> None:
    body = signal_note_body(_signal_payload(contract_mode=mode, contract_version="0.9"))
    second = _paragraphs(body)[1]
    assert second == (
        f"<strong>Contract mode: {mode}, contract version: 0.9 (not an Actionable Signal)</strong>"
    )


def test_technology_tags_appear_only_in_the_decorations_line() -> None:
    body = signal_note_body(
        _signal_payload(decorations={"technology_tags": ["Kubernetes", "Rust"]})
    )
    reasons = body.split("<p><strong>Reasons</strong></p>", 1)[1].split("</ul>", 1)[0]
    decorations = [p for p in _paragraphs(body) if "Kubernetes" in p]
    assert "Kubernetes" not in reasons
    assert decorations == ["<em>Decorations (technology tags, not reasons): Kubernetes, Rust</em>"]
    assert body.count("Kubernetes") == 1


def test_signal_without_tags_has_no_decorations_line() -> None:
    body = signal_note_body(_signal_payload(decorations={"technology_tags": []}))
    assert "Decorations" not in body


def test_note_text_is_html_escaped_and_only_http_links_are_links() -> None:
    body = signal_note_body(
        _signal_payload(
            title="<script>alert(1)</script>",
            summary='Ships "fast" & <b>loud</b>',
            evidence=[
                {"kind": "job_ad", "id": "ja_1", "url": "javascript:alert(1)", "title": "x"},
                {
                    "kind": "job_ad",
                    "id": "ja_2",
                    "url": 'https://e.example/?a=1&b="2"',
                    "title": "<i>",
                },
            ],
        )
    )
    assert "<script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "Ships &quot;fast&quot; &amp; &lt;b&gt;loud&lt;/b&gt;" in body
    assert "javascript:" not in body
    assert '<a href="https://e.example/?a=1&amp;b=&quot;2&quot;">&lt;i&gt;</a>' in body


def test_huge_signal_note_is_cut_to_hubspots_limit_saying_what_was_left_out() -> None:
    reasons = [{"code": f"R{i}", "description": "d" * 3000, "evidence_ids": []} for i in range(100)]
    evidence = [
        {"kind": "job_ad", "id": f"ja_{i}", "url": f"https://jobs.example/{i}", "title": "t" * 400}
        for i in range(300)
    ]
    body = signal_note_body(_signal_payload(reasons=reasons, evidence=evidence))
    assert len(body) <= MAX_NOTE_BODY_CHARS
    assert "more evidence links not shown" in body
    assert "Decorations" in body  # the tail survives the cut
    assert body.endswith("</p>")


def test_job_ad_note() -> None:
    body = job_ad_note_body(job_ad("ja_9", "co_1").payload)
    assert body.startswith("<p><strong>Queast job ad: Site Reliability Engineer</strong></p>")
    assert "Location: Berlin" in body
    assert '<a href="https://jobs.example/sre">https://jobs.example/sre</a>' in body
    assert "not a signal itself" in body


# -- dispatch ---------------------------------------------------------------------------------


def test_export_for_company_person_signal_job_ad_and_deletions() -> None:
    co = export_for(company("co_1", domain="a.example"), queast_id_property=QID)
    pe = export_for(person("p_1", company_id="co_1"), queast_id_property=QID)
    si = export_for(signal("s_1", "co_1", person_ids=["p_1", "p_1", " "]), queast_id_property=QID)
    ja = export_for(job_ad("ja_1", "co_1", posted_at=None), queast_id_property=QID)
    gone = export_for(deleted(EntityKind.PERSON, "p_1"), queast_id_property=QID)

    assert isinstance(co, CompanyWrite)
    assert co.domains == ("a.example",)
    assert isinstance(pe, PersonWrite)
    assert pe.company_queast_id == "co_1"
    assert pe.emails == ("p_1@people.example",)
    assert isinstance(si, NoteWrite)
    assert si.key == "queast-signal-s_1"
    assert si.person_queast_ids == ("p_1",)
    assert si.properties["hs_timestamp"] == "2026-11-26T04:00:00.000Z"
    assert isinstance(ja, NoteWrite)
    assert ja.properties["hs_timestamp"] == "2026-11-26T05:00:00.000Z"  # occurred_at
    assert gone == Deletion(EntityKind.PERSON, "p_1")


def test_unknown_event_type_is_a_payload_error() -> None:
    with pytest.raises(PayloadError, match="not exported"):
        export_for(record("deal.upserted", "x", {}), queast_id_property=QID)


def test_invalid_payload_names_fields_never_values() -> None:
    bad = signal("s_2", "co_1", contract_mode="wild-secret-value", detected_at=123)
    with pytest.raises(PayloadError) as info:
        export_for(bad, queast_id_property=QID)
    assert "contract_mode" in str(info.value)
    assert "wild-secret-value" not in str(info.value)


def test_bad_timestamp_is_a_payload_error() -> None:
    with pytest.raises(PayloadError, match="detected_at"):
        export_for(signal("s_3", "co_1", detected_at="yesterday"), queast_id_property=QID)


# -- search and candidates -----------------------------------------------------------------------


def test_search_keys() -> None:
    co = export_for(
        company("co_1", domain="a.example", domains=["a.example", "b.example"]),
        queast_id_property=QID,
    )
    nameless = export_for(
        company("co_2", domain=None, domains=[], name="Solo"), queast_id_property=QID
    )
    pe = export_for(person("p_1", email="X@Y.example"), queast_id_property=QID)
    assert isinstance(co, CompanyWrite)
    assert isinstance(nameless, CompanyWrite)
    assert isinstance(pe, PersonWrite)
    assert search_keys(co) == (SearchKey("domain", "a.example"), SearchKey("domain", "b.example"))
    assert search_keys(nameless) == (SearchKey("name", "Solo"),)
    assert search_keys(pe) == (SearchKey("email", "x@y.example"),)


def test_candidate_from_company_search_result() -> None:
    obj = {
        "id": "501",
        "properties": {
            "name": "Acme",
            "domain": "ACME.example",
            "hs_additional_domains": "acme.io;;acme.de",
            "queast_id": "co_1",
        },
    }
    candidate = candidate_from_object(EntityKind.COMPANY, obj, queast_id_property=QID)
    assert candidate is not None
    assert candidate.partner_object_id == "501"
    assert candidate.domains == ("acme.example", "acme.io", "acme.de")
    assert candidate.queast_ids == ("co_1",)
    assert candidate_matches(candidate, [SearchKey("domain", "acme.io")])
    assert candidate_matches(candidate, [SearchKey("name", "ACME")])
    assert not candidate_matches(candidate, [SearchKey("domain", "other.example")])
    assert (
        candidate_from_object(EntityKind.COMPANY, {"properties": {}}, queast_id_property=QID)
        is None
    )


def test_candidate_from_contact_search_result() -> None:
    obj = {"id": 7, "properties": {"email": "A@B.example", "firstname": "A", "lastname": None}}
    candidate = candidate_from_object(EntityKind.PERSON, obj, queast_id_property=QID)
    assert candidate is not None
    assert candidate.partner_object_id == "7"
    assert candidate.emails == ("a@b.example",)
    assert candidate.name == "A"
    assert candidate.queast_ids == ()


# -- request bodies ----------------------------------------------------------------------------


def test_request_bodies() -> None:
    assert batch_upsert_body([("d_1", "co_1", {"name": "A"})], id_property="queast_id") == {
        "inputs": [
            {
                "id": "co_1",
                "idProperty": "queast_id",
                "objectWriteTraceId": "d_1",
                "properties": {"name": "A"},
            }
        ]
    }
    assert batch_update_body([("d_2", "501", {"name": "B"})]) == {
        "inputs": [{"id": "501", "objectWriteTraceId": "d_2", "properties": {"name": "B"}}]
    }
    assert associate_default_body([("1", "2")]) == {
        "inputs": [{"from": {"id": "1"}, "to": {"id": "2"}}]
    }
    note = notes_create_body([("d_3", {"hs_timestamp": "t"}, "501", ["9"])])["inputs"][0]
    assert note["associations"] == [
        {
            "to": {"id": "501"},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 190}],
        },
        {
            "to": {"id": "9"},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}],
        },
    ]
    assert search_body([SearchKey("domain", "a.example")], properties=["name"], limit=100) == {
        "filterGroups": [
            {"filters": [{"propertyName": "domain", "operator": "EQ", "value": "a.example"}]}
        ],
        "properties": ["name"],
        "limit": 100,
    }

"""Contract records to HubSpot request bodies: the pure mapping, tested hard."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.base import EntityKind, IdentityCandidate
from connectors.base.matchkeys import clean_host as normalize_domain
from connectors.base.matchkeys import normalize_linkedin_url
from connectors.hubspot.bodies import (
    associate_default_body,
    batch_update_body,
    batch_upsert_body,
    encode_json,
    notes_create_body,
)
from connectors.hubspot.exports import CompanyWrite, Deletion, NoteWrite, PayloadError, PersonWrite
from connectors.hubspot.notes import MAX_NOTE_BODY_CHARS, job_ad_note_body, signal_note_body
from connectors.hubspot.payloads import export_for
from connectors.hubspot.properties import company_properties, contact_properties
from connectors.hubspot.search import (
    DEFAULT_STRATEGIES,
    MAX_SEARCH_BODY_CHARS,
    Lookup,
    LookupStrategy,
    applicable_strategies,
    candidate_from_object,
    candidate_keys,
    entity_keys,
    lookups,
    search_requests,
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


S = LookupStrategy
PROPS = ["name", "domain", "hs_additional_domains", "linkedin_company_page", QID]


def _company_write(**fields: Any) -> CompanyWrite:
    write = export_for(company("co_1", **fields), queast_id_property=QID)
    assert isinstance(write, CompanyWrite)
    return write


def _person_write(**fields: Any) -> PersonWrite:
    write = export_for(person("p_1", **fields), queast_id_property=QID)
    assert isinstance(write, PersonWrite)
    return write


def test_lookups_per_strategy_are_lower_case_values_of_the_right_properties() -> None:
    co = _company_write(
        domain="A.example",
        domains=["A.example", "b.example"],
        name="Acme AB",
        linkedin_url="linkedin.com/company/Acme/",
    )
    assert lookups(co, DEFAULT_STRATEGIES[EntityKind.COMPANY], queast_id_property=QID) == (
        Lookup(S.PARTNER_ID, QID, "co_1"),
        Lookup(S.DOMAIN, "domain", "a.example"),
        Lookup(S.DOMAIN, "domain", "b.example"),
        Lookup(S.LINKEDIN_URL, "linkedin_company_page", "linkedin.com/company/acme/"),
        Lookup(S.LINKEDIN_URL, "linkedin_company_page", "https://www.linkedin.com/company/acme"),
        Lookup(S.COMPANY_NAME, "name", "acme ab"),
    )
    assert lookups(co, [S.DOMAIN], queast_id_property=QID) == (
        Lookup(S.DOMAIN, "domain", "a.example"),
        Lookup(S.DOMAIN, "domain", "b.example"),
    )
    pe = _person_write(
        email="X@Y.example", linkedin_url="https://www.linkedin.com/in/ada-l", first_name="Ada"
    )
    assert lookups(pe, DEFAULT_STRATEGIES[EntityKind.PERSON], queast_id_property=QID) == (
        Lookup(S.PARTNER_ID, QID, "p_1"),
        Lookup(S.EMAIL, "email", "x@y.example"),
        Lookup(S.LINKEDIN_URL, "queast_linkedin_url", "https://www.linkedin.com/in/ada-l"),
    )
    # strategies that do not apply to the kind are not looked up
    assert lookups(pe, [S.DOMAIN, S.COMPANY_NAME], queast_id_property=QID) == ()


def test_lookups_skip_what_cannot_identify_and_keep_three_values_per_strategy() -> None:
    many = _company_write(domain=None, domains=[f"d{i}.example" for i in range(5)], name=None)
    found = lookups(many, [S.DOMAIN, S.COMPANY_NAME], queast_id_property=QID)
    assert [lookup.value for lookup in found] == ["d0.example", "d1.example", "d2.example"]
    wrong_kind = _company_write(linkedin_url="https://www.linkedin.com/in/a-person")
    assert lookups(wrong_kind, [S.LINKEDIN_URL], queast_id_property=QID) == ()
    long_name = _company_write(name="x" * 300)
    assert lookups(long_name, [S.COMPANY_NAME], queast_id_property=QID) == ()
    idn = _company_write(domain="München.de", domains=[])
    assert [v.value for v in lookups(idn, [S.DOMAIN], queast_id_property=QID)] == [
        "münchen.de",
        "xn--mnchen-3ya.de",
    ]


def test_applicable_strategies_keep_order_and_drop_what_does_not_apply() -> None:
    names = ["company_name", "email", "domain", "bogus", "domain", "partner_id"]
    assert applicable_strategies(EntityKind.COMPANY, names) == (
        S.COMPANY_NAME,
        S.DOMAIN,
        S.PARTNER_ID,
    )
    assert applicable_strategies(EntityKind.PERSON, names) == (S.EMAIL, S.PARTNER_ID)


@pytest.mark.parametrize(
    ("raw", "kind", "expected"),
    [
        ("https://www.linkedin.com/company/Acme-1/about/?x=1", EntityKind.COMPANY, "acme-1"),
        ("linkedin.com/company/acme-1", EntityKind.COMPANY, "acme-1"),
        ("http://uk.linkedin.com/company/acme%2D1/", EntityKind.COMPANY, "acme-1"),
        ("https://www.linkedin.com/in/Ada", EntityKind.PERSON, "ada"),
        ("https://www.linkedin.com/in/ada", EntityKind.COMPANY, None),
        ("https://linkedin.com.evil.example/company/acme", EntityKind.COMPANY, None),
        ("https://www.linkedin.com/feed/", EntityKind.COMPANY, None),
        ("", EntityKind.COMPANY, None),
    ],
)
def test_normalize_linkedin_url(raw: str, kind: EntityKind, expected: str | None) -> None:
    path = "company" if kind is EntityKind.COMPANY else "in"
    want = None if expected is None else f"linkedin.com/{path}/{expected}"
    assert normalize_linkedin_url(raw, kind=kind) == want


def test_results_match_back_on_keys_normalised_like_the_identity_layer() -> None:
    co = _company_write(
        domain="acme.example",
        domains=["acme.example", "münchen.de"],
        name="Acme AB",
        linkedin_url="https://www.linkedin.com/company/acme",
    )
    everything = entity_keys(co, DEFAULT_STRATEGIES[EntityKind.COMPANY])
    hubspot_spelling = IdentityCandidate(
        partner_object_id="1",
        name="ACME ab",
        domains=("www.ACME.example",),
        linkedin_url="http://linkedin.com/company/ACME/",
        queast_ids=("co_1",),
    )
    assert {s for s, _ in everything & candidate_keys(hubspot_spelling, EntityKind.COMPANY)} == {
        S.PARTNER_ID,
        S.DOMAIN,
        S.LINKEDIN_URL,
        S.COMPANY_NAME,
    }
    punycode = IdentityCandidate(partner_object_id="2", domains=("xn--mnchen-3ya.de",))
    assert everything & candidate_keys(punycode, EntityKind.COMPANY)
    # a sibling host is not the same key: *.example.com companies stay apart
    sibling = IdentityCandidate(partner_object_id="3", domains=("shop.acme.example",))
    assert not everything & candidate_keys(sibling, EntityKind.COMPANY)
    other_case_id = IdentityCandidate(partner_object_id="4", queast_ids=("CO_1",))
    assert not everything & candidate_keys(other_case_id, EntityKind.COMPANY)
    # only the strategies asked for
    assert not entity_keys(co, [S.DOMAIN]) & candidate_keys(
        IdentityCandidate(partner_object_id="5", name="Acme AB"), EntityKind.COMPANY
    )
    pe = _person_write(email="Ada@X.example")
    contact = IdentityCandidate(partner_object_id="6", emails=("ada@x.example",))
    assert entity_keys(pe, [S.EMAIL]) & candidate_keys(contact, EntityKind.PERSON)


def _values(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (f["propertyName"], v)
        for g in body["filterGroups"]
        for f in g["filters"]
        for v in f["values"]
    ]


def test_search_requests_pack_in_filters_up_to_3000_characters() -> None:
    wanted = [Lookup(S.DOMAIN, "domain", f"company-{i:05}.example.com") for i in range(300)]
    wanted += [Lookup(S.PARTNER_ID, QID, f"co_{i}") for i in range(300)]
    requests = search_requests(wanted, properties=PROPS)
    sizes = [len(encode_json(r.body)) for r in requests]
    assert all(size <= MAX_SEARCH_BODY_CHARS - 20 for size in sizes)  # room for "after"
    assert len(requests) == 4  # 300 x 28 + 300 x 9 characters of values
    assert min(sizes[:-1]) > 2900  # full, but for the last
    sent = [pair for r in requests for pair in _values(dict(r.body))]
    assert sent == [(w.property_name, w.value) for w in wanted]
    assert [list(r.lookups) for r in requests] == [
        [w for w in wanted if (w.property_name, w.value) in set(_values(dict(r.body)))]
        for r in requests
    ]
    first = dict(requests[0].body)
    assert first["filterGroups"][0]["filters"][0]["operator"] == "IN"
    assert (first["properties"], first["limit"]) == (PROPS, 200)
    with_cursor = encode_json({**first, "after": "10000"})
    assert len(with_cursor) <= MAX_SEARCH_BODY_CHARS


def test_search_requests_send_a_value_once_and_at_most_five_groups() -> None:
    wanted = [Lookup(S.DOMAIN, f"prop_{i}", "x") for i in range(7)]
    wanted += [Lookup(S.DOMAIN, "prop_0", "x"), Lookup(S.COMPANY_NAME, "prop_0", "x")]
    requests = search_requests(wanted, properties=["name"])
    assert [len(r.body["filterGroups"]) for r in requests] == [5, 2]
    assert sum(len(r.lookups) for r in requests) == 7


@given(
    values=st.lists(
        st.tuples(
            st.sampled_from(["domain", "name", QID, "linkedin_company_page"]),
            st.text(min_size=1, max_size=254),
        ),
        max_size=150,
    )
)
def test_every_packed_body_fits_and_carries_each_value_once(
    values: list[tuple[str, str]],
) -> None:
    wanted = [Lookup(S.DOMAIN, prop, value) for prop, value in values]
    requests = search_requests(wanted, properties=PROPS)
    for request in requests:
        encoded = encode_json({**request.body, "after": "9800"})
        assert len(encoded) <= MAX_SEARCH_BODY_CHARS
        assert json.loads(encoded)["filterGroups"] == request.body["filterGroups"]
        assert len(request.body["filterGroups"]) <= 5
    sent = [pair for r in requests for pair in _values(dict(r.body))]
    assert sorted(sent) == sorted(set(values))
    assert sorted((w.property_name, w.value) for r in requests for w in r.lookups) == sorted(sent)


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
    (only,) = search_requests([Lookup(S.DOMAIN, "domain", "a.example")], properties=["name"])
    assert only.body == {
        "filterGroups": [
            {"filters": [{"propertyName": "domain", "operator": "IN", "values": ["a.example"]}]}
        ],
        "properties": ["name"],
        "limit": 200,
    }

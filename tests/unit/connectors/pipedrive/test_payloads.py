"""Contract records to Pipedrive bodies: pure functions, tested hard."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.base import IdentityCandidate, PermanentError
from connectors.base.contract import CompanyRecord as CompanyContract
from connectors.base.contract import PersonRecord as PersonContract
from connectors.base.contract import SignalRecord as SignalContract
from connectors.pipedrive import payloads
from connectors.pipedrive.payloads import RecordKind
from tests.unit.connectors.pipedrive.fakes import (
    DOMAIN_KEY,
    QUEAST_KEY,
    company_record,
    deletion_record,
    job_ad_record,
    person_record,
    signal_record,
)


def _no_none(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, dict):
        return all(_no_none(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_none(v) for v in value)
    return True


def _company(**fields: Any) -> CompanyContract:
    return payloads.parse_company(company_record(**fields).payload)


def _person(**fields: Any) -> PersonContract:
    return payloads.parse_person(person_record(**fields).payload)


def _signal(**fields: Any) -> SignalContract:
    return payloads.parse_signal(signal_record(**fields).payload)


def _org_body(company: CompanyContract, *, for_create: bool = True, **keys: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"domain_field_key": DOMAIN_KEY, "queast_id_field_key": QUEAST_KEY}
    options.update(keys)
    return payloads.organization_body(company, for_create=for_create, **options)


# -- classification -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "kind"),
    [
        (company_record(), RecordKind.COMPANY),
        (person_record(), RecordKind.PERSON),
        (signal_record(), RecordKind.SIGNAL),
        (job_ad_record(), RecordKind.JOB_AD),
        (deletion_record("company", "co_1"), RecordKind.COMPANY_DELETION),
        (deletion_record("person", "pe_1"), RecordKind.PERSON_DELETION),
    ],
)
def test_records_are_classified_by_event_type(record: Any, kind: RecordKind) -> None:
    assert payloads.classify(record) is kind


def test_a_deleted_flag_makes_a_deletion_whatever_the_action() -> None:
    record = company_record(deleted=True)
    assert payloads.classify(record) is RecordKind.COMPANY_DELETION


def test_an_unknown_event_type_is_permanent() -> None:
    record = company_record().model_copy(update={"event_type": "invoice.paid"})
    with pytest.raises(PermanentError, match="not exported"):
        payloads.classify(record)


def test_a_payload_off_contract_is_permanent_without_echoing_it() -> None:
    with pytest.raises(PermanentError) as caught:
        payloads.parse_company({"name": "secret-name@example.com"})
    assert "company_id" in caught.value.reason
    assert "secret-name" not in str(caught.value)


# -- organizations ------------------------------------------------------------------------


def test_organization_body_has_name_and_custom_fields() -> None:
    body = _org_body(_company())
    assert body == {
        "name": "Acme GmbH",
        "custom_fields": {DOMAIN_KEY: "acme.example", QUEAST_KEY: "co_1"},
    }


def test_organization_body_sends_known_firmographics_only() -> None:
    company = _company(
        website="https://acme.example",
        linkedin_url="https://www.linkedin.com/company/acme",
        employee_count=120,
        industry="Software",
        country="DE",
    )
    body = _org_body(company)
    assert body["website"] == "https://acme.example"
    assert body["linkedin"] == "https://www.linkedin.com/company/acme"
    assert body["employee_count"] == 120
    assert "industry" not in body  # an option id in Pipedrive
    assert "address" not in body


def test_organization_body_never_sends_none() -> None:
    company = _company(name=None, domain=None, domains=[], website=None)
    body = _org_body(company, for_create=False, queast_id_field_key=None)
    assert body == {}
    assert _no_none(_org_body(_company(website=None, linkedin_url=None), for_create=False))


def test_the_domain_is_normalised_and_falls_back_to_domains() -> None:
    assert payloads.primary_domain(_company(domain=" WWW.Acme.Example. ")) == "acme.example"
    assert payloads.primary_domain(_company(domain="https://acme.example/about")) == "acme.example"
    assert payloads.primary_domain(_company(domain=None, domains=["", "b.example"])) == "b.example"
    assert payloads.primary_domain(_company(domain=None, domains=[])) is None


def test_a_new_organization_without_name_is_named_after_its_domain() -> None:
    body = _org_body(_company(name="  "), for_create=True)
    assert body["name"] == "acme.example"


def test_a_new_organization_without_name_or_domain_is_permanent() -> None:
    with pytest.raises(PermanentError, match="name"):
        _org_body(_company(name=None, domain=None, domains=[]), for_create=True)


def test_an_update_without_name_leaves_the_name_alone() -> None:
    body = _org_body(_company(name=None), for_create=False)
    assert "name" not in body
    assert body["custom_fields"][DOMAIN_KEY] == "acme.example"


def test_without_a_queast_id_field_only_the_domain_is_a_custom_field() -> None:
    body = _org_body(_company(), queast_id_field_key=None)
    assert body["custom_fields"] == {DOMAIN_KEY: "acme.example"}


def test_organizations_are_looked_up_by_domain_then_name() -> None:
    assert payloads.organization_lookups(_company()) == [
        ("acme.example", "custom_fields"),
        ("Acme GmbH", "name"),
    ]
    no_domain = _company(domain=None, domains=[])
    assert payloads.organization_lookups(no_domain) == [("Acme GmbH", "name")]
    assert payloads.organization_lookups(_company(domain=None, domains=[], name=None)) == []


# -- persons ------------------------------------------------------------------------------


def _person_body(person: PersonContract, **options: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "org_id": None,
        "queast_id_field_key": QUEAST_KEY,
        "for_create": True,
    }
    settings.update(options)
    return payloads.person_body(person, **settings)


def test_person_body_for_create() -> None:
    person = _person(emails=["ada@acme.example", "ADA@ACME.EXAMPLE", "ada@home.example"])
    body = _person_body(person, org_id=7)
    assert body == {
        "name": "Ada Lovelace",
        "emails": [
            {"value": "ada@acme.example", "primary": True, "label": "work"},
            {"value": "ada@home.example", "primary": False, "label": "work"},
        ],
        "org_id": 7,
        "custom_fields": {QUEAST_KEY: "pe_1"},
    }


def test_person_name_is_full_name_else_first_and_last() -> None:
    assert payloads.person_name(_person(full_name=" Ada King ")) == "Ada King"
    assert payloads.person_name(_person(full_name=None)) == "Ada Lovelace"
    assert payloads.person_name(_person(full_name=None, first_name=None)) == "Lovelace"
    assert payloads.person_name(_person(full_name="", first_name=None, last_name=None)) is None


def test_a_new_person_without_a_name_is_named_after_the_email() -> None:
    person = _person(full_name=None, first_name=None, last_name=None)
    assert _person_body(person)["name"] == "ada@acme.example"


def test_a_new_person_without_name_or_email_is_permanent() -> None:
    person = _person(full_name=None, first_name=None, last_name=None, email=None, emails=[])
    with pytest.raises(PermanentError, match="name"):
        _person_body(person)


def test_person_body_never_sends_none() -> None:
    person = _person(full_name=None, first_name=None, last_name=None, email=None, emails=[])
    body = _person_body(person, for_create=False, queast_id_field_key=None)
    assert body == {}
    assert _no_none(_person_body(_person(company_id=None)))


def test_person_without_a_linked_company_has_no_org_id() -> None:
    assert "org_id" not in _person_body(_person(), org_id=None)


def test_an_update_adds_missing_emails_and_keeps_the_partners() -> None:
    existing = [{"value": "ada@old.example", "primary": True, "label": "home"}]
    body = _person_body(_person(), for_create=False, existing_emails=existing)
    assert body["emails"] == [
        {"value": "ada@old.example", "primary": True, "label": "home"},
        {"value": "ada@acme.example", "primary": False, "label": "work"},
    ]


def test_an_update_with_no_new_email_leaves_the_list_alone() -> None:
    existing = [{"value": "ADA@acme.example", "primary": True, "label": None}]
    body = _person_body(_person(), for_create=False, existing_emails=existing)
    assert "emails" not in body


def test_merge_emails_makes_the_first_new_one_primary_when_none_is() -> None:
    merged = payloads.merge_emails([{"value": "a@x.example", "primary": False}], ["b@x.example"])
    assert merged == [
        {"value": "a@x.example", "primary": False},
        {"value": "b@x.example", "primary": True, "label": "work"},
    ]
    assert payloads.merge_emails([], []) is None


def test_person_emails_skip_blanks_and_non_addresses() -> None:
    person = _person(email=" ", emails=["not-an-email", "b@x.example", "B@X.example"])
    assert payloads.person_emails(person) == ["b@x.example"]


# -- notes --------------------------------------------------------------------------------


def test_signal_note_has_title_summary_reasons_and_evidence_links() -> None:
    note = payloads.signal_note_html(_signal())
    assert "Hiring surge in engineering" in note
    assert "Twelve new engineering roles in two weeks." in note
    assert "<b>JOB_ADS_SPIKE</b>: 12 job ads in 14 days (evidence: ja_1)" in note
    assert '<a href="https://jobs.example/1">Senior Engineer</a>' in note
    assert "Score: 0.87" in note
    assert "Queast signal id: sig_1" in note


def test_strict_signals_do_not_show_the_contract() -> None:
    assert "contract_mode" not in payloads.signal_note_html(_signal())


@pytest.mark.parametrize("mode", ["informational", "legacy"])
def test_non_strict_signals_show_contract_mode_and_version(mode: str) -> None:
    note = payloads.signal_note_html(_signal(contract_mode=mode, contract_version="0.9"))
    assert f"contract_mode {mode}, contract_version 0.9" in note


def test_technology_tags_appear_only_in_the_decorations_line() -> None:
    note = payloads.signal_note_html(_signal())
    reasons = note.split("<p><b>Reasons</b></p>", 1)[1].split("</ul>", 1)[0]
    assert "kafka" not in reasons
    assert note.count("kafka") == 1
    assert "<p>Decorations (technology tags): kafka, python</p>" in note


def test_note_values_are_escaped_and_only_http_links_are_links() -> None:
    evidence = [
        {"kind": "job_ad", "id": "ja_1", "url": "javascript:alert(1)", "title": "<b>x</b>"},
        {"kind": "doc", "id": "d_1", "url": None, "title": None},
    ]
    note = payloads.signal_note_html(_signal(title="<script>alert(1)</script>", evidence=evidence))
    assert "<script>" not in note
    assert "&lt;script&gt;" in note
    assert 'href="javascript' not in note
    assert "&lt;b&gt;x&lt;/b&gt; (javascript:alert(1))" in note
    assert "doc d_1: d_1" in note


def test_a_signal_without_optional_parts_still_makes_a_note() -> None:
    signal = _signal(
        summary=None, score=None, reasons=[], evidence=[], decorations={"technology_tags": []}
    )
    note = payloads.signal_note_html(signal)
    assert "Reasons" not in note
    assert "Evidence" not in note
    assert "Decorations" not in note
    assert "Score" not in note


def test_long_texts_are_cut_and_the_note_stays_within_the_limit() -> None:
    reasons = [{"code": f"C{i}", "description": "x" * 10_000} for i in range(200)]
    note = payloads.signal_note_html(_signal(reasons=reasons, summary="y" * 20_000))
    assert len(note) <= payloads.MAX_NOTE_CHARS
    assert "<b>C0</b>" in note
    assert "<b>C50</b>" not in note  # at most 50 reasons
    assert "more</li></ul>" in note  # the list was shortened to fit
    assert "Queast signal id: sig_1" in note  # the closing lines always fit


def test_job_ad_note() -> None:
    job_ad = payloads.parse_job_ad(job_ad_record().payload)
    note = payloads.job_ad_note_html(job_ad)
    assert "Queast job ad: Senior Engineer" in note
    assert "Location: Berlin" in note
    assert "Posted: 2026-11-20T00:00:00Z" in note
    assert '<a href="https://jobs.example/1">https://jobs.example/1</a>' in note


def test_note_body_targets_the_organization() -> None:
    assert payloads.note_body("<p>x</p>", org_id=9) == {"content": "<p>x</p>", "org_id": 9}


# -- candidates ---------------------------------------------------------------------------


def test_search_item_ids_reads_the_v2_search_shape() -> None:
    data = {
        "items": [
            {"result_score": 1.0, "item": {"id": 3}},
            {"result_score": 0.5, "item": {"id": 3}},
            {"item": {"id": True}},
            {"item": {}},
            "junk",
            {"result_score": 0.2, "item": {"id": 8}},
        ]
    }
    assert payloads.search_item_ids(data) == [3, 8]
    assert payloads.search_item_ids(None) == []
    assert payloads.search_item_ids({"items": None}) == []


def test_organization_candidate_reads_domain_and_queast_id_fields() -> None:
    data = {
        "id": 12,
        "name": "Acme",
        "website": "https://acme.example",
        "linkedin": "https://www.linkedin.com/company/acme",
        "custom_fields": {DOMAIN_KEY: "acme.example", QUEAST_KEY: "co_1", "other": "x"},
    }
    candidate = payloads.organization_candidate(
        data, domain_field_key=DOMAIN_KEY, queast_id_field_key=QUEAST_KEY
    )
    assert candidate == IdentityCandidate(
        partner_object_id="12",
        name="Acme",
        domains=("acme.example", "https://acme.example"),
        linkedin_url="https://www.linkedin.com/company/acme",
        queast_ids=("co_1",),
    )


def test_organization_candidate_tolerates_missing_fields() -> None:
    candidate = payloads.organization_candidate(
        {"id": 5, "custom_fields": {DOMAIN_KEY: None}},
        domain_field_key=DOMAIN_KEY,
        queast_id_field_key=None,
    )
    assert candidate == IdentityCandidate(partner_object_id="5")
    assert (
        payloads.organization_candidate(
            {"name": "x"}, domain_field_key=DOMAIN_KEY, queast_id_field_key=None
        )
        is None
    )


def test_person_candidate_reads_emails_and_queast_id() -> None:
    data = {
        "id": 4,
        "name": "Ada",
        "emails": [{"value": "ada@acme.example", "primary": True}, {"value": ""}],
        "custom_fields": {QUEAST_KEY: "pe_1"},
    }
    candidate = payloads.person_candidate(data, queast_id_field_key=QUEAST_KEY)
    assert candidate == IdentityCandidate(
        partner_object_id="4", name="Ada", emails=("ada@acme.example",), queast_ids=("pe_1",)
    )

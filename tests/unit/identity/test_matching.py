"""match_company / match_person: strategies, their order, ties, thresholds and explanations."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from processors.identity.matching import (
    DEFAULT_AUTO_LINK_THRESHOLD,
    MatchOutcome,
    match_company,
    match_person,
)
from processors.identity.strategies import (
    DEFAULT_COMPANY_STRATEGIES,
    DEFAULT_PERSON_STRATEGIES,
    CompanyIdentity,
    MatchStrategy,
    PartnerCandidate,
    PersonIdentity,
)

S = MatchStrategy
AUTO, AMBIGUOUS, NONE = MatchOutcome.AUTO_LINKED, MatchOutcome.AMBIGUOUS, MatchOutcome.NO_MATCH


def company(**fields: object) -> CompanyIdentity:
    return CompanyIdentity.model_validate({"company_id": "q-1", **fields})


def person(**fields: object) -> PersonIdentity:
    return PersonIdentity.model_validate({"person_id": "p-1", **fields})


def cand(partner_object_id: str, **fields: object) -> PartnerCandidate:
    return PartnerCandidate.model_validate({"partner_object_id": partner_object_id, **fields})


# ---- partner id ---------------------------------------------------------------------------------


def test_partner_id_hint_links() -> None:
    decision = match_company(
        company(partner_id_hints=(" hs-2 ",)),
        [cand("hs-1"), cand("hs-2")],
        strategies=[S.PARTNER_ID],
    )
    assert decision.outcome is AUTO
    assert decision.partner_object_id == decision.best_candidate_id == "hs-2"
    assert decision.strategy is S.PARTNER_ID
    assert decision.confidence == 1.0
    assert decision.entity_value == decision.candidate_value == "hs-2"
    assert "partner_id" in decision.explanation
    assert "1.00" in decision.explanation


def test_queast_id_stored_on_partner_object_links() -> None:
    decision = match_company(
        company(), [cand("hs-1"), cand("hs-2", queast_ids=("q-1",))], strategies=[S.PARTNER_ID]
    )
    assert (decision.outcome, decision.partner_object_id) == (AUTO, "hs-2")


def test_conflicting_partner_ids_are_ambiguous() -> None:
    decision = match_company(
        company(partner_id_hints=("hs-1",)),
        [cand("hs-1"), cand("hs-2", queast_ids=("q-1",))],
        strategies=[S.PARTNER_ID],
    )
    assert decision.outcome is AMBIGUOUS
    assert decision.partner_object_id is None
    assert {decision.best_candidate_id, decision.runner_up_id} == {"hs-1", "hs-2"}


# ---- domain -------------------------------------------------------------------------------------


def test_domain_links_on_registrable_domain() -> None:
    decision = match_company(
        company(website="https://www.shop.acme.co.uk/about"),
        [cand("hs-1", domains=("other.co.uk",)), cand("hs-2", domains=("ACME.co.uk",))],
        strategies=[S.DOMAIN],
    )
    assert decision.outcome is AUTO
    assert decision.partner_object_id == "hs-2"
    assert decision.entity_value == decision.candidate_value == "acme.co.uk"
    assert decision.runner_up_id is None
    assert "domain" in decision.explanation
    assert "'acme.co.uk'" in decision.explanation


def test_domain_uses_all_entity_domains() -> None:
    decision = match_company(
        company(domain="acme.com", domains=("acme-robotics.de",)),
        [cand("hs-1", domains=("https://acme-robotics.de",))],
        strategies=[S.DOMAIN],
    )
    assert (decision.outcome, decision.partner_object_id) == (AUTO, "hs-1")


def test_two_candidates_with_the_same_domain_are_ambiguous() -> None:
    decision = match_company(
        company(domain="acme.com"),
        [cand("hs-1", domains=("acme.com",)), cand("hs-2", domains=("www.acme.com",))],
        strategies=[S.DOMAIN, S.COMPANY_NAME],
    )
    assert decision.outcome is AMBIGUOUS
    assert decision.strategy is S.DOMAIN
    assert decision.partner_object_id is None
    assert (decision.best_candidate_id, decision.runner_up_id) == ("hs-1", "hs-2")
    assert decision.confidence == decision.runner_up_score == 1.0
    assert "2 candidates" in decision.explanation


def test_the_same_object_listed_twice_is_not_a_tie() -> None:
    decision = match_company(
        company(domain="acme.com"),
        [cand("hs-1", domains=("acme.com",)), cand("hs-1", name="Acme")],
        strategies=[S.DOMAIN],
    )
    assert (decision.outcome, decision.partner_object_id) == (AUTO, "hs-1")


def test_shared_platform_domains_are_ignored() -> None:
    decision = match_company(
        company(website="https://www.facebook.com/acmebakery", domain="gmail.com"),
        [cand("hs-1", domains=("facebook.com",)), cand("hs-2", domains=("gmail.com",))],
        strategies=[S.DOMAIN],
    )
    assert decision.outcome is NONE
    assert "shared platform" in decision.explanation
    assert "facebook.com" in decision.explanation


# ---- email and LinkedIn -------------------------------------------------------------------------


def test_email_links_a_person_case_insensitively() -> None:
    decision = match_person(
        person(email=" Jane.Doe@ACME.com"),
        [cand("pd-1", emails=("john@acme.com",)), cand("pd-2", emails=("jane.doe@acme.com",))],
        strategies=[S.EMAIL],
    )
    assert (decision.outcome, decision.partner_object_id) == (AUTO, "pd-2")
    assert decision.entity_value == "jane.doe@acme.com"
    assert "email" in decision.explanation


def test_plus_tagged_email_is_a_different_mailbox() -> None:
    decision = match_person(
        person(emails=("jane+crm@acme.com",)),
        [cand("pd-1", emails=("jane@acme.com",))],
        strategies=[S.EMAIL],
    )
    assert decision.outcome is NONE


def test_two_people_with_the_same_email_are_ambiguous() -> None:
    decision = match_person(
        person(email="jane@acme.com"),
        [cand("pd-1", emails=("jane@acme.com",)), cand("pd-2", emails=("JANE@acme.com",))],
        strategies=[S.EMAIL],
    )
    assert decision.outcome is AMBIGUOUS
    assert decision.runner_up_id == "pd-2"


def test_linkedin_links_companies_and_people_by_their_own_kind_of_page() -> None:
    company_decision = match_company(
        company(linkedin_url="https://uk.linkedin.com/company/Acme/"),
        [
            cand("hs-1", linkedin_url="linkedin.com/in/acme"),
            cand("hs-2", linkedin_url="www.linkedin.com/company/acme?trk=x"),
        ],
        strategies=[S.LINKEDIN_URL],
    )
    assert (company_decision.outcome, company_decision.partner_object_id) == (AUTO, "hs-2")
    assert company_decision.entity_value == "linkedin.com/company/acme"

    person_decision = match_person(
        person(linkedin_url="https://www.linkedin.com/in/jane-doe"),
        [
            cand("pd-1", linkedin_url="linkedin.com/company/jane-doe"),
            cand("pd-2", linkedin_url="http://de.linkedin.com/in/Jane-Doe/"),
        ],
        strategies=[S.LINKEDIN_URL],
    )
    assert (person_decision.outcome, person_decision.partner_object_id) == (AUTO, "pd-2")


def test_person_profile_url_on_a_company_is_not_used() -> None:
    decision = match_company(
        company(linkedin_url="https://www.linkedin.com/in/acme"),
        [cand("hs-1", linkedin_url="https://www.linkedin.com/in/acme")],
        strategies=[S.LINKEDIN_URL],
    )
    assert decision.outcome is NONE


# ---- fuzzy company name -------------------------------------------------------------------------


def test_name_auto_links_a_clear_best_candidate() -> None:
    decision = match_company(
        company(name="Procter & Gamble"),
        [cand("hs-1", name="Procter and Gamble Co."), cand("hs-2", name="Gamble Holdings")],
        strategies=[S.COMPANY_NAME],
    )
    assert decision.outcome is AUTO
    assert decision.partner_object_id == "hs-1"
    assert decision.strategy is S.COMPANY_NAME
    assert decision.confidence == 1.0
    assert decision.entity_value == decision.candidate_value == "procter and gamble"
    assert decision.runner_up_id == "hs-2"
    assert decision.runner_up_score is not None
    assert decision.runner_up_score < 0.5
    assert "company_name" in decision.explanation
    assert "1.00" in decision.explanation
    assert ">= auto-link threshold" in decision.explanation


def test_two_close_name_candidates_are_ambiguous() -> None:
    decision = match_company(
        company(name="Acme Robotics Inc"),
        [cand("hs-1", name="Acme Robotics"), cand("hs-2", name="ACME Robotic")],
        strategies=[S.COMPANY_NAME],
    )
    assert decision.outcome is AMBIGUOUS
    assert decision.partner_object_id is None
    assert decision.best_candidate_id == "hs-1"
    assert decision.runner_up_id == "hs-2"
    assert decision.confidence == 1.0
    assert decision.runner_up_score == pytest.approx(0.98)
    assert "margin" in decision.explanation


def test_name_below_threshold_but_above_floor_is_ambiguous() -> None:
    decision = match_company(
        company(name="Siemans"), [cand("hs-1", name="Siemens AG")], strategies=[S.COMPANY_NAME]
    )
    assert decision.outcome is AMBIGUOUS
    assert decision.best_candidate_id == "hs-1"
    assert decision.confidence == pytest.approx(0.833, abs=1e-3)
    assert "0.83 < auto-link threshold" in decision.explanation


def test_name_below_review_floor_is_no_match() -> None:
    decision = match_company(
        company(name="Acme Robotics"),
        [cand("hs-1", name="Acme Logistics"), cand("hs-2")],
        strategies=[S.COMPANY_NAME],
    )
    assert decision.outcome is NONE
    assert decision.best_candidate_id is None
    assert decision.strategy is None
    assert 0.0 < decision.confidence < 0.8
    assert "review floor" in decision.explanation


def test_threshold_margin_and_floor_are_configurable() -> None:
    entity = company(name="Siemans")
    candidates = [cand("hs-1", name="Siemens")]
    assert (
        match_company(
            entity, candidates, strategies=[S.COMPANY_NAME], auto_link_threshold=0.8
        ).outcome
        is AUTO
    )
    assert (
        match_company(entity, candidates, strategies=[S.COMPANY_NAME], review_floor=0.9).outcome
        is NONE
    )
    close = [cand("hs-1", name="Acme Robotics"), cand("hs-2", name="Acme Robotic")]
    assert (
        match_company(
            company(name="Acme Robotics"),
            close,
            strategies=[S.COMPANY_NAME],
            ambiguity_margin=0.0,
        ).outcome
        is AUTO
    )


@pytest.mark.parametrize(
    "settings",
    [
        {"auto_link_threshold": 0.0},
        {"auto_link_threshold": 1.5},
        {"ambiguity_margin": -0.1},
        {"ambiguity_margin": 1.0},
        {"review_floor": 0.95, "auto_link_threshold": 0.9},
        {"review_floor": -0.1},
    ],
)
def test_invalid_settings_raise(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        match_company(company(name="Acme"), [], strategies=[S.COMPANY_NAME], **settings)


# ---- order of strategies ------------------------------------------------------------------------

ORDER_CANDIDATES = [
    cand("by-domain", name="Zenith Partners", domains=("acme.com",)),
    cand("by-name", name="Acme Robotics, Inc.", domains=("acme-robotics.io",)),
]
ORDER_ENTITY = company(name="Acme Robotics", domain="acme.com")


def test_strategy_order_is_honoured() -> None:
    first_domain = match_company(
        ORDER_ENTITY, ORDER_CANDIDATES, strategies=[S.DOMAIN, S.COMPANY_NAME]
    )
    first_name = match_company(
        ORDER_ENTITY, ORDER_CANDIDATES, strategies=[S.COMPANY_NAME, S.DOMAIN]
    )
    assert (first_domain.strategy, first_domain.partner_object_id) == (S.DOMAIN, "by-domain")
    assert (first_name.strategy, first_name.partner_object_id) == (S.COMPANY_NAME, "by-name")
    assert [a.strategy for a in first_domain.attempts] == [S.DOMAIN]
    assert [a.strategy for a in first_name.attempts] == [S.COMPANY_NAME]


def test_strategies_that_find_nothing_fall_through() -> None:
    decision = match_company(
        company(name="Acme Robotics", domain="unknown-domain.com"),
        ORDER_CANDIDATES,
        strategies=DEFAULT_COMPANY_STRATEGIES,
    )
    assert (decision.strategy, decision.partner_object_id) == (S.COMPANY_NAME, "by-name")
    assert [a.strategy for a in decision.attempts] == list(DEFAULT_COMPANY_STRATEGIES)
    assert "Tried before: partner_id" in decision.explanation
    assert "no candidate shares 'unknown-domain.com'" in decision.explanation


def test_inapplicable_and_repeated_strategies() -> None:
    company_decision = match_company(
        company(name="Acme"), [cand("hs-1", name="Acme")], strategies=[S.EMAIL, S.EMAIL]
    )
    assert company_decision.outcome is NONE
    assert [a.strategy for a in company_decision.attempts] == [S.EMAIL]
    assert "not applicable to companies" in company_decision.explanation

    person_decision = match_person(
        person(full_name="Acme", email="jane@acme.com"),
        [cand("pd-1", name="Acme", domains=("acme.com",))],
        strategies=[S.COMPANY_NAME, S.DOMAIN],
    )
    assert person_decision.outcome is NONE
    assert "not applicable to people" in person_decision.explanation


def test_no_strategies_or_candidates_is_no_match() -> None:
    assert match_company(company(name="Acme"), [], strategies=[]).outcome is NONE
    decision = match_person(person(email="jane@acme.com"), [], strategies=DEFAULT_PERSON_STRATEGIES)
    assert decision.outcome is NONE
    assert decision.confidence == 0.0
    assert decision.auto_link_threshold == DEFAULT_AUTO_LINK_THRESHOLD


def test_person_default_strategies_end_to_end() -> None:
    decision = match_person(
        person(email="jane@acme.com", linkedin_url="linkedin.com/in/jane"),
        [
            cand("pd-1", emails=("someone@acme.com",), linkedin_url="linkedin.com/in/jane"),
            cand("pd-2", emails=("other@acme.com",)),
        ],
        strategies=DEFAULT_PERSON_STRATEGIES,
    )
    assert (decision.outcome, decision.strategy, decision.partner_object_id) == (
        AUTO,
        S.LINKEDIN_URL,
        "pd-1",
    )
    assert "Tried before: partner_id" in decision.explanation
    assert "email (no candidate shares 'jane@acme.com')" in decision.explanation


# ---- models -------------------------------------------------------------------------------------


def test_models_are_frozen_and_strict() -> None:
    entity = company(name="Acme")
    with pytest.raises(ValidationError):
        entity.name = "Other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        CompanyIdentity.model_validate({"company_id": "q-1", "unknown": 1})
    with pytest.raises(ValidationError):
        PartnerCandidate.model_validate({"partner_object_id": ""})

"""One meaning of "same company": the kit's match keys, shared by identity and connectors."""

from __future__ import annotations

import pathlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.base import EntityKind, matchkeys
from connectors.base.matchkeys import (
    clean_email,
    clean_host,
    normalize_domain,
    normalize_email,
    normalize_linkedin_url,
)
from connectors.hubspot.exports import CompanyWrite
from connectors.hubspot.properties import company_properties
from connectors.hubspot.search import LookupStrategy, entity_keys
from connectors.pipedrive import payloads as pipedrive
from processors.identity import strategies
from tests.unit.connectors.pipedrive.fakes import company_record


def test_identity_matching_uses_the_kits_normalisers() -> None:
    entity = strategies.CompanyIdentity(
        company_id="co_1", website="https://www.shop.acme.co.uk/x", linkedin_url="acme"
    )
    assert strategies.entity_keys(strategies.MatchStrategy.DOMAIN, entity) == ["acme.co.uk"]
    source = pathlib.Path(strategies.__file__).read_text()
    assert "from connectors.base.matchkeys import" in source
    assert "def normalize_" not in source


def test_the_identity_layer_names_no_partner() -> None:
    package = pathlib.Path(strategies.__file__).parent
    for module in package.glob("*.py"):
        assert not re.search(r"hubspot|pipedrive", module.read_text(), re.IGNORECASE), module


def test_the_domain_key_is_registrable_and_the_written_host_is_not() -> None:
    url = "https://www.Shop.Acme.co.uk:8443/about"
    assert normalize_domain(url) == "acme.co.uk"
    assert clean_host(url) == "shop.acme.co.uk"
    assert normalize_domain("shop.acme.co.uk") == normalize_domain("acme.co.uk")


@pytest.mark.parametrize(
    "domain",
    [
        "acme.example",
        " WWW.Acme.Example. ",
        "https://acme.example/about",
        "acme.example:8443",
        "ops@acme.example",
        "http://shop.acme.example?x=1",
    ],
)
def test_hubspot_and_pipedrive_write_the_same_host(domain: str) -> None:
    sent_to_hubspot = company_properties(
        {"company_id": "co_1", "domain": domain}, queast_id_property="queast_id"
    )["domain"]
    company = pipedrive.parse_company(company_record(domain=domain, domains=[]).payload)
    assert sent_to_hubspot == pipedrive.primary_domain(company) == clean_host(domain)


@pytest.mark.parametrize(
    "url",
    [
        "https://www.linkedin.com/company/a%2Fb",
        "https://www.linkedin.com/company/acme%00x",
    ],
)
def test_search_keys_and_identity_keys_agree_on_linkedin_pages(url: str) -> None:
    write = CompanyWrite(queast_id="co_1", properties={}, linkedin_url=url)
    assert normalize_linkedin_url(url, kind="company") is None
    assert not entity_keys(write, [LookupStrategy.LINKEDIN_URL])


def test_linkedin_kind_accepts_the_entity_kind() -> None:
    url = "https://uk.linkedin.com/in/Ada/"
    assert normalize_linkedin_url(url, kind=EntityKind.PERSON) == "linkedin.com/in/ada"
    assert normalize_linkedin_url(url, kind="person") == "linkedin.com/in/ada"
    assert normalize_linkedin_url(url, kind=EntityKind.COMPANY) is None


def test_clean_email_keeps_what_the_key_would_refuse() -> None:
    assert clean_email(" Ada@People.Example ") == "ada@people.example"
    assert normalize_email("ada@people.example") is None  # no known public suffix
    assert clean_email("no-at-sign") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.1", None),
        ("https://192.168.1.20:8443/x", None),
        ("[2001:db8::1]", None),
        ("http://[::1]/", None),
        ("jane@127.0.0.1", None),
        ("app1.acme.com", "acme.com"),
        ("shop.acme.co.uk", "acme.co.uk"),
    ],
)
def test_ip_addresses_are_no_domains_and_hosts_ending_in_a_digit_still_are(
    value: str, expected: str | None
) -> None:
    assert normalize_domain(value) == expected


@given(st.text(max_size=40) | st.from_regex(r"(https?://)?[a-z0-9.\-\[\]:]{1,30}(/x)?"))
def test_a_remembered_answer_is_the_answer(value: str) -> None:
    first = normalize_domain(value)
    assert normalize_domain(value) == first == matchkeys._registrable_domain(value)


def test_long_inputs_are_answered_but_not_remembered() -> None:
    matchkeys._registrable_domain_cached.cache_clear()  # forgetting is always safe
    assert normalize_domain("https://www.acme.com/" + "x" * 5000) == "acme.com"
    assert matchkeys._registrable_domain_cached.cache_info().currsize == 0
    assert normalize_domain("https://www.acme.com/") == "acme.com"
    assert matchkeys._registrable_domain_cached.cache_info().currsize == 1

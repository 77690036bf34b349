"""Domain, e-mail and LinkedIn URL normalisers: tables of valid and invalid inputs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.base.matchkeys import (
    normalize_domain,
    normalize_email,
    normalize_linkedin_url,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("acme.com", "acme.com"),
        ("ACME.com.", "acme.com"),
        ("  acme.com  ", "acme.com"),
        ("www.acme.com", "acme.com"),
        ("https://www.shop.example.co.uk/x", "example.co.uk"),
        ("HTTP://WWW.ACME.COM:8080/path?q=1#frag", "acme.com"),
        ("acme.com:8443/about", "acme.com"),
        ("//acme.com/", "acme.com"),
        ("ftp://files.acme.org", "acme.org"),
        ("jane@mail.acme.com", "acme.com"),
        ("mailto:jane@acme.com", "acme.com"),
        ("Jane Doe <jane@acme.de>", "acme.de"),
        ("münchen.de", "xn--mnchen-3ya.de"),
        ("https://www.MÜNCHEN.de/", "xn--mnchen-3ya.de"),
        ("xn--mnchen-3ya.de", "xn--mnchen-3ya.de"),
        ("foo.github.io", "foo.github.io"),  # private suffix: sites are separate
        ("a.b.c.acme.com.au", "acme.com.au"),
        ("acme.com/path@other.com", "acme.com"),  # a URL, not an e-mail address
    ],
)
def test_normalize_domain(value: str, expected: str) -> None:
    assert normalize_domain(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "acme",
        "localhost",
        "com",
        "co.uk",
        "acme.invalidtld",
        "192.168.0.1",
        "http://[::1]/",
        "http://[broken",
        "a..b.com",
        "-acme.com",
        "acme_.com",
        "ac me.com",
        "http://",
        "jane@@acme.com",
        "x" * 70 + ".com",
    ],
)
def test_normalize_domain_rejects(value: str | None) -> None:
    assert normalize_domain(value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("jane@acme.com", "jane@acme.com"),
        ("  Jane.Doe@ACME.com ", "jane.doe@acme.com"),
        ("jane+billing@acme.com", "jane+billing@acme.com"),  # plus-tags are kept
        ("j.a.n.e@gmail.com", "j.a.n.e@gmail.com"),  # dots are kept
        ("mailto:jane@acme.com", "jane@acme.com"),
        ("Jane Doe <jane@acme.com>", "jane@acme.com"),
        ("jane@sub.acme.co.uk", "jane@sub.acme.co.uk"),  # the host is not shortened
        ("jane@münchen.de", "jane@xn--mnchen-3ya.de"),
        ("jürgen@acme.de", "jürgen@acme.de"),
        ("o'brien@acme.ie", "o'brien@acme.ie"),
    ],
)
def test_normalize_email(value: str, expected: str) -> None:
    assert normalize_email(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "jane",
        "jane@",
        "@acme.com",
        "jane@@acme.com",
        "ja@ne@acme.com",
        "jane.@acme.com",
        ".jane@acme.com",
        "ja..ne@acme.com",
        "ja ne@acme.com",
        '"jane"@acme.com',
        "jane\x00@acme.com",
        "jane@acme",
        "jane@localhost",
        "jane@co.uk",
        "jane@192.168.0.1",
        "a" * 65 + "@acme.com",
    ],
)
def test_normalize_email_rejects(value: str | None) -> None:
    assert normalize_email(value) is None


def test_plus_tags_and_dots_stay_distinct() -> None:
    assert normalize_email("jane+eu@acme.com") != normalize_email("jane@acme.com")
    assert normalize_email("ja.ne@acme.com") != normalize_email("jane@acme.com")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://www.linkedin.com/company/Acme-Robotics/", "linkedin.com/company/acme-robotics"),
        ("http://linkedin.com/company/acme-robotics", "linkedin.com/company/acme-robotics"),
        ("uk.linkedin.com/company/acme/about/?trk=x", "linkedin.com/company/acme"),
        ("LINKEDIN.COM/COMPANY/ACME", "linkedin.com/company/acme"),
        ("//www.linkedin.com/company/acme", "linkedin.com/company/acme"),
        ("https://www.linkedin.com/company/1035/", "linkedin.com/company/1035"),
        ("https://de.linkedin.com/in/Jane-Doe-123/", "linkedin.com/in/jane-doe-123"),
        ("https://m.linkedin.com/in/janedoe#top", "linkedin.com/in/janedoe"),
        ("linkedin.com/in/J%C3%BCrgen-M%C3%BCller", "linkedin.com/in/jürgen-müller"),
    ],
)
def test_normalize_linkedin_url(value: str, expected: str) -> None:
    assert normalize_linkedin_url(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "acme",
        "https://www.linkedin.com/",
        "https://www.linkedin.com/feed/",
        "https://www.linkedin.com/school/mit/",
        "https://www.linkedin.com/pub/jane/1/2/3",
        "https://www.linkedin.com/jobs/view/123",
        "https://www.linkedin.com/company/",
        "https://www.linkedin.com/company/%20/",
        "https://www.linkedin.com/company/a%2Fb",
        "https://lnkd.in/abc",
        "https://notlinkedin.com/company/acme",
        "https://linkedin.com.evil.example/company/acme",
        "https://evil.example/linkedin.com/company/acme",
        "https://user@linkedin.com/company/acme",
        "ftp://linkedin.com/company/acme",
        "http://[broken/company/acme",
    ],
)
def test_normalize_linkedin_url_rejects(value: str | None) -> None:
    assert normalize_linkedin_url(value) is None


def test_normalize_linkedin_url_kind() -> None:
    company = "https://www.linkedin.com/company/acme"
    person = "https://www.linkedin.com/in/jane"
    assert normalize_linkedin_url(company, kind="company") == "linkedin.com/company/acme"
    assert normalize_linkedin_url(company, kind="person") is None
    assert normalize_linkedin_url(person, kind="person") == "linkedin.com/in/jane"
    assert normalize_linkedin_url(person, kind="company") is None


@given(st.text(max_size=80))
def test_normalisers_never_raise(value: str) -> None:
    for result in (normalize_domain(value), normalize_email(value), normalize_linkedin_url(value)):
        assert result is None or (result and result == result.strip())
    domain = normalize_domain(value)
    if domain is not None:
        assert normalize_domain(domain) == domain

"""Match strategies and the keys each compares: what identifies a company or a person.

:class:`MatchStrategy` names a strategy; :class:`CompanyIdentity` and
:class:`PersonIdentity` are what Queast knows about an entity, :class:`PartnerCandidate`
what a partner object shows. :func:`entity_keys` and :func:`candidate_keys` give the
normalised keys an exact strategy compares, made by the one set of normalisers in
:mod:`connectors.base.matchkeys`:

``partner_id``
    The partner object ids the entity is known to correspond to, and the Queast id
    (namespaced ``partner:``/``queast:`` so the two never collide).
``domain`` (companies)
    Registrable domains of the company's domains and website, except
    :data:`SHARED_DOMAINS` (platforms, not companies).
``email`` (people)
    Normalised e-mail addresses.
``linkedin_url``
    Canonical ``linkedin.com/company/<slug>`` (companies) or ``linkedin.com/in/<slug>``
    (people).

``company_name`` is fuzzy and has no keys: see :mod:`processors.identity.names`.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from connectors.base.matchkeys import (
    LinkedInKind,
    normalize_domain,
    normalize_email,
    normalize_linkedin_url,
)

__all__ = [
    "COMPANY_STRATEGIES",
    "DEFAULT_COMPANY_STRATEGIES",
    "DEFAULT_PERSON_STRATEGIES",
    "KEY_NOUNS",
    "PERSON_STRATEGIES",
    "SHARED_DOMAINS",
    "CompanyIdentity",
    "MatchStrategy",
    "PartnerCandidate",
    "PersonIdentity",
    "candidate_keys",
    "describe_key",
    "display_key",
    "entity_keys",
    "linkedin_kind",
    "shared_domains_of",
]

SHARED_DOMAINS: frozenset[str] = frozenset(
    {
        # free / consumer mail providers
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "hotmail.co.uk",
        "live.com",
        "msn.com",
        "yahoo.com",
        "yahoo.co.uk",
        "ymail.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "proton.me",
        "protonmail.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "mail.com",
        "mail.ru",
        "yandex.ru",
        "qq.com",
        "163.com",
        "zoho.com",
        # platforms a small company's "website" often points into
        "google.com",
        "facebook.com",
        "instagram.com",
        "linkedin.com",
        "twitter.com",
        "x.com",
        "youtube.com",
        "linktr.ee",
        "wixsite.com",
        "wordpress.com",
        "squarespace.com",
        "yelp.com",
    }
)
"""Registrable domains that identify a platform rather than the company using it.

Matching two companies because both list ``gmail.com`` or a ``facebook.com/...`` page as their
website would be a false link, so these are ignored by the ``domain`` strategy.
"""


class MatchStrategy(StrEnum):
    """How an entity can be matched to a partner object; configured per connection, in order."""

    PARTNER_ID = "partner_id"
    DOMAIN = "domain"
    EMAIL = "email"
    LINKEDIN_URL = "linkedin_url"
    COMPANY_NAME = "company_name"


DEFAULT_COMPANY_STRATEGIES: tuple[MatchStrategy, ...] = (
    MatchStrategy.PARTNER_ID,
    MatchStrategy.DOMAIN,
    MatchStrategy.LINKEDIN_URL,
    MatchStrategy.COMPANY_NAME,
)
"""A sensible order for companies: explicit links, then exact keys, then the fuzzy name."""

DEFAULT_PERSON_STRATEGIES: tuple[MatchStrategy, ...] = (
    MatchStrategy.PARTNER_ID,
    MatchStrategy.EMAIL,
    MatchStrategy.LINKEDIN_URL,
)
"""A sensible order for people (names of people are not matched fuzzily)."""

COMPANY_STRATEGIES: frozenset[MatchStrategy] = frozenset(
    {
        MatchStrategy.PARTNER_ID,
        MatchStrategy.DOMAIN,
        MatchStrategy.LINKEDIN_URL,
        MatchStrategy.COMPANY_NAME,
    }
)
"""The strategies that can identify a company."""
PERSON_STRATEGIES: frozenset[MatchStrategy] = frozenset(
    {MatchStrategy.PARTNER_ID, MatchStrategy.EMAIL, MatchStrategy.LINKEDIN_URL}
)
"""The strategies that can identify a person (a shared domain or a similar name cannot)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CompanyIdentity(_Frozen):
    """What Queast knows about a company that can identify it in a partner CRM."""

    company_id: str = Field(min_length=1)
    name: str | None = None
    domain: str | None = None
    domains: tuple[str, ...] = ()
    website: str | None = None
    linkedin_url: str | None = None
    partner_id_hints: tuple[str, ...] = ()
    """Partner object ids this company is already known to correspond to (e.g. a prior link)."""


class PersonIdentity(_Frozen):
    """What Queast knows about a person that can identify them in a partner CRM."""

    person_id: str = Field(min_length=1)
    full_name: str | None = None
    email: str | None = None
    emails: tuple[str, ...] = ()
    linkedin_url: str | None = None
    partner_id_hints: tuple[str, ...] = ()
    """Partner object ids this person is already known to correspond to (e.g. a prior link)."""


class PartnerCandidate(_Frozen):
    """A partner CRM object (a company, contact or person record) that might be the entity."""

    partner_object_id: str = Field(min_length=1)
    name: str | None = None
    domains: tuple[str, ...] = ()
    """Domains or website URLs recorded on the object."""
    emails: tuple[str, ...] = ()
    linkedin_url: str | None = None
    queast_ids: tuple[str, ...] = ()
    """Queast company/person ids stored on the partner object (e.g. a ``queast_id`` property)."""


# ---- per-strategy key extraction -----------------------------------------------------------


def shared_domains_of(entity: CompanyIdentity) -> list[str]:
    """The shared platform domains among the company's, which the ``domain`` strategy ignores."""
    return _domains([entity.domain, *entity.domains, entity.website])[1]


def _clean_ids(values: Iterable[str | None]) -> list[str]:
    """Stripped, non-empty, de-duplicated ids in their original order."""
    seen: dict[str, None] = {}
    for value in values:
        if value is not None and value.strip():
            seen.setdefault(value.strip(), None)
    return list(seen)


def _domains(values: Iterable[str | None]) -> tuple[list[str], list[str]]:
    """Registrable domains of ``values`` (in order, unique) and the ignored shared ones."""
    usable: dict[str, None] = {}
    shared: dict[str, None] = {}
    for value in values:
        domain = normalize_domain(value)
        if domain is None:
            continue
        (shared if domain in SHARED_DOMAINS else usable).setdefault(domain, None)
    return list(usable), list(shared)


def _emails(values: Iterable[str | None]) -> list[str]:
    """Normalised e-mail addresses of ``values`` (in order, unique)."""
    return list({email: None for value in values if (email := normalize_email(value))})


def entity_keys(strategy: MatchStrategy, entity: CompanyIdentity | PersonIdentity) -> list[str]:
    """The normalised keys of ``entity`` that an exact strategy compares."""
    if strategy is MatchStrategy.PARTNER_ID:
        entity_id = entity.company_id if isinstance(entity, CompanyIdentity) else entity.person_id
        hints = [f"partner:{hint}" for hint in _clean_ids(entity.partner_id_hints)]
        return [*hints, *(f"queast:{qid}" for qid in _clean_ids([entity_id]))]
    if strategy is MatchStrategy.DOMAIN and isinstance(entity, CompanyIdentity):
        return _domains([entity.domain, *entity.domains, entity.website])[0]
    if strategy is MatchStrategy.EMAIL and isinstance(entity, PersonIdentity):
        return _emails([entity.email, *entity.emails])
    if strategy is MatchStrategy.LINKEDIN_URL:
        url = normalize_linkedin_url(entity.linkedin_url, kind=linkedin_kind(entity))
        return [url] if url else []
    raise ValueError(f"{strategy.value} is not an exact strategy for {type(entity).__name__}")


def candidate_keys(
    strategy: MatchStrategy, candidate: PartnerCandidate, *, kind: LinkedInKind
) -> list[str]:
    """The normalised keys of ``candidate`` that an exact strategy compares."""
    if strategy is MatchStrategy.PARTNER_ID:
        return [
            f"partner:{candidate.partner_object_id.strip()}",
            *(f"queast:{qid}" for qid in _clean_ids(candidate.queast_ids)),
        ]
    if strategy is MatchStrategy.DOMAIN:
        return _domains(candidate.domains)[0]
    if strategy is MatchStrategy.EMAIL:
        return _emails(candidate.emails)
    url = normalize_linkedin_url(candidate.linkedin_url, kind=kind)
    return [url] if url else []


def linkedin_kind(entity: CompanyIdentity | PersonIdentity) -> LinkedInKind:
    """Companies match company pages, people match member profiles."""
    return "company" if isinstance(entity, CompanyIdentity) else "person"


def display_key(key: str) -> str:
    """A key without its internal namespace prefix (partner-id keys are namespaced)."""
    for prefix in ("partner:", "queast:"):
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def describe_key(key: str) -> str:
    """A key as shown in explanations."""
    if key.startswith("partner:"):
        return f"partner id {display_key(key)!r}"
    if key.startswith("queast:"):
        return f"Queast id {display_key(key)!r} stored on the partner object"
    return repr(key)


KEY_NOUNS: dict[MatchStrategy, str] = {
    MatchStrategy.PARTNER_ID: "partner id hint or Queast id",
    MatchStrategy.DOMAIN: "usable domain",
    MatchStrategy.EMAIL: "valid e-mail address",
    MatchStrategy.LINKEDIN_URL: "LinkedIn URL of the right kind",
}

"""HubSpot company and contact properties from contract records.

Companies: ``name``; ``domain`` (the main domain: ``domain``, else the first of
``domains``, as a bare host, see :func:`~connectors.base.matchkeys.clean_host`);
``hs_additional_domains`` (the other domains, ``;``-joined); ``website``;
``linkedin_company_page``; ``queast_industry`` (a custom text property, so a Queast label
never trips HubSpot's ``industry`` enumeration); ``numberofemployees`` (left out when
negative); ``country``; and the Queast id property. Contacts: ``email``, ``firstname``,
``lastname`` (from ``full_name`` only when both are missing), ``jobtitle``,
``queast_linkedin_url`` and the Queast id property.

A value that is ``None`` or blank is **left out**, never sent as ``""``: HubSpot clears a
property given ``""``, and fields the partner owns are never blanked by us.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.base.contract import CompanyRecord, PersonRecord
from connectors.base.matchkeys import clean_email, clean_host, distinct, stripped
from connectors.hubspot.exports import parse

__all__ = [
    "company_domains",
    "company_properties",
    "contact_properties",
    "person_emails",
    "record_company_properties",
    "record_contact_properties",
]


def _without_none(values: Mapping[str, str | None]) -> dict[str, str]:
    return {key: value for key, value in values.items() if value is not None}


def company_domains(company: CompanyRecord) -> tuple[str, ...]:
    """The company's hosts, the main one first, each once."""
    return distinct([clean_host(company.domain), *(clean_host(d) for d in company.domains)])


def company_properties(payload: Mapping[str, Any], *, queast_id_property: str) -> dict[str, str]:
    """HubSpot company properties for a ``company.upserted`` record (``None`` left out)."""
    company = parse(CompanyRecord, payload, "company")
    return record_company_properties(company, queast_id_property=queast_id_property)


def record_company_properties(company: CompanyRecord, *, queast_id_property: str) -> dict[str, str]:
    """HubSpot company properties of a parsed company record (``None`` left out)."""
    domains = company_domains(company)
    employees = company.employee_count
    return _without_none(
        {
            "name": stripped(company.name),
            "domain": domains[0] if domains else None,
            "hs_additional_domains": ";".join(domains[1:]) or None,
            "website": stripped(company.website),
            "linkedin_company_page": stripped(company.linkedin_url),
            "queast_industry": stripped(company.industry),
            "numberofemployees": str(employees)
            if employees is not None and employees >= 0
            else None,
            "country": stripped(company.country),
            queast_id_property: company.company_id,
        }
    )


def person_emails(person: PersonRecord) -> tuple[str, ...]:
    """The person's addresses as HubSpot stores them, ``email`` first, each once."""
    return distinct([clean_email(person.email), *(clean_email(e) for e in person.emails)])


def _names(person: PersonRecord) -> tuple[str | None, str | None]:
    first, last = stripped(person.first_name), stripped(person.last_name)
    full = stripped(person.full_name)
    if first is None and last is None and full is not None:
        given, _, family = full.partition(" ")
        return given, stripped(family)
    return first, last


def contact_properties(payload: Mapping[str, Any], *, queast_id_property: str) -> dict[str, str]:
    """HubSpot contact properties for a ``person.upserted`` record (``None`` left out)."""
    person = parse(PersonRecord, payload, "person")
    return record_contact_properties(person, queast_id_property=queast_id_property)


def record_contact_properties(person: PersonRecord, *, queast_id_property: str) -> dict[str, str]:
    """HubSpot contact properties of a parsed person record (``None`` left out)."""
    emails = person_emails(person)
    first, last = _names(person)
    return _without_none(
        {
            "email": emails[0] if emails else None,
            "firstname": first,
            "lastname": last,
            "jobtitle": stripped(person.title),
            "queast_linkedin_url": stripped(person.linkedin_url),
            queast_id_property: person.person_id,
        }
    )

"""Contract records in, HubSpot request bodies out: pure functions, no I/O.

:func:`export_for` turns one :class:`~connectors.base.sink.OutboundRecord` (its ``payload``
is an Avro contract record as a dict) into what the sink writes:

==================  ========================================================================
``company.upserted``  :class:`CompanyWrite`: company properties
``person.upserted``   :class:`PersonWrite`: contact properties (+ the Queast company id)
``signal.emitted``    :class:`NoteWrite`: a note on the company (and linked contacts)
``job_ad.published``  :class:`NoteWrite`: a note on the company citing the job ad
``*.deleted``         :class:`Deletion` of the linked company or contact
==================  ========================================================================

Property mapping. Companies: ``name``; ``domain`` (the main domain: ``domain``, else the
first of ``domains``); ``hs_additional_domains`` (the other domains, ``;``-joined);
``website``; ``linkedin_company_page``; ``queast_industry`` (a custom text property, so a
Queast label never trips HubSpot's ``industry`` enumeration); ``numberofemployees``;
``country``; and the Queast id property. Contacts: ``email``, ``firstname``, ``lastname``
(from ``full_name`` only when both are missing), ``jobtitle``, ``queast_linkedin_url`` and
the Queast id property. A value that is ``None`` or blank is **left out**, never sent as
``""``: HubSpot clears a property given ``""``, and fields the partner owns are never
blanked by us.

Notes: ``hs_timestamp`` (ISO-8601 UTC with milliseconds) and ``hs_note_body``, HTML with
every text escaped: the title, the contract mode and version first and in bold for
non-strict signals (informational, legacy), the summary, the reasons with their codes, the
evidence links (``http(s)`` only) and, last and apart, a "Decorations" line for technology
tags, which are never reasons. Bodies are kept under HubSpot's 65,536 characters by
dropping trailing evidence and reasons (saying how many).

First links. :func:`lookups` lists, per identity strategy, the lower-cased values an
``IN`` search filter looks up for an entity (HubSpot's ``IN`` on a string property matches
only lower-case values): the Queast id property (``partner_id``), ``domain`` (companies),
``email`` (contacts), the LinkedIn property (``linkedin_company_page`` for companies,
``queast_linkedin_url`` for contacts, as the raw URL and as
``https://www.linkedin.com/company|in/<slug>``) and ``name`` (``company_name``).
:func:`search_requests` packs the distinct values of many entities into as few search
bodies as fit HubSpot's limits (at most 3,000 characters, measured on the exact bytes
:func:`encode_json` produces, with room left for a paging ``after``; at most five filter
groups, one ``IN`` filter each). Results are matched back to entities on normalised keys
(:func:`entity_keys`, :func:`candidate_keys`): the Queast id as is; domains as bare host
names (case, scheme, ``www.``, port, path and trailing dot dropped, IDNA-encoded; not cut to
the registrable domain, which would hand every ``*.example.com`` company the others'
objects); e-mail addresses lower-cased; LinkedIn URLs as ``linkedin.com/company|in/<slug>``
like the identity layer; names case-folded.

Contract violations raise :class:`PayloadError` (a ``ValueError`` whose message names
fields, never values); the sink dead-letters the record.
"""

from __future__ import annotations

import html
import json
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Literal, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.base.identity import EntityKind, IdentityCandidate
from connectors.base.sink import OutboundRecord

__all__ = [
    "COMPANY_ASSOCIATION_TYPE_NOTE",
    "CONTACT_ASSOCIATION_TYPE_NOTE",
    "DEFAULT_STRATEGIES",
    "MAX_NOTE_BODY_CHARS",
    "MAX_SEARCH_BODY_CHARS",
    "SEARCH_PAGE_LIMIT",
    "CompanyWrite",
    "Deletion",
    "Export",
    "Lookup",
    "LookupStrategy",
    "MatchKey",
    "NoteWrite",
    "PayloadError",
    "PersonWrite",
    "SearchRequest",
    "applicable_strategies",
    "archive_body",
    "associate_default_body",
    "batch_update_body",
    "batch_upsert_body",
    "candidate_from_object",
    "candidate_keys",
    "company_properties",
    "contact_properties",
    "encode_json",
    "entity_keys",
    "export_for",
    "job_ad_note_body",
    "lookups",
    "normalize_domain",
    "normalize_email",
    "normalize_linkedin_url",
    "notes_create_body",
    "search_properties",
    "search_requests",
    "signal_note_body",
]

MAX_NOTE_BODY_CHARS: Final[int] = 65_536
COMPANY_ASSOCIATION_TYPE_NOTE: Final[int] = 190
"""HUBSPOT_DEFINED association type note -> company."""
CONTACT_ASSOCIATION_TYPE_NOTE: Final[int] = 202
"""HUBSPOT_DEFINED association type note -> contact."""

MAX_SEARCH_BODY_CHARS: Final[int] = 3_000
"""HubSpot answers 400 to a search body longer than this (PARTNERS.md a, "Search")."""
SEARCH_PAGE_LIMIT: Final[int] = 200
"""Results per search page, HubSpot's maximum."""

_MAX_LOOKUPS_PER_STRATEGY: Final[int] = 3
_MAX_SEARCH_VALUE_CHARS: Final[int] = 254
_MAX_FILTER_GROUPS: Final[int] = 5
_AFTER_RESERVE_CHARS: Final[int] = 24
"""Room kept in every packed body for ``,"after":"<cursor>"`` of a following page."""
_MAX_TITLE_CHARS: Final[int] = 500
_MAX_TEXT_CHARS: Final[int] = 4_000
_SAFE_URL_SCHEMES: Final[tuple[str, ...]] = ("https://", "http://")
_DOT: Final[str] = " \u00b7 "


class PayloadError(ValueError):
    """A contract record the connector cannot map; the message names fields, not values."""


# -- what the sink writes -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompanyWrite:
    """A company to create or update; ``properties`` already carry the Queast id."""

    queast_id: str
    properties: Mapping[str, str]
    domains: tuple[str, ...] = ()
    name: str | None = None
    linkedin_url: str | None = None
    kind: Literal[EntityKind.COMPANY] = EntityKind.COMPANY


@dataclass(frozen=True, slots=True)
class PersonWrite:
    """A contact to create or update, and the Queast company it belongs to, if any."""

    queast_id: str
    properties: Mapping[str, str]
    emails: tuple[str, ...] = ()
    company_queast_id: str | None = None
    linkedin_url: str | None = None
    kind: Literal[EntityKind.PERSON] = EntityKind.PERSON


@dataclass(frozen=True, slots=True)
class NoteWrite:
    """A note about a company (a signal or a job ad); ``key`` is unique per source item."""

    key: str
    company_queast_id: str
    properties: Mapping[str, str]
    person_queast_ids: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Deletion:
    """Archive the object linked to a Queast company or person (no-op when unlinked)."""

    kind: EntityKind
    queast_id: str


Export = CompanyWrite | PersonWrite | NoteWrite | Deletion


# -- contract records -----------------------------------------------------------------------


class _Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)


class _Company(_Contract):
    company_id: str = Field(min_length=1)
    name: str | None = None
    domain: str | None = None
    domains: list[str] = Field(default_factory=list)
    website: str | None = None
    linkedin_url: str | None = None
    industry: str | None = None
    employee_count: int | None = None
    country: str | None = None


class _Person(_Contract):
    person_id: str = Field(min_length=1)
    company_id: str | None = None
    full_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    emails: list[str] = Field(default_factory=list)
    linkedin_url: str | None = None
    title: str | None = None


class _Reason(_Contract):
    code: str
    description: str
    evidence_ids: list[str] = Field(default_factory=list)


class _Evidence(_Contract):
    kind: str
    id: str
    url: str | None = None
    title: str | None = None


class _Decorations(_Contract):
    technology_tags: list[str] = Field(default_factory=list)


class _Signal(_Contract):
    signal_id: str = Field(min_length=1)
    company_id: str = Field(min_length=1)
    person_ids: list[str] = Field(default_factory=list)
    signal_type: str
    contract_mode: Literal["strict", "informational", "legacy"]
    contract_version: str
    title: str
    summary: str | None = None
    score: float | None = None
    reasons: list[_Reason] = Field(default_factory=list)
    evidence: list[_Evidence] = Field(default_factory=list)
    decorations: _Decorations = Field(default_factory=_Decorations)
    detected_at: str
    occurred_at: str | None = None


class _JobAd(_Contract):
    job_ad_id: str = Field(min_length=1)
    company_id: str = Field(min_length=1)
    title: str | None = None
    url: str | None = None
    location: str | None = None
    posted_at: str | None = None
    occurred_at: str | None = None


class _Deleted(_Contract):
    company_id: str | None = None
    person_id: str | None = None


_ContractT = TypeVar("_ContractT", bound=_Contract)


def _parse(model: type[_ContractT], payload: Mapping[str, Any], event_type: str) -> _ContractT:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        fields = sorted(
            {".".join(str(p) for p in e["loc"]) for e in exc.errors(include_input=False)}
        )
        msg = f"{event_type} payload is invalid: {', '.join(fields[:5])}"
        raise PayloadError(msg) from None


# -- values ---------------------------------------------------------------------------------


def _text(value: str | None) -> str | None:
    """``value`` stripped; ``None`` when missing or blank (never sent as ``""``)."""
    if value is None:
        return None
    stripped = value.strip()
    return stripped or None


def normalize_domain(value: str | None) -> str | None:
    """A bare host name (``Example.COM/x`` -> ``example.com``, ``www.`` dropped), or ``None``."""
    text = _text(value)
    if text is None:
        return None
    text = text.lower()
    if "://" in text:
        text = text.split("://", 1)[1]
    for separator in ("/", "?", "#"):
        text = text.split(separator, 1)[0]
    text = text.rsplit("@", 1)[-1].split(":", 1)[0].strip(".")
    text = text.removeprefix("www.")
    return text or None


def normalize_email(value: str | None) -> str | None:
    """Lower-cased, stripped e-mail address, or ``None`` when it has no ``@``."""
    text = _text(value)
    if text is None or "@" not in text:
        return None
    return text.lower()


def _unique(values: Iterable[str | None]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for value in values:
        if value is not None:
            seen.setdefault(value, None)
    return tuple(seen)


def _without_none(values: Mapping[str, str | None]) -> dict[str, str]:
    return {key: value for key, value in values.items() if value is not None}


def _iso_millis(value: str, *, field_name: str) -> str:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        msg = f"{field_name} is not an ISO-8601 timestamp"
        raise PayloadError(msg) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- companies and contacts --------------------------------------------------------------------


def _company_domains(company: _Company) -> tuple[str, ...]:
    main = normalize_domain(company.domain)
    return _unique([main, *(normalize_domain(d) for d in company.domains)])


def company_properties(payload: Mapping[str, Any], *, queast_id_property: str) -> dict[str, str]:
    """HubSpot company properties for a ``company.upserted`` record (``None`` left out)."""
    company = _parse(_Company, payload, "company")
    return _company_properties(company, queast_id_property=queast_id_property)


def _company_properties(company: _Company, *, queast_id_property: str) -> dict[str, str]:
    domains = _company_domains(company)
    employees = company.employee_count
    return _without_none(
        {
            "name": _text(company.name),
            "domain": domains[0] if domains else None,
            "hs_additional_domains": ";".join(domains[1:]) or None,
            "website": _text(company.website),
            "linkedin_company_page": _text(company.linkedin_url),
            "queast_industry": _text(company.industry),
            "numberofemployees": str(employees)
            if employees is not None and employees >= 0
            else None,
            "country": _text(company.country),
            queast_id_property: company.company_id,
        }
    )


def _person_emails(person: _Person) -> tuple[str, ...]:
    return _unique([normalize_email(person.email), *(normalize_email(e) for e in person.emails)])


def _names(person: _Person) -> tuple[str | None, str | None]:
    first, last = _text(person.first_name), _text(person.last_name)
    full = _text(person.full_name)
    if first is None and last is None and full is not None:
        given, _, family = full.partition(" ")
        return given, _text(family)
    return first, last


def contact_properties(payload: Mapping[str, Any], *, queast_id_property: str) -> dict[str, str]:
    """HubSpot contact properties for a ``person.upserted`` record (``None`` left out)."""
    person = _parse(_Person, payload, "person")
    return _contact_properties(person, queast_id_property=queast_id_property)


def _contact_properties(person: _Person, *, queast_id_property: str) -> dict[str, str]:
    emails = _person_emails(person)
    first, last = _names(person)
    return _without_none(
        {
            "email": emails[0] if emails else None,
            "firstname": first,
            "lastname": last,
            "jobtitle": _text(person.title),
            "queast_linkedin_url": _text(person.linkedin_url),
            queast_id_property: person.person_id,
        }
    )


# -- notes ----------------------------------------------------------------------------------


def _esc(value: str, *, limit: int = _MAX_TEXT_CHARS) -> str:
    text = value.strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "\u2026"
    return html.escape(text, quote=True)


def _link(url: str | None, label: str) -> str:
    """An ``<a>`` for an http(s) URL; just the escaped label for anything else."""
    target = _text(url)
    if target is None or not target.lower().startswith(_SAFE_URL_SCHEMES):
        return _esc(label, limit=_MAX_TITLE_CHARS)
    return f'<a href="{_esc(target)}">{_esc(label, limit=_MAX_TITLE_CHARS)}</a>'


def _more(count: int, noun: str) -> str:
    return f"<li>\u2026 {count} more {noun} not shown</li>" if count > 0 else ""


def _fit(render: Callable[[int, int], str], reasons: int, evidence: int) -> str:
    """Render with as many reasons and evidence items as fit in a note body."""
    while True:
        body = render(reasons, evidence)
        if len(body) <= MAX_NOTE_BODY_CHARS or (reasons == 0 and evidence == 0):
            return body[:MAX_NOTE_BODY_CHARS]
        if evidence > 0:
            evidence = evidence // 2 if evidence > 8 else evidence - 1
        else:
            reasons = reasons // 2 if reasons > 8 else reasons - 1


def signal_note_body(payload: Mapping[str, Any]) -> str:
    """The HTML ``hs_note_body`` of a signal; see the module docstring for the layout."""
    return _signal_note_body(_parse(_Signal, payload, "signal"))


def _signal_note_body(signal: _Signal) -> str:
    strict = signal.contract_mode == "strict"
    contract = (
        f"Contract mode: {_esc(signal.contract_mode)}, "
        f"contract version: {_esc(signal.contract_version, limit=_MAX_TITLE_CHARS)}"
    )
    head = [f"<p><strong>Queast signal: {_esc(signal.title, limit=_MAX_TITLE_CHARS)}</strong></p>"]
    if not strict:
        head.append(f"<p><strong>{contract} (not an Actionable Signal)</strong></p>")
    summary = _text(signal.summary)
    if summary is not None:
        head.append(f"<p>{_esc(summary)}</p>")
    facts = [f"Signal type: {_esc(signal.signal_type, limit=_MAX_TITLE_CHARS)}"]
    if signal.score is not None:
        facts.append(f"Score: {signal.score:g}")
    facts.append(f"Detected: {_esc(signal.detected_at, limit=_MAX_TITLE_CHARS)}")
    head.append(f"<p>{_DOT.join(facts)}</p>")

    tags = [t for t in (_text(tag) for tag in signal.decorations.technology_tags) if t]
    tail: list[str] = []
    if tags:
        joined = ", ".join(_esc(tag, limit=_MAX_TITLE_CHARS) for tag in tags)
        tail.append(f"<p><em>Decorations (technology tags, not reasons): {joined}</em></p>")
    footer = f"Queast signal id: {_esc(signal.signal_id, limit=_MAX_TITLE_CHARS)}"
    tail.append(f"<p>{contract}{_DOT}{footer}</p>" if strict else f"<p>{footer}</p>")

    def render(max_reasons: int, max_evidence: int) -> str:
        parts = list(head)
        if signal.reasons:
            items = [
                f"<li><strong>{_esc(r.code, limit=_MAX_TITLE_CHARS)}</strong>: "
                f"{_esc(r.description)}"
                + (
                    f" (evidence: {_esc(', '.join(r.evidence_ids), limit=_MAX_TITLE_CHARS)})"
                    if r.evidence_ids
                    else ""
                )
                + "</li>"
                for r in signal.reasons[:max_reasons]
            ]
            more = _more(len(signal.reasons) - max_reasons, "reasons")
            parts.append(f"<p><strong>Reasons</strong></p><ul>{''.join(items)}{more}</ul>")
        if signal.evidence:
            items = [
                f"<li>{_link(e.url, e.title or f'{e.kind} {e.id}')} "
                f"({_esc(e.kind, limit=_MAX_TITLE_CHARS)} {_esc(e.id, limit=_MAX_TITLE_CHARS)})"
                "</li>"
                for e in signal.evidence[:max_evidence]
            ]
            more = _more(len(signal.evidence) - max_evidence, "evidence links")
            parts.append(f"<p><strong>Evidence</strong></p><ul>{''.join(items)}{more}</ul>")
        return "".join([*parts, *tail])

    return _fit(render, len(signal.reasons), len(signal.evidence))


def job_ad_note_body(payload: Mapping[str, Any]) -> str:
    """The HTML ``hs_note_body`` of a job ad cited as evidence."""
    return _job_ad_note_body(_parse(_JobAd, payload, "job_ad"))


def _job_ad_note_body(job_ad: _JobAd) -> str:
    title = _text(job_ad.title) or "untitled job ad"
    parts = [f"<p><strong>Queast job ad: {_esc(title, limit=_MAX_TITLE_CHARS)}</strong></p>"]
    facts = []
    location = _text(job_ad.location)
    if location is not None:
        facts.append(f"Location: {_esc(location, limit=_MAX_TITLE_CHARS)}")
    posted = _text(job_ad.posted_at)
    if posted is not None:
        facts.append(f"Posted: {_esc(posted, limit=_MAX_TITLE_CHARS)}")
    if facts:
        parts.append(f"<p>{_DOT.join(facts)}</p>")
    url = _text(job_ad.url)
    if url is not None:
        parts.append(f"<p>{_link(url, url)}</p>")
    parts.append(
        "<p>Evidence for Queast signals, not a signal itself \u00b7 Queast job ad id: "
        f"{_esc(job_ad.job_ad_id, limit=_MAX_TITLE_CHARS)}</p>"
    )
    return "".join(parts)


# -- dispatch -------------------------------------------------------------------------------


def export_for(record: OutboundRecord, *, queast_id_property: str) -> Export:
    """What ``record`` asks HubSpot to do; raises :class:`PayloadError` for contract
    violations and event types this connector does not export."""
    event_type = record.event_type
    payload = record.payload
    if event_type == "company.upserted":
        company = _parse(_Company, payload, event_type)
        domains = _company_domains(company)
        return CompanyWrite(
            queast_id=company.company_id,
            properties=_company_properties(company, queast_id_property=queast_id_property),
            domains=domains,
            name=_text(company.name),
            linkedin_url=_text(company.linkedin_url),
        )
    if event_type == "person.upserted":
        person = _parse(_Person, payload, event_type)
        return PersonWrite(
            queast_id=person.person_id,
            properties=_contact_properties(person, queast_id_property=queast_id_property),
            emails=_person_emails(person),
            company_queast_id=_text(person.company_id),
            linkedin_url=_text(person.linkedin_url),
        )
    if event_type == "signal.emitted":
        signal = _parse(_Signal, payload, event_type)
        return NoteWrite(
            key=f"queast-signal-{signal.signal_id}",
            company_queast_id=signal.company_id,
            person_queast_ids=_unique(_text(p) for p in signal.person_ids),
            properties={
                "hs_timestamp": _iso_millis(signal.detected_at, field_name="detected_at"),
                "hs_note_body": _signal_note_body(signal),
            },
        )
    if event_type == "job_ad.published":
        job_ad = _parse(_JobAd, payload, event_type)
        when = _text(job_ad.posted_at) or _text(job_ad.occurred_at) or record.occurred_at
        return NoteWrite(
            key=f"queast-job-ad-{job_ad.job_ad_id}",
            company_queast_id=job_ad.company_id,
            properties={
                "hs_timestamp": _iso_millis(when, field_name="posted_at"),
                "hs_note_body": _job_ad_note_body(job_ad),
            },
        )
    if event_type in ("company.deleted", "person.deleted"):
        deleted = _parse(_Deleted, payload, event_type)
        kind = EntityKind.COMPANY if event_type == "company.deleted" else EntityKind.PERSON
        queast_id = _text(deleted.company_id if kind is EntityKind.COMPANY else deleted.person_id)
        if queast_id is None:
            msg = f"{event_type} payload is invalid: {kind.value}_id"
            raise PayloadError(msg)
        return Deletion(kind=kind, queast_id=queast_id)
    msg = f"event type {event_type!r} is not exported to HubSpot"
    raise PayloadError(msg)


# -- first-link lookups and identity candidates -------------------------------------------------


class LookupStrategy(StrEnum):
    """The identity strategies lookups serve; the values are the identity layer's names."""

    PARTNER_ID = "partner_id"
    DOMAIN = "domain"
    EMAIL = "email"
    LINKEDIN_URL = "linkedin_url"
    COMPANY_NAME = "company_name"


_APPLICABLE: Final[Mapping[EntityKind, frozenset[LookupStrategy]]] = {
    EntityKind.COMPANY: frozenset(
        {
            LookupStrategy.PARTNER_ID,
            LookupStrategy.DOMAIN,
            LookupStrategy.LINKEDIN_URL,
            LookupStrategy.COMPANY_NAME,
        }
    ),
    EntityKind.PERSON: frozenset(
        {LookupStrategy.PARTNER_ID, LookupStrategy.EMAIL, LookupStrategy.LINKEDIN_URL}
    ),
}
DEFAULT_STRATEGIES: Final[Mapping[EntityKind, tuple[LookupStrategy, ...]]] = {
    EntityKind.COMPANY: (
        LookupStrategy.PARTNER_ID,
        LookupStrategy.DOMAIN,
        LookupStrategy.LINKEDIN_URL,
        LookupStrategy.COMPANY_NAME,
    ),
    EntityKind.PERSON: (
        LookupStrategy.PARTNER_ID,
        LookupStrategy.EMAIL,
        LookupStrategy.LINKEDIN_URL,
    ),
}
"""The identity layer's default strategy order, for resolvers that do not tell theirs."""

_LINKEDIN_PROPERTY: Final[Mapping[EntityKind, str]] = {
    EntityKind.COMPANY: "linkedin_company_page",
    EntityKind.PERSON: "queast_linkedin_url",
}
_LINKEDIN_PATHS: Final[Mapping[EntityKind, str]] = {
    EntityKind.COMPANY: "company",
    EntityKind.PERSON: "in",
}
_MAX_LINKEDIN_SLUG_CHARS: Final[int] = 200

MatchKey = tuple[LookupStrategy, str]
"""A normalised key an entity and a partner object are compared on, by strategy."""


@dataclass(frozen=True, slots=True)
class Lookup:
    """One value an ``IN`` filter looks up: ``property_name`` equals ``value`` (lower-case)."""

    strategy: LookupStrategy
    property_name: str
    value: str


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """One packed search body and the lookups it carries."""

    body: Mapping[str, Any]
    lookups: tuple[Lookup, ...]


def applicable_strategies(kind: EntityKind, names: Iterable[str]) -> tuple[LookupStrategy, ...]:
    """``names`` in order as strategies for ``kind``: unknown, inapplicable and repeated
    names are dropped (the identity layer skips them too)."""
    known = {s.value: s for s in LookupStrategy}
    found: dict[LookupStrategy, None] = {}
    for name in names:
        strategy = known.get(str(name))
        if strategy is not None and strategy in _APPLICABLE[kind]:
            found.setdefault(strategy, None)
    return tuple(found)


def _domain_key(value: str | None) -> str | None:
    """A host name compared like the identity layer does (IDNA-encoded, lower case)."""
    host = normalize_domain(value)
    if host is None:
        return None
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return host


def normalize_linkedin_url(value: str | None, *, kind: EntityKind) -> str | None:
    """``linkedin.com/company/<slug>`` (companies) or ``linkedin.com/in/<slug>`` (people).

    Like the identity layer: http, https or no scheme, any ``linkedin.com`` subdomain,
    sub-pages, queries and trailing slashes; the slug decoded, NFC-normalised and lower-cased.
    Anything else, or a page of the other kind, is ``None``.
    """
    text = _text(value)
    if text is None:
        return None
    if "://" not in text:
        text = "https://" + text.lstrip("/")
    try:
        split = urlsplit(text)
        host = split.hostname
    except ValueError:
        return None
    if split.scheme.lower() not in {"http", "https"} or split.username is not None or not host:
        return None
    host = host.rstrip(".")
    if host != "linkedin.com" and not host.endswith(".linkedin.com"):
        return None
    segments = [unquote(segment) for segment in split.path.split("/") if segment]
    path = _LINKEDIN_PATHS[kind]
    if len(segments) < 2 or segments[0].lower() != path:
        return None
    slug = unicodedata.normalize("NFC", segments[1]).strip().lower()
    if not slug or len(slug) > _MAX_LINKEDIN_SLUG_CHARS or any(ch.isspace() for ch in slug):
        return None
    return f"linkedin.com/{path}/{slug}"


def _fits(value: str) -> bool:
    return 0 < len(value) <= _MAX_SEARCH_VALUE_CHARS


def lookups(
    write: CompanyWrite | PersonWrite,
    strategies: Iterable[LookupStrategy],
    *,
    queast_id_property: str,
) -> tuple[Lookup, ...]:
    """The values to look up for ``write`` by ``strategies`` (see the module docstring).

    At most three values per strategy; values longer than 254 characters are left out.
    """
    found: dict[Lookup, None] = {}
    for strategy in strategies:
        if strategy not in _APPLICABLE[write.kind]:
            continue
        values: list[tuple[str, str]] = []
        if strategy is LookupStrategy.PARTNER_ID:
            values = [(queast_id_property, write.queast_id.lower())]
        elif strategy is LookupStrategy.DOMAIN and isinstance(write, CompanyWrite):
            for domain in write.domains[:_MAX_LOOKUPS_PER_STRATEGY]:
                values.append(("domain", domain))
                encoded = _domain_key(domain)
                if encoded is not None and encoded != domain:
                    values.append(("domain", encoded))
        elif strategy is LookupStrategy.EMAIL and isinstance(write, PersonWrite):
            values = [("email", e) for e in write.emails[:_MAX_LOOKUPS_PER_STRATEGY]]
        elif strategy is LookupStrategy.LINKEDIN_URL:
            canonical = normalize_linkedin_url(write.linkedin_url, kind=write.kind)
            if canonical is not None and write.linkedin_url is not None:
                prop = _LINKEDIN_PROPERTY[write.kind]
                values = [(prop, write.linkedin_url.lower()), (prop, f"https://www.{canonical}")]
        elif strategy is LookupStrategy.COMPANY_NAME and isinstance(write, CompanyWrite):
            values = [("name", write.name.lower())] if write.name else []
        for property_name, value in values:
            if _fits(value):
                found.setdefault(Lookup(strategy, property_name, value), None)
    return tuple(found)


def entity_keys(
    write: CompanyWrite | PersonWrite, strategies: Iterable[LookupStrategy]
) -> frozenset[MatchKey]:
    """The normalised keys of ``write`` for ``strategies`` (see the module docstring)."""
    keys: set[MatchKey] = set()
    for strategy in strategies:
        if strategy is LookupStrategy.PARTNER_ID:
            keys.add((strategy, write.queast_id))
        elif strategy is LookupStrategy.DOMAIN and isinstance(write, CompanyWrite):
            keys.update((strategy, d) for d in map(_domain_key, write.domains) if d)
        elif strategy is LookupStrategy.EMAIL and isinstance(write, PersonWrite):
            keys.update((strategy, e) for e in write.emails)
        elif strategy is LookupStrategy.LINKEDIN_URL:
            url = normalize_linkedin_url(write.linkedin_url, kind=write.kind)
            if url is not None:
                keys.add((strategy, url))
        elif (
            strategy is LookupStrategy.COMPANY_NAME
            and isinstance(write, CompanyWrite)
            and write.name
        ):
            keys.add((strategy, write.name.casefold()))
    return frozenset(keys)


def candidate_keys(candidate: IdentityCandidate, kind: EntityKind) -> frozenset[MatchKey]:
    """The normalised keys of a partner object, to match it back to the entities it answers."""
    keys: set[MatchKey] = {(LookupStrategy.PARTNER_ID, q) for q in candidate.queast_ids}
    if kind is EntityKind.COMPANY:
        keys.update((LookupStrategy.DOMAIN, d) for d in map(_domain_key, candidate.domains) if d)
        if candidate.name:
            keys.add((LookupStrategy.COMPANY_NAME, candidate.name.casefold()))
    else:
        keys.update((LookupStrategy.EMAIL, e) for e in candidate.emails)
    url = normalize_linkedin_url(candidate.linkedin_url, kind=kind)
    if url is not None:
        keys.add((LookupStrategy.LINKEDIN_URL, url))
    return frozenset(keys)


def search_properties(kind: EntityKind, *, queast_id_property: str) -> list[str]:
    """Properties a search asks for: what identity matching compares."""
    if kind is EntityKind.COMPANY:
        return [
            "name",
            "domain",
            "hs_additional_domains",
            "linkedin_company_page",
            queast_id_property,
        ]
    return [
        "email",
        "hs_additional_emails",
        "firstname",
        "lastname",
        "queast_linkedin_url",
        queast_id_property,
    ]


def _split(value: object) -> list[str]:
    return [part for part in str(value).split(";") if part.strip()] if value else []


def candidate_from_object(
    kind: EntityKind, obj: Mapping[str, Any], *, queast_id_property: str
) -> IdentityCandidate | None:
    """An identity candidate from a HubSpot search result (``None`` if it has no id)."""
    object_id = obj.get("id")
    if not isinstance(object_id, str | int) or isinstance(object_id, bool) or object_id == "":
        return None
    raw = obj.get("properties")
    props: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    queast_ids = _unique(
        [_text(str(props[queast_id_property]))] if props.get(queast_id_property) else []
    )
    if kind is EntityKind.COMPANY:
        domains = _unique(
            normalize_domain(d)
            for d in [props.get("domain") or "", *_split(props.get("hs_additional_domains"))]
        )
        return IdentityCandidate(
            partner_object_id=str(object_id),
            name=_text(str(props["name"])) if props.get("name") else None,
            domains=domains,
            linkedin_url=_text(str(props.get("linkedin_company_page") or "")),
            queast_ids=queast_ids,
        )
    emails = _unique(
        normalize_email(e)
        for e in [props.get("email") or "", *_split(props.get("hs_additional_emails"))]
    )
    name = " ".join(str(props[k]).strip() for k in ("firstname", "lastname") if props.get(k))
    return IdentityCandidate(
        partner_object_id=str(object_id),
        name=name or None,
        emails=emails,
        linkedin_url=_text(str(props.get("queast_linkedin_url") or "")),
        queast_ids=queast_ids,
    )


# -- request bodies -------------------------------------------------------------------------


def batch_upsert_body(
    inputs: Sequence[tuple[str, str, Mapping[str, str]]], *, id_property: str
) -> dict[str, Any]:
    """``POST .../batch/upsert``: ``(trace id, id value, properties)`` per input."""
    return {
        "inputs": [
            {
                "id": id_value,
                "idProperty": id_property,
                "objectWriteTraceId": trace_id,
                "properties": dict(properties),
            }
            for trace_id, id_value, properties in inputs
        ]
    }


def batch_update_body(inputs: Sequence[tuple[str, str, Mapping[str, str]]]) -> dict[str, Any]:
    """``POST .../batch/update`` by record id: ``(trace id, object id, properties)``."""
    return {
        "inputs": [
            {"id": object_id, "objectWriteTraceId": trace_id, "properties": dict(properties)}
            for trace_id, object_id, properties in inputs
        ]
    }


def _note_associations(company_id: str, contact_ids: Sequence[str]) -> list[dict[str, Any]]:
    targets = [(company_id, COMPANY_ASSOCIATION_TYPE_NOTE)]
    targets += [(contact_id, CONTACT_ASSOCIATION_TYPE_NOTE) for contact_id in contact_ids]
    return [
        {
            "to": {"id": target},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
        }
        for target, type_id in targets
    ]


def notes_create_body(
    inputs: Sequence[tuple[str, Mapping[str, str], str, Sequence[str]]],
) -> dict[str, Any]:
    """``POST /crm/v3/objects/notes/batch/create``: ``(trace id, properties, company id,
    contact ids)`` per input; each note is associated to its company (type 190) and
    contacts (type 202)."""
    return {
        "inputs": [
            {
                "objectWriteTraceId": trace_id,
                "properties": dict(properties),
                "associations": _note_associations(company_id, contact_ids),
            }
            for trace_id, properties, company_id, contact_ids in inputs
        ]
    }


def archive_body(object_ids: Sequence[str]) -> dict[str, Any]:
    """``POST .../batch/archive`` by record id."""
    return {"inputs": [{"id": object_id} for object_id in object_ids]}


def associate_default_body(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """``POST /crm/v4/associations/{from}/{to}/batch/associate/default``."""
    return {"inputs": [{"from": {"id": a}, "to": {"id": b}} for a, b in pairs]}


def encode_json(body: Mapping[str, Any]) -> bytes:
    """The exact bytes sent for ``body``: compact JSON, UTF-8 (its length bounds HubSpot's
    character count from above)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _in_group(property_name: str, values: Sequence[str]) -> dict[str, Any]:
    return {"filters": [{"propertyName": property_name, "operator": "IN", "values": list(values)}]}


def _size(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def search_requests(
    wanted: Iterable[Lookup],
    *,
    properties: Sequence[str],
    limit: int = SEARCH_PAGE_LIMIT,
    max_chars: int = MAX_SEARCH_BODY_CHARS,
) -> list[SearchRequest]:
    """Pack ``wanted`` into as few ``POST .../search`` bodies as HubSpot takes.

    One filter group per property, holding one ``IN`` filter with that property's values
    (groups are ORed); at most five groups per body; every body, encoded by
    :func:`encode_json`, at most ``max_chars`` long with room left for a paging ``after``.
    Lookups of the same property and value are sent once, in first-seen order. Raises
    ``ValueError`` when one value cannot fit in an empty body (``max_chars`` too small).
    """
    budget = max_chars - _AFTER_RESERVE_CHARS
    base = _size({"filterGroups": [], "properties": list(properties), "limit": limit})
    requests: list[SearchRequest] = []
    groups: dict[str, list[str]] = {}
    carried: list[Lookup] = []
    size = base

    def flush() -> None:
        nonlocal groups, carried, size
        if carried:
            body = {
                "filterGroups": [_in_group(p, v) for p, v in groups.items()],
                "properties": list(properties),
                "limit": limit,
            }
            requests.append(SearchRequest(body, tuple(carried)))
        groups, carried, size = {}, [], base

    seen: set[tuple[str, str]] = set()
    for lookup in wanted:
        key = (lookup.property_name, lookup.value)
        if key in seen:
            continue
        seen.add(key)
        for attempt in range(2):
            values = groups.get(lookup.property_name)
            if values is not None:
                cost = _size(lookup.value) + 1
            elif len(groups) < _MAX_FILTER_GROUPS:
                cost = _size(_in_group(lookup.property_name, [lookup.value])) + (1 if groups else 0)
            else:
                cost = budget + 1
            if size + cost <= budget:
                groups.setdefault(lookup.property_name, []).append(lookup.value)
                carried.append(lookup)
                size += cost
                break
            if attempt or not carried:
                msg = "a lookup value does not fit in a search body"
                raise ValueError(msg)
            flush()
    flush()
    return requests

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

Contract violations raise :class:`PayloadError` (a ``ValueError`` whose message names
fields, never values); the sink dead-letters the record.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.base.identity import EntityKind, IdentityCandidate
from connectors.base.sink import OutboundRecord

__all__ = [
    "COMPANY_ASSOCIATION_TYPE_NOTE",
    "CONTACT_ASSOCIATION_TYPE_NOTE",
    "MAX_NOTE_BODY_CHARS",
    "CompanyWrite",
    "Deletion",
    "Export",
    "NoteWrite",
    "PayloadError",
    "PersonWrite",
    "SearchKey",
    "archive_body",
    "associate_default_body",
    "batch_update_body",
    "batch_upsert_body",
    "candidate_from_object",
    "candidate_matches",
    "company_properties",
    "contact_properties",
    "export_for",
    "job_ad_note_body",
    "normalize_domain",
    "normalize_email",
    "notes_create_body",
    "search_body",
    "search_keys",
    "search_properties",
    "signal_note_body",
]

MAX_NOTE_BODY_CHARS: Final[int] = 65_536
COMPANY_ASSOCIATION_TYPE_NOTE: Final[int] = 190
"""HUBSPOT_DEFINED association type note -> company."""
CONTACT_ASSOCIATION_TYPE_NOTE: Final[int] = 202
"""HUBSPOT_DEFINED association type note -> contact."""

_MAX_SEARCH_KEYS_PER_ENTITY: Final[int] = 3
_MAX_SEARCH_VALUE_CHARS: Final[int] = 254
_MAX_TITLE_CHARS: Final[int] = 500
_MAX_TEXT_CHARS: Final[int] = 4_000
_SAFE_URL_SCHEMES: Final[tuple[str, ...]] = ("https://", "http://")
_DOT: Final[str] = " \u00b7 "


class PayloadError(ValueError):
    """A contract record the connector cannot map; the message names fields, not values."""


# -- what the sink writes -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SearchKey:
    """One ``EQ`` lookup: ``property_name`` equals ``value`` (normalised)."""

    property_name: str
    value: str


@dataclass(frozen=True, slots=True)
class CompanyWrite:
    """A company to create or update; ``properties`` already carry the Queast id."""

    queast_id: str
    properties: Mapping[str, str]
    domains: tuple[str, ...] = ()
    name: str | None = None
    kind: Literal[EntityKind.COMPANY] = EntityKind.COMPANY


@dataclass(frozen=True, slots=True)
class PersonWrite:
    """A contact to create or update, and the Queast company it belongs to, if any."""

    queast_id: str
    properties: Mapping[str, str]
    emails: tuple[str, ...] = ()
    company_queast_id: str | None = None
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
        )
    if event_type == "person.upserted":
        person = _parse(_Person, payload, event_type)
        return PersonWrite(
            queast_id=person.person_id,
            properties=_contact_properties(person, queast_id_property=queast_id_property),
            emails=_person_emails(person),
            company_queast_id=_text(person.company_id),
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


# -- search and identity candidates ----------------------------------------------------------


def search_keys(write: CompanyWrite | PersonWrite) -> tuple[SearchKey, ...]:
    """The ``EQ`` lookups that find existing objects for a first link.

    Companies by domain (each known domain, at most 3), by exact name when there is no
    domain; contacts by e-mail (at most 3). Empty when nothing identifies the entity.
    """
    if isinstance(write, CompanyWrite):
        keys = [SearchKey("domain", d) for d in write.domains]
        if not keys and write.name is not None:
            keys = [SearchKey("name", write.name)]
    else:
        keys = [SearchKey("email", e) for e in write.emails]
    return tuple(k for k in keys if len(k.value) <= _MAX_SEARCH_VALUE_CHARS)[
        :_MAX_SEARCH_KEYS_PER_ENTITY
    ]


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


def candidate_matches(candidate: IdentityCandidate, keys: Iterable[SearchKey]) -> bool:
    """Whether a search result answers one of an entity's lookups."""
    for key in keys:
        if key.property_name == "domain" and key.value in candidate.domains:
            return True
        if key.property_name == "email" and key.value in candidate.emails:
            return True
        if (
            key.property_name == "name"
            and candidate.name is not None
            and candidate.name.casefold() == key.value.casefold()
        ):
            return True
    return False


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


def search_body(
    keys: Sequence[SearchKey], *, properties: Sequence[str], limit: int, after: str | None = None
) -> dict[str, Any]:
    """``POST .../search``: one filter group per key (groups are ORed)."""
    body: dict[str, Any] = {
        "filterGroups": [
            {"filters": [{"propertyName": k.property_name, "operator": "EQ", "value": k.value}]}
            for k in keys
        ],
        "properties": list(properties),
        "limit": limit,
    }
    if after is not None:
        body["after"] = after
    return body

"""Contract records in, Pipedrive request bodies out. Pure: no I/O, no clock.

What a record becomes (API v2 for organizations and persons, v1 for notes: Pipedrive has
no notes endpoint in API v2):

- ``company`` -> organization: ``name``, ``website``, ``linkedin``, ``employee_count`` and
  ``custom_fields`` (the domain in the connection's domain field, the Queast id in its
  Queast id field). Pipedrive's ``industry`` is an option id and is not sent.
- ``person`` -> person: ``name`` (full name, else first + last), ``emails`` as
  ``[{value, primary, label}]``, ``org_id`` when the company is linked, and the Queast id
  custom field. ``job_title`` is only accepted when contact sync is enabled, so it is not
  sent.
- ``signal`` / ``job_ad`` -> an HTML note on the company's organization.
- ``*.deleted`` -> ``DELETE`` of the linked object (the sink decides).

``None`` is never sent: in Pipedrive ``null`` clears a field, and fields the partner's users
filled in must not be blanked by a record that does not know them. For the same reason an
update adds missing emails to the person's list instead of replacing it
(:func:`merge_emails`).

Records arrive as the kit's typed contract models (:mod:`connectors.base.contract`), which
the ``parse_*`` functions take from the record (a payload dict is parsed); the
domain written to the domain field is the bare host of :func:`connectors.base.matchkeys.clean_host`,
the same HubSpot stores. A record that does not match its contract (or has a negative
``employee_count``, which Pipedrive refuses) is a ``PermanentError`` (dead-letter); the
message never includes the payload.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from connectors.base.contract import (
    CompanyRecord,
    ContractRecord,
    ContractViolation,
    JobAdRecord,
    PersonRecord,
    RecordT,
    SignalRecord,
    parse_record,
)
from connectors.base.errors import PermanentError
from connectors.base.identity import IdentityCandidate
from connectors.base.matchkeys import clean_host, stripped
from connectors.base.notes import job_ad_facts, signal_facts
from connectors.base.sink import OutboundRecord
from connectors.pipedrive.config import PARTNER

__all__ = [
    "MAX_NOTE_CHARS",
    "RecordKind",
    "classify",
    "contract_error",
    "job_ad_note_html",
    "merge_emails",
    "note_body",
    "organization_body",
    "organization_candidate",
    "organization_lookups",
    "parse_company",
    "parse_job_ad",
    "parse_person",
    "parse_signal",
    "person_body",
    "person_candidate",
    "person_emails",
    "person_name",
    "primary_domain",
    "search_item_ids",
    "signal_note_html",
]

MAX_NOTE_CHARS: Final[int] = 100_000
"""Pipedrive's note size limit (about 100 KB)."""
_EMAIL_LABEL: Final[str] = "work"
_LINK_SCHEMES: Final[frozenset[str]] = frozenset({"http", "https"})


@dataclass(frozen=True, slots=True)
class _NoteLimits:
    """How much of a record a note shows, so it stays within :data:`MAX_NOTE_CHARS`."""

    reasons: int = 50
    evidence: int = 100
    tags: int = 50
    text: int = 5_000
    """Characters of a summary, location or date."""
    title: int = 300
    """Characters of a title, code, id or label."""
    reason: int = 2_000
    url: int = 2_048
    footer_reserve: int = 20_000
    """Characters kept free for the closing lines while lists grow."""


_LIMITS: Final[_NoteLimits] = _NoteLimits()


class RecordKind(StrEnum):
    """What a record asks of Pipedrive."""

    COMPANY = "company"
    COMPANY_DELETION = "company_deletion"
    PERSON = "person"
    PERSON_DELETION = "person_deletion"
    SIGNAL = "signal"
    JOB_AD = "job_ad"


# -- classification and parsing -----------------------------------------------------------

_FAMILIES: Final[dict[str, tuple[RecordKind, RecordKind | None]]] = {
    "company": (RecordKind.COMPANY, RecordKind.COMPANY_DELETION),
    "person": (RecordKind.PERSON, RecordKind.PERSON_DELETION),
    "signal": (RecordKind.SIGNAL, None),
    "job_ad": (RecordKind.JOB_AD, None),
    "job_ad_evidence": (RecordKind.JOB_AD, None),
}


def classify(record: OutboundRecord) -> RecordKind:
    """What ``record`` asks for, from its event type (``<entity>.<action>``) and payload.

    Raises ``PermanentError`` for an event type this connector does not export.
    """
    family, _, action = record.event_type.partition(".")
    kinds = _FAMILIES.get(family)
    if kinds is None:
        raise PermanentError("event type not exported to pipedrive", partner=PARTNER)
    upsert, deletion = kinds
    if deletion is not None and (action == "deleted" or _marked_deleted(record)):
        return deletion
    return upsert


def _marked_deleted(record: OutboundRecord) -> bool:
    typed = record.record
    if isinstance(typed, CompanyRecord | PersonRecord):
        return typed.deleted
    return record.payload.get("deleted") is True


_FAMILY_NAMES: Final[dict[type[ContractRecord], str]] = {
    CompanyRecord: "company",
    PersonRecord: "person",
    SignalRecord: "signal",
    JobAdRecord: "job_ad_evidence",
}


def contract_error(violation: ContractViolation) -> PermanentError:
    """The ``PermanentError`` for a record that does not match its contract model."""
    family = _FAMILY_NAMES.get(violation.model, "record")
    msg = f"payload does not match the {family} contract ({', '.join(violation.fields)})"
    return PermanentError(msg, partner=PARTNER)


Source = OutboundRecord | Mapping[str, Any]
"""What the ``parse_*`` functions read: a record (its typed contract record, as the delivery
engine decoded it) or a payload dict (parsed, for records and payloads built by hand)."""


def _parse(model: type[RecordT], source: Source) -> RecordT:
    try:
        if isinstance(source, OutboundRecord):
            return source.contract(model)
        return parse_record(model, source)
    except ContractViolation as exc:
        raise contract_error(exc) from None


def parse_company(source: Source) -> CompanyRecord:
    """The company record; ``PermanentError`` if it does not match the contract or has a
    negative ``employee_count`` (Pipedrive refuses one)."""
    company = _parse(CompanyRecord, source)
    if company.employee_count is not None and company.employee_count < 0:
        msg = "payload does not match the company contract (employee_count)"
        raise PermanentError(msg, partner=PARTNER)
    return company


def parse_person(source: Source) -> PersonRecord:
    """The person record; ``PermanentError`` if it does not match the contract."""
    return _parse(PersonRecord, source)


def parse_signal(source: Source) -> SignalRecord:
    """The signal record; ``PermanentError`` if it does not match the contract."""
    return _parse(SignalRecord, source)


def parse_job_ad(source: Source) -> JobAdRecord:
    """The job ad record; ``PermanentError`` if it does not match the contract."""
    return _parse(JobAdRecord, source)


# -- values -------------------------------------------------------------------------------


def primary_domain(company: CompanyRecord) -> str | None:
    """The domain kept in the domain custom field: ``domain``, else the first of ``domains``.

    Lower-cased, without scheme, path or a leading ``www.``.
    """
    for candidate in (company.domain, *company.domains):
        cleaned = clean_host(candidate)
        if cleaned is not None:
            return cleaned
    return None


def organization_lookups(company: CompanyRecord) -> list[tuple[str, str]]:
    """``(term, fields)`` lookups for organizations that may be ``company``, in order.

    The domain in the domain custom field (``fields=custom_fields``), then the exact name
    (``fields=name``); either is left out when the company lacks it.
    """
    lookups: list[tuple[str, str]] = []
    domain = primary_domain(company)
    if domain is not None:
        lookups.append((domain, "custom_fields"))
    name = stripped(company.name)
    if name is not None:
        lookups.append((name, "name"))
    return lookups


def person_name(person: PersonRecord) -> str | None:
    """``full_name``, else ``first_name`` and ``last_name`` joined, else ``None``."""
    full = stripped(person.full_name)
    if full is not None:
        return full
    parts = [p for p in (stripped(person.first_name), stripped(person.last_name)) if p is not None]
    return " ".join(parts) or None


def person_emails(person: PersonRecord) -> list[str]:
    """``email`` first, then the rest of ``emails``; stripped, de-duplicated ignoring case."""
    seen: set[str] = set()
    result: list[str] = []
    for value in (person.email, *person.emails):
        text = stripped(value)
        if text is None or "@" not in text or text.lower() in seen:
            continue
        seen.add(text.lower())
        result.append(text)
    return result


# -- request bodies -----------------------------------------------------------------------


def _custom_fields(pairs: Iterable[tuple[str | None, str | None]]) -> dict[str, str]:
    return {key: value for key, value in pairs if key is not None and value is not None}


_NAME_FALLBACKS: Final[Mapping[str, str]] = {"company": "a domain", "person": "an email"}


def _put_name(
    body: dict[str, Any],
    name: str | None,
    fallback: str | None,
    *,
    for_create: bool,
    entity: Literal["company", "person"],
) -> None:
    """Set ``body["name"]``: ``name``, else (creating) ``fallback``; a new object without
    either is a ``PermanentError``, since Pipedrive requires a name."""
    if name is None and for_create:
        name = fallback
        if name is None:
            msg = (
                f"{entity} has neither a name nor {_NAME_FALLBACKS[entity]}; pipedrive needs a name"
            )
            raise PermanentError(msg, partner=PARTNER)
    if name is not None:
        body["name"] = name


def organization_body(
    company: CompanyRecord,
    *,
    domain_field_key: str,
    queast_id_field_key: str | None,
    for_create: bool,
) -> dict[str, Any]:
    """``POST``/``PATCH /api/v2/organizations`` body for ``company``.

    A new organization needs a ``name``: the company's name, else its domain; without
    either the record is a ``PermanentError``. An update leaves out what the record does
    not know.
    """
    body: dict[str, Any] = {}
    domain = primary_domain(company)
    _put_name(body, stripped(company.name), domain, for_create=for_create, entity="company")
    website = stripped(company.website)
    if website is not None:
        body["website"] = website
    linkedin = stripped(company.linkedin_url)
    if linkedin is not None:
        body["linkedin"] = linkedin
    if company.employee_count is not None:
        body["employee_count"] = company.employee_count
    custom = _custom_fields(((domain_field_key, domain), (queast_id_field_key, company.company_id)))
    if custom:
        body["custom_fields"] = custom
    return body


def merge_emails(
    existing: Sequence[Mapping[str, Any]], ours: Sequence[str]
) -> list[dict[str, Any]] | None:
    """The person's email list with ours added, or ``None`` when nothing is missing.

    Existing entries are kept as they are (value, primary flag, label); ours are appended
    with the ``work`` label, the first of them primary only if no existing one is.
    """
    kept: list[dict[str, Any]] = []
    known: set[str] = set()
    for entry in existing:
        value = entry.get("value")
        if not isinstance(value, str) or not value:
            continue
        item: dict[str, Any] = {"value": value, "primary": entry.get("primary") is True}
        label = entry.get("label")
        if isinstance(label, str) and label:
            item["label"] = label
        kept.append(item)
        known.add(value.strip().lower())
    missing = [email for email in ours if email.lower() not in known]
    if not missing:
        return None
    has_primary = any(item["primary"] for item in kept)
    added = [
        {"value": email, "primary": not has_primary and i == 0, "label": _EMAIL_LABEL}
        for i, email in enumerate(missing)
    ]
    return kept + added


def person_body(
    person: PersonRecord,
    *,
    org_id: int | None,
    queast_id_field_key: str | None,
    for_create: bool,
    existing_emails: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """``POST``/``PATCH /api/v2/persons`` body for ``person``.

    A new person needs a ``name``: the person's name, else the primary email; without
    either the record is a ``PermanentError``. ``org_id`` is the linked organization, if
    any. For an update, pass the person's current ``emails`` as ``existing_emails``: the
    list is only sent when ours adds to it.
    """
    body: dict[str, Any] = {}
    emails = person_emails(person)
    first_email = emails[0] if emails else None
    _put_name(body, person_name(person), first_email, for_create=for_create, entity="person")
    if for_create:
        if emails:
            body["emails"] = [
                {"value": email, "primary": i == 0, "label": _EMAIL_LABEL}
                for i, email in enumerate(emails)
            ]
    else:
        merged = merge_emails(existing_emails, emails)
        if merged is not None:
            body["emails"] = merged
    if org_id is not None:
        body["org_id"] = org_id
    custom = _custom_fields(((queast_id_field_key, person.person_id),))
    if custom:
        body["custom_fields"] = custom
    return body


def note_body(content: str, *, org_id: int) -> dict[str, Any]:
    """``POST /v1/notes`` body: HTML ``content`` attached to the organization ``org_id``."""
    return {"content": content, "org_id": org_id}


# -- notes --------------------------------------------------------------------------------


def _esc(value: str, *, limit: int = _LIMITS.text) -> str:
    text = value if len(value) <= limit else value[: limit - 1] + "\u2026"
    return html.escape(text, quote=True)


def _link(url: str | None, label: str) -> str:
    """An ``<a>`` for http(s) URLs; anything else is shown as text, never as a link."""
    target = stripped(url)
    shown = _esc(label, limit=_LIMITS.title)
    if target is None or len(target) > _LIMITS.url:
        return shown
    if urlsplit(target).scheme.lower() not in _LINK_SCHEMES:
        return f"{shown} ({_esc(target, limit=_LIMITS.title)})"
    return f'<a href="{_esc(target, limit=_LIMITS.url)}">{shown}</a>'


def _check_size(content: str) -> str:
    if len(content) > MAX_NOTE_CHARS:
        raise PermanentError("note exceeds pipedrive's size limit", partner=PARTNER)
    return content


class _Note:
    """HTML parts that stop growing before Pipedrive's note size limit.

    ``footer_reserve`` characters stay free for the closing lines; a list that does not
    fit ends with an "and N more" item instead.
    """

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0

    def add(self, part: str) -> None:
        self.parts.append(part)
        self.size += len(part)

    def add_list(self, heading: str, items: Sequence[str]) -> None:
        room = MAX_NOTE_CHARS - _LIMITS.footer_reserve - self.size - len(heading) - len("<ul></ul>")
        kept: list[str] = []
        for index, item in enumerate(items):
            if len(item) > room:
                kept.append(f"<li>\u2026 and {len(items) - index} more</li>")
                break
            kept.append(item)
            room -= len(item)
        self.add(f"{heading}<ul>{''.join(kept)}</ul>")

    def html(self) -> str:
        return _check_size("".join(self.parts))


def signal_note_html(signal: SignalRecord) -> str:
    """The note for a signal: title, summary, reasons with their codes, evidence links.

    Non-strict signals (informational, legacy) say so with their ``contract_mode`` and
    ``contract_version``. Technology tags appear only in a decorations line, never among
    the reasons. Every value is HTML-escaped; only http(s) evidence URLs become links.
    Long texts are cut and long lists shortened to stay within Pipedrive's note size.
    """
    note = _Note()
    note.add(f"<p><b>Queast signal: {_esc(signal.title, limit=_LIMITS.title)}</b></p>")
    summary = stripped(signal.summary)
    if summary is not None:
        note.add(f"<p>{_esc(summary)}</p>")
    facts = signal_facts(signal, escape=lambda v: _esc(v, limit=_LIMITS.title), type_label="Type")
    note.add(f"<p>{' | '.join(facts)}</p>")
    if signal.contract_mode != "strict":
        note.add(
            "<p><i>Not an actionable signal: "
            f"contract_mode {_esc(signal.contract_mode, limit=_LIMITS.title)}, "
            f"contract_version {_esc(signal.contract_version, limit=_LIMITS.title)}</i></p>"
        )
    if signal.reasons:
        items = []
        for reason in signal.reasons[: _LIMITS.reasons]:
            item = (
                f"<li><b>{_esc(reason.code, limit=_LIMITS.title)}</b>: "
                f"{_esc(reason.description, limit=_LIMITS.reason)}"
            )
            if reason.evidence_ids:
                refs = ", ".join(
                    _esc(ref, limit=_LIMITS.title)
                    for ref in reason.evidence_ids[: _LIMITS.evidence]
                )
                item += f" (evidence: {refs})"
            items.append(item + "</li>")
        note.add_list("<p><b>Reasons</b></p>", items)
    if signal.evidence:
        items = [
            f"<li>{_esc(ref.kind, limit=_LIMITS.title)} {_esc(ref.id, limit=_LIMITS.title)}: "
            f"{_link(ref.url, ref.title or ref.id)}</li>"
            for ref in signal.evidence[: _LIMITS.evidence]
        ]
        note.add_list("<p><b>Evidence</b></p>", items)
    tags = [tag for tag in (stripped(t) for t in signal.decorations.technology_tags) if tag]
    if tags:
        shown = ", ".join(_esc(t, limit=_LIMITS.title) for t in tags[: _LIMITS.tags])
        note.add(f"<p>Decorations (technology tags): {shown}</p>")
    note.add(f"<p>Queast signal id: {_esc(signal.signal_id, limit=_LIMITS.title)}</p>")
    return note.html()


def job_ad_note_html(job_ad: JobAdRecord) -> str:
    """The note for a job ad (evidence): title, location, publication date and link."""
    title = stripped(job_ad.title) or "Job ad"
    parts = [f"<p><b>Queast job ad: {_esc(title)}</b></p>"]
    parts.extend(f"<p>{fact}</p>" for fact in job_ad_facts(job_ad, escape=_esc))
    url = stripped(job_ad.url)
    if url is not None:
        parts.append(f"<p>{_link(url, url)}</p>")
    parts.append(f"<p>Queast job ad id: {_esc(job_ad.job_ad_id)}</p>")
    return _check_size("".join(parts))


# -- responses to identity candidates -----------------------------------------------------


def search_item_ids(data: object) -> list[int]:
    """Object ids of a v2 search response's ``data`` (``{"items": [{"item": {"id"}}]}``)."""
    if not isinstance(data, Mapping):
        return []
    items = data.get("items")
    if not isinstance(items, list):
        return []
    ids: list[int] = []
    for entry in items:
        item = entry.get("item") if isinstance(entry, Mapping) else None
        found = item.get("id") if isinstance(item, Mapping) else None
        if isinstance(found, int) and not isinstance(found, bool) and found not in ids:
            ids.append(found)
    return ids


def _customstripped(data: Mapping[str, Any], key: str | None) -> str | None:
    custom = data.get("custom_fields")
    if key is None or not isinstance(custom, Mapping):
        return None
    value = custom.get(key)
    return stripped(value) if isinstance(value, str) else None


def _object_id(data: Mapping[str, Any]) -> int | None:
    found = data.get("id")
    return found if isinstance(found, int) and not isinstance(found, bool) else None


def organization_candidate(
    data: Mapping[str, Any], *, domain_field_key: str, queast_id_field_key: str | None
) -> IdentityCandidate | None:
    """An organization (``GET /api/v2/organizations/{id}`` data) as an identity candidate.

    Its domains are the domain custom field and the website; ``None`` without an id.
    """
    object_id = _object_id(data)
    if object_id is None:
        return None
    domains = [
        value
        for value in (_customstripped(data, domain_field_key), data.get("website"))
        if isinstance(value, str) and value.strip()
    ]
    queast_id = _customstripped(data, queast_id_field_key)
    name = data.get("name")
    linkedin = data.get("linkedin")
    return IdentityCandidate(
        partner_object_id=str(object_id),
        name=name if isinstance(name, str) else None,
        domains=tuple(domains),
        linkedin_url=linkedin if isinstance(linkedin, str) and linkedin else None,
        queast_ids=(queast_id,) if queast_id is not None else (),
    )


def person_candidate(
    data: Mapping[str, Any], *, queast_id_field_key: str | None
) -> IdentityCandidate | None:
    """A person (``GET /api/v2/persons/{id}`` data) as an identity candidate."""
    object_id = _object_id(data)
    if object_id is None:
        return None
    emails: list[str] = []
    raw = data.get("emails")
    for entry in raw if isinstance(raw, list) else []:
        value = entry.get("value") if isinstance(entry, Mapping) else entry
        if isinstance(value, str) and value.strip():
            emails.append(value.strip())
    queast_id = _customstripped(data, queast_id_field_key)
    name = data.get("name")
    return IdentityCandidate(
        partner_object_id=str(object_id),
        name=name if isinstance(name, str) else None,
        emails=tuple(emails),
        queast_ids=(queast_id,) if queast_id is not None else (),
    )

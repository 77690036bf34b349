"""Contract records in, HubSpot writes out: :func:`export_for`, pure, no I/O.

:func:`export_for` turns one :class:`~connectors.base.sink.OutboundRecord` (its typed contract
``record``, one of the kit's models of :mod:`connectors.base.contract`, as the delivery
engine decoded it) into what the sink writes (:mod:`connectors.hubspot.exports`):

==================  ========================================================================
``company.upserted``  :class:`CompanyWrite`: company properties
``person.upserted``   :class:`PersonWrite`: contact properties (+ the Queast company id)
``signal.emitted``    :class:`NoteWrite`: a note on the company (and linked contacts)
``job_ad.published``  :class:`NoteWrite`: a note on the company citing the job ad
``*.deleted``         :class:`Deletion` of the linked company or contact
==================  ========================================================================

The pieces live in modules named for what they make: :mod:`~connectors.hubspot.properties`
(company and contact properties), :mod:`~connectors.hubspot.notes` (the HTML note bodies,
``hs_timestamp`` being ISO-8601 UTC with milliseconds), :mod:`~connectors.hubspot.search`
(first-link lookups and search packing) and :mod:`~connectors.hubspot.bodies` (request
bodies).

Contract violations raise :class:`PayloadError` (a ``ValueError`` whose message names
fields, never values); the sink dead-letters the record.
"""

from __future__ import annotations

from datetime import UTC, datetime

from connectors.base.contract import (
    CompanyRecord,
    DeletionRecord,
    JobAdRecord,
    PersonRecord,
    SignalRecord,
)
from connectors.base.identity import EntityKind
from connectors.base.matchkeys import distinct, stripped
from connectors.base.sink import OutboundRecord
from connectors.hubspot import exports
from connectors.hubspot.exports import PayloadError, contract_of
from connectors.hubspot.notes import render_job_ad_note, render_signal_note
from connectors.hubspot.properties import (
    company_domains,
    person_emails,
    record_company_properties,
    record_contact_properties,
)

__all__ = ["export_for"]


def _iso_millis(value: str, *, field_name: str) -> str:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        msg = f"{field_name} is not an ISO-8601 timestamp"
        raise PayloadError(msg) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _deleted_id(record: OutboundRecord, kind: EntityKind) -> str | None:
    """The id a deletion names: from the typed company or person record the engine decoded,
    else from the payload read leniently (:class:`DeletionRecord`)."""
    typed = record.record
    if kind is EntityKind.COMPANY and isinstance(typed, CompanyRecord):
        return typed.company_id
    if kind is EntityKind.PERSON and isinstance(typed, PersonRecord):
        return typed.person_id
    deleted = contract_of(record, DeletionRecord)
    return deleted.company_id if kind is EntityKind.COMPANY else deleted.person_id


def export_for(record: OutboundRecord, *, queast_id_property: str) -> exports.Export:
    """What ``record`` asks HubSpot to do; raises :class:`PayloadError` for contract
    violations and event types this connector does not export."""
    event_type = record.event_type
    if event_type == "company.upserted":
        company = contract_of(record, CompanyRecord)
        domains = company_domains(company)
        return exports.CompanyWrite(
            queast_id=company.company_id,
            properties=record_company_properties(company, queast_id_property=queast_id_property),
            domains=domains,
            name=stripped(company.name),
            linkedin_url=stripped(company.linkedin_url),
        )
    if event_type == "person.upserted":
        person = contract_of(record, PersonRecord)
        return exports.PersonWrite(
            queast_id=person.person_id,
            properties=record_contact_properties(person, queast_id_property=queast_id_property),
            emails=person_emails(person),
            company_queast_id=stripped(person.company_id),
            linkedin_url=stripped(person.linkedin_url),
        )
    if event_type == "signal.emitted":
        signal = contract_of(record, SignalRecord)
        return exports.NoteWrite(
            key=f"queast-signal-{signal.signal_id}",
            company_queast_id=signal.company_id,
            person_queast_ids=distinct(stripped(p) for p in signal.person_ids),
            properties={
                "hs_timestamp": _iso_millis(signal.detected_at, field_name="detected_at"),
                "hs_note_body": render_signal_note(signal),
            },
        )
    if event_type == "job_ad.published":
        job_ad = contract_of(record, JobAdRecord)
        when = stripped(job_ad.posted_at) or stripped(job_ad.occurred_at) or record.occurred_at
        return exports.NoteWrite(
            key=f"queast-job-ad-{job_ad.job_ad_id}",
            company_queast_id=job_ad.company_id,
            properties={
                "hs_timestamp": _iso_millis(when, field_name="posted_at"),
                "hs_note_body": render_job_ad_note(job_ad),
            },
        )
    if event_type in ("company.deleted", "person.deleted"):
        kind = EntityKind.COMPANY if event_type == "company.deleted" else EntityKind.PERSON
        queast_id = stripped(_deleted_id(record, kind))
        if queast_id is None:
            msg = f"{event_type} payload is invalid: {kind.value}_id"
            raise PayloadError(msg)
        return exports.Deletion(kind=kind, queast_id=queast_id)
    msg = f"event type {event_type!r} is not exported to HubSpot"
    raise PayloadError(msg)

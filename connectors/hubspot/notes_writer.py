"""Step 5 of a HubSpot write: signals and job ads become notes on their company.

A note is associated to its linked company and to its linked contacts. It is created in
one batch request (associations inline), or, when the connection sets a
``note_id_property``, upserted on it (a retried note finds its own object) and then
associated in batch requests. A note whose company is not linked yet fails with a
``TransientError``: it retries after the company's own export lands.
"""

from __future__ import annotations

from connectors.base.errors import TransientError
from connectors.base.identity import EntityKind
from connectors.base.sink import DeliveryResult
from connectors.hubspot.client import ObjectType
from connectors.hubspot.exports import NoteWrite
from connectors.hubspot.run import Group, Run, delivered
from connectors.hubspot.writer import Writer

__all__ = ["write_notes"]


async def write_notes(w: Writer, run: Run, groups: list[Group]) -> None:
    """Write the notes of ``groups`` on their linked companies; see the module docstring."""
    targets: list[tuple[Group, NoteWrite, str, list[str]]] = []
    linked = w.linked_exports(
        run, groups, NoteWrite, lambda n: (EntityKind.COMPANY, n.company_queast_id)
    )
    async for group, note, company in linked:
        if company is None:
            run.count("notes_waiting_for_company")
            run.fail(
                group,
                TransientError("company not linked in HubSpot yet", partner=w.partner),
            )
            continue
        contacts: list[str] = []
        for person in note.person_queast_ids:
            contact = await w.identity_call(run, group, w.linked(run, EntityKind.PERSON, person))
            if contact is not None:
                contacts.append(contact)
        if group.winner.delivery_id not in run.results:
            targets.append((group, note, company, contacts))
    if not targets:
        return
    if w.config.note_id_property is None:
        await _create_notes(w, run, targets)
    else:
        await _upsert_notes(w, run, targets, w.config.note_id_property)


async def _create_notes(
    w: Writer, run: Run, targets: list[tuple[Group, NoteWrite, str, list[str]]]
) -> None:
    inputs = [(g.trace_id, n.properties, company, contacts) for g, n, company, contacts in targets]
    groups = [g for g, _, _, _ in targets]
    response = await w.call(run, groups, w.client.create_notes(inputs))
    if response is None:
        return
    run.count("notes", len(groups))
    w.settle(run, EntityKind.COMPANY, groups, response)


async def _upsert_notes(
    w: Writer,
    run: Run,
    targets: list[tuple[Group, NoteWrite, str, list[str]]],
    id_property: str,
) -> None:
    inputs = [(g.trace_id, n.key, n.properties) for g, n, _, _ in targets]
    groups = [g for g, _, _, _ in targets]
    response = await w.call(run, groups, w.client.upsert("notes", inputs, id_property=id_property))
    if response is None:
        return
    run.count("notes", len(groups))
    w.settle(run, EntityKind.COMPANY, groups, response)
    to_companies: list[tuple[Group, str, str]] = []
    to_contacts: list[tuple[Group, str, str]] = []
    for group, _, company, contacts in targets:
        result = run.results.get(group.winner.delivery_id)
        if not isinstance(result, DeliveryResult) or result.partner_object_id is None:
            continue
        note_id = result.partner_object_id
        to_companies.append((group, note_id, company))
        to_contacts += [(group, note_id, contact) for contact in contacts]
    await _associate_notes(w, run, to_companies, "companies")
    await _associate_notes(w, run, to_contacts, "contacts")


async def _associate_notes(
    w: Writer, run: Run, pairs: list[tuple[Group, str, str]], to_type: ObjectType
) -> None:
    pairs = [(g, a, b) for g, a, b in pairs if delivered(run, g)]
    if run.stop is not None:
        for group, _, _ in pairs:
            run.defer(group)
        return
    if not pairs:
        return
    groups = list({id(g): g for g, _, _ in pairs}.values())
    response = await w.call(
        run,
        groups,
        w.client.associate_default("notes", to_type, [(a, b) for _, a, b in pairs]),
    )
    if response is None:
        return
    for group, note_id, _ in pairs:
        error = response.failed.get(note_id)
        if error is not None:
            run.fail(group, error)

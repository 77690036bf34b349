"""Step 3 of a HubSpot write: contact -> company associations (v4 default, batched).

Each written person whose company is linked is associated to it. A written person whose
company is not linked calls ``identity.wait_for_company``: if the company got linked
meanwhile it is associated too, else the person is delivered without one and waits. Each
written company asks ``identity.people_waiting`` and its waiting contacts are associated
to it. Each pair is sent once (:class:`_Associations`), in requests of at most 100 inputs;
only after a request wrote them does ``identity.associated`` clear the waits (a failure
leaves them for the retry). A failed request fails the people and companies it carried; a
failed input fails the person written with it and, unless the error is permanent (say the
contact is gone: the company's record is not held for it, the wait stays), the company it
was waiting for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from connectors.base.errors import ConnectorError, PermanentError
from connectors.base.identity import EntityKind
from connectors.hubspot.exports import CompanyWrite, PersonWrite
from connectors.hubspot.run import Group, Run, delivered, unique, written_id
from connectors.hubspot.writer import IDENTITY_LOOKUPS_AT_ONCE, Writer

_ASSOCIATIONS_PER_REQUEST: Final[int] = 100

__all__ = ["associate"]


@dataclass(slots=True)
class _Association:
    """One contact -> company association of a write and the groups it settles: the people
    written with it, the companies it waited for, and the Queast ids of the waiting people
    it clears (``identity.associated``) once written."""

    contact: str
    company: str
    company_queast_id: str
    people: list[Group] = field(default_factory=list)
    companies: list[Group] = field(default_factory=list)
    waiting: set[str] = field(default_factory=set)

    @property
    def carriers(self) -> list[Group]:
        return [*self.people, *self.companies]


class _Associations(dict[tuple[str, str], _Association]):
    """The associations of a write by ``(contact id, company id)``: each is sent once."""

    def add(self, contact: str, company: str, company_queast_id: str) -> _Association:
        key = (contact, company)
        if key not in self:
            self[key] = _Association(contact, company, company_queast_id)
        return self[key]


async def associate(w: Writer, run: Run, companies: list[Group], people: list[Group]) -> None:
    """Step 3: the contact -> company associations of this write, batched.

    Each written person whose company is linked is associated directly; the others
    register with ``identity.wait_for_company``, which returns the company's id if it
    got linked meanwhile. Each written company asks ``identity.people_waiting`` for the
    contacts written before it was linked. All of these go in the same batch requests;
    ``identity.associated`` is called only for what a request wrote.
    """
    gate = asyncio.Semaphore(IDENTITY_LOOKUPS_AT_ONCE)
    persons: list[tuple[Group, PersonWrite, str]] = []
    for group in run.pending_results(people):
        person, contact = group.export, written_id(run, group)
        if not isinstance(person, PersonWrite) or person.company_queast_id is None:
            continue
        if contact is None:
            continue
        if run.stop is not None:
            run.defer(group)  # its association could not be sent
            continue
        persons.append((group, person, contact))
    written: list[tuple[Group, CompanyWrite, str]] = []
    for group in run.pending_results(companies):
        export, object_id = group.export, written_id(run, group)
        if isinstance(export, CompanyWrite) and object_id is not None:
            written.append((group, export, object_id))
    found, waiting = await asyncio.gather(
        asyncio.gather(*(_company_of(w, run, gate, g, p) for g, p, _ in persons)),
        asyncio.gather(*(_waiting_for(w, run, gate, g, c) for g, c, _ in written)),
    )
    pairs = _Associations()
    for (group, person, contact), (company, waited) in zip(persons, found, strict=True):
        if not delivered(run, group) or person.company_queast_id is None:
            continue
        if company is None:
            run.count("association_waiting")
            continue
        association = pairs.add(contact, company, person.company_queast_id)
        association.people.append(group)
        if waited:
            run.count("associated_late")
            association.waiting.add(person.queast_id)
    for (group, export, object_id), people_waiting in zip(written, waiting, strict=True):
        if not delivered(run, group):
            continue
        for person_id, contact in people_waiting.items():
            run.count("associated_late")
            association = pairs.add(contact, object_id, export.queast_id)
            association.companies.append(group)
            association.waiting.add(person_id)
    todo = list(pairs.values())
    for start in range(0, len(todo), _ASSOCIATIONS_PER_REQUEST):
        chunk = todo[start : start + _ASSOCIATIONS_PER_REQUEST]
        await _send_associations(w, run, gate, chunk)


async def _company_of(
    w: Writer, run: Run, gate: asyncio.Semaphore, group: Group, person: PersonWrite
) -> tuple[str | None, bool]:
    """The object id of the person's company, and whether waiting found it (``None``:
    not linked, the person now waits for it, or the identity call failed the group)."""
    company_id = person.company_queast_id
    if company_id is None:  # pragma: no cover - the caller filters these
        return None, False
    async with gate:
        found = await w.identity_call(run, group, w.linked(run, EntityKind.COMPANY, company_id))
        if found is not None or not delivered(run, group):
            return found, False
        late = await w.identity_call(
            run, group, w.resolver.wait_for_company(company_id, person.queast_id)
        )
        return late, True


async def _waiting_for(
    w: Writer, run: Run, gate: asyncio.Semaphore, group: Group, company: CompanyWrite
) -> Mapping[str, str]:
    """The contacts written before ``company`` was linked (none if the call failed)."""
    async with gate:
        waiting = await w.identity_call(run, group, w.resolver.people_waiting(company.queast_id))
    return waiting or {}


async def _send_associations(
    w: Writer, run: Run, gate: asyncio.Semaphore, chunk: list[_Association]
) -> None:
    """One batch association request, then ``identity.associated`` for what it wrote."""
    carriers = unique(g for a in chunk for g in a.carriers)
    if run.stop is not None:
        for group in carriers:
            run.defer(group)
        return
    response = await w.call(
        run,
        carriers,
        w.client.associate_default(
            "contacts", "companies", [(a.contact, a.company) for a in chunk]
        ),
    )
    if response is None:
        return  # the carriers failed; the waits stay for their retry
    done: dict[str, list[_Association]] = {}
    for association in chunk:
        error = response.failed.get(association.contact)
        if error is None:
            run.count("associated")
            if association.waiting:
                done.setdefault(association.company_queast_id, []).append(association)
            continue
        for group in association.people:
            run.fail(group, error)
        _waiting_association_failed(w, run, association, error)

    async def associated(company_id: str, associations: list[_Association]) -> None:
        person_ids = sorted({p for a in associations for p in a.waiting})
        try:
            async with gate:
                await w.resolver.associated(company_id, person_ids)
        except ConnectorError as error:
            # Written but still recorded as waiting: the retry clears it.
            for group in unique(g for a in associations for g in a.carriers):
                run.fail(group, error)

    await asyncio.gather(*(associated(c, a) for c, a in done.items()))


def _waiting_association_failed(
    w: Writer, run: Run, association: _Association, error: ConnectorError
) -> None:
    """A waiting contact's association failed alone (207): the companies it waited
    for come back for a transient error; a permanent one (say the contact is gone)
    does not hold them, and the wait stays."""
    if not association.companies:
        return
    if not isinstance(error, PermanentError):
        for group in association.companies:
            run.fail(group, error)
        return
    run.count("association_failed")
    w.context.logger.warning(
        "hubspot.association.failed",
        extra={
            **w.context.log_fields(),
            **error.log_fields(),
            "records": len(association.companies),
        },
    )

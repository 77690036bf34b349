"""Steps 1 and 2 of a HubSpot write: companies, then people.

For each entity, ``identity.linked``; linked entities are updated by record id first (they
need no search), setting the Queast id property too. The others are looked up
and decided (:func:`connectors.hubspot.lookup.decide`): ``linked`` -> update that object
by id; ``no_match`` -> batch upsert on the Queast id property (idempotent: a retried
create finds its own object), then ``identity.link(..., strategy="created")``;
``ambiguous`` -> held for review, nothing written. Updates go one request per distinct set
of ids (a batch update may not name one object twice).
"""

from __future__ import annotations

import asyncio

from connectors.base.identity import EntityKind
from connectors.hubspot.lookup import decide
from connectors.hubspot.run import Group, Run, entity
from connectors.hubspot.writer import IDENTITY_LOOKUPS_AT_ONCE, OBJECT_TYPES, Writer

__all__ = ["write_entities"]


async def write_entities(w: Writer, run: Run, kind: EntityKind, groups: list[Group]) -> None:
    """Write the companies or people (``kind``) of ``groups``; see the module docstring."""
    groups = run.open(groups)
    if not groups:
        return
    # A bounded number at a time: four lanes of 100 records must not take a Redis
    # connection each (the service's pool is finite).
    gate = asyncio.Semaphore(IDENTITY_LOOKUPS_AT_ONCE)

    async def linked(group: Group) -> str | None:
        async with gate:
            return await w.identity_call(run, group, w.linked(run, kind, entity(group).queast_id))

    links = await asyncio.gather(*(linked(g) for g in groups))
    to_update: list[tuple[Group, str]] = []
    unlinked: list[Group] = []
    for group, link in zip(groups, links, strict=True):
        if group.winner.delivery_id in run.results:
            continue
        if link is not None:
            to_update.append((group, link))
        else:
            unlinked.append(group)
    # Linked entities first: they need no search, so search pacing never holds them up.
    await _update(w, run, kind, to_update)
    if unlinked:
        decided, to_create = await decide(w, run, kind, unlinked)
        await _update(w, run, kind, decided)
        await _create(w, run, kind, to_create)


async def _update(w: Writer, run: Run, kind: EntityKind, targets: list[tuple[Group, str]]) -> None:
    """Batch update by record id, one request per distinct set of ids."""
    remaining = [(g, object_id) for g, object_id in targets if run.is_open(g)]
    while remaining:
        batch: list[tuple[Group, str]] = []
        later: list[tuple[Group, str]] = []
        ids: set[str] = set()
        for group, object_id in remaining:
            (later if object_id in ids else batch).append((group, object_id))
            ids.add(object_id)
        inputs = [(g.trace_id, object_id, entity(g).properties) for g, object_id in batch]
        groups = [g for g, _ in batch]
        response = await w.call(run, groups, w.client.update(OBJECT_TYPES[kind], inputs))
        if response is not None:
            run.count("updated", len(batch))
            w.settle(run, kind, groups, response)
        remaining = [(g, object_id) for g, object_id in later if run.is_open(g)]


async def _create(w: Writer, run: Run, kind: EntityKind, groups: list[Group]) -> None:
    """Upsert on the Queast id property, then record the links."""
    groups = run.open(groups)
    if not groups:
        return
    property_name = w.config.queast_id_property
    inputs = [(g.trace_id, entity(g).queast_id, entity(g).properties) for g in groups]
    response = await w.call(
        run,
        groups,
        w.client.upsert(OBJECT_TYPES[kind], inputs, id_property=property_name),
    )
    if response is None:
        return
    for group in groups:
        outcome = response.outcomes[group.trace_id]
        if outcome.object_id is None:
            continue
        run.count("created" if outcome.new is not False else "recreated_link")
        queast_id = entity(group).queast_id
        linked = await w.identity_call(
            run,
            group,
            w.link(kind, queast_id, outcome.object_id),
        )
        if linked:
            run.links[(kind, queast_id)] = outcome.object_id
    w.settle(run, kind, groups, response)

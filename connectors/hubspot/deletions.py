"""Step 4 of a HubSpot write: deletions archive the linked objects.

Archives go in one batch request per object type. An unlinked deletion is a delivered
no-op, reported as 204 with no request.
"""

from __future__ import annotations

from typing import Final

from connectors.base.identity import EntityKind
from connectors.hubspot.exports import Deletion
from connectors.hubspot.run import Group, Run
from connectors.hubspot.writer import OBJECT_TYPES, Writer

_NO_REQUEST_STATUS: Final[int] = 204

__all__ = ["delete"]


async def delete(w: Writer, run: Run, groups: list[Group]) -> None:
    """Archive the linked objects of the deletions in ``groups``."""
    by_kind: dict[EntityKind, list[tuple[Group, str]]] = {}
    linked = w.linked_exports(run, groups, Deletion, lambda d: (d.kind, d.queast_id))
    async for group, deletion, object_id in linked:
        if object_id is None:
            run.count("deletions_unlinked")
            run.deliver(group, status_code=_NO_REQUEST_STATUS, partner_object_id=None)
            continue
        by_kind.setdefault(deletion.kind, []).append((group, object_id))
    for kind, targets in by_kind.items():
        chunk = [(g, object_id) for g, object_id in targets if run.is_open(g)]
        if not chunk:
            continue
        ids = list(dict.fromkeys(object_id for _, object_id in chunk))
        status = await w.call(
            run,
            [g for g, _ in chunk],
            w.client.archive(OBJECT_TYPES[kind], ids),
        )
        if status is None:
            continue
        run.count("archived", len(ids))
        for group, object_id in chunk:
            run.deliver(group, status_code=status, partner_object_id=object_id)

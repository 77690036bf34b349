"""HubSpot's synthetic answers for the service's preview (see :mod:`connectors.base.preview`).

- a search (a path ending in ``/search``) finds nothing: ``{"total": 0, "results": []}``;
- a batch (a body with ``inputs``) is ``COMPLETE`` with one result per input carrying an
  ``objectWriteTraceId``: a new id, that trace id, the input's properties, ``new: true``.
  Inputs without one (archives, associations) get no result, which the sink reads as done;
- a listing (``GET`` of a collection) is an empty last page (no ``paging.next``);
- any other call answers the object it names (the number ending its path) or a new one, as
  ``{"id": "<id>", "properties": {...}}`` with the properties the body sent.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from connectors.base import last_path_id, request_json

__all__ = ["preview_answer"]


def preview_answer(request: httpx.Request, new_id: Callable[[], int]) -> httpx.Response:
    """A ``200`` of HubSpot's shape for ``request``, as if it had succeeded."""
    path = request.url.path
    body = request_json(request.content)
    if path.endswith("/search"):
        return httpx.Response(200, json={"total": 0, "results": []})
    if isinstance(body, dict) and isinstance(body.get("inputs"), list):
        results = [
            {
                "id": str(new_id()),
                "objectWriteTraceId": item["objectWriteTraceId"],
                "properties": item.get("properties") or {},
                "new": True,
            }
            for item in body["inputs"]
            if isinstance(item, dict) and isinstance(item.get("objectWriteTraceId"), str)
        ]
        return httpx.Response(200, json={"status": "COMPLETE", "results": results})
    object_id = last_path_id(path)
    if request.method == "GET" and object_id is None:
        return httpx.Response(200, json={"results": []})
    properties = body.get("properties") if isinstance(body, dict) else None
    return httpx.Response(
        200,
        json={
            "id": str(object_id if object_id is not None else new_id()),
            "properties": properties if isinstance(properties, dict) else {},
        },
    )

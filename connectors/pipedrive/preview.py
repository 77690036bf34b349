"""Pipedrive's synthetic answers for the service's preview (see :mod:`connectors.base.preview`).

Every answer is in Pipedrive's ``{"success": true, "data": ...}`` envelope:

- a search (a path ending in ``/search``) finds nothing: ``data`` is ``{"items": []}``;
- a listing (``GET`` of a collection, the candidate index's) is an empty last page:
  ``data`` is ``[]`` and ``additional_data.next_cursor`` is ``None``;
- any other call (create, update, read, delete, a note) answers the object it names (the
  number ending its path) or a new one: ``data`` is the body sent with that ``id``.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from connectors.base import last_path_id, request_json

__all__ = ["preview_answer"]


def preview_answer(request: httpx.Request, new_id: Callable[[], int]) -> httpx.Response:
    """A ``200`` of Pipedrive's shape for ``request``, as if it had succeeded."""
    path = request.url.path
    if path.endswith("/search"):
        return httpx.Response(200, json={"success": True, "data": {"items": []}})
    object_id = last_path_id(path)
    if request.method == "GET" and object_id is None:
        return httpx.Response(
            200, json={"success": True, "data": [], "additional_data": {"next_cursor": None}}
        )
    body = request_json(request.content)
    data = dict(body) if isinstance(body, dict) else {}
    data["id"] = object_id if object_id is not None else new_id()
    return httpx.Response(200, json={"success": True, "data": data})

"""What a connector answers its own requests with when the service previews a delivery.

The service's preview runs a connection's real sink over a transport that sends nothing:
each request the sink makes is recorded and answered, as if it had succeeded, by the
connector's :data:`PreviewAnswer` (its spec's ``preview_answer``). The answer is shaped the
way the partner's API answers, so the sink reads it like a real one: a search finds nothing
(the sink then shows its create branch), a write gets the object back with an id.

``new_id`` hands out the ids of objects the preview pretends to create (numbers no real
object has, counted per previewed destination); a request naming such an id stands for the
object just created. A connector without a ``preview_answer`` is answered ``200`` with an
empty JSON object, which is enough for a sink that only reads the status.

:func:`request_json` and :func:`last_path_id` are the two readings of a request most
answers need.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeAlias

import httpx

__all__ = ["PreviewAnswer", "last_path_id", "request_json"]

PreviewAnswer: TypeAlias = Callable[[httpx.Request, Callable[[], int]], httpx.Response]
"""``(request, new_id) -> response``: a 2xx answer of the partner's shape for ``request``."""


def request_json(content: bytes) -> object:
    """``content`` parsed as JSON; ``None`` when it is empty or not JSON."""
    if not content:
        return None
    try:
        parsed: object = json.loads(content)
    except ValueError:
        return None
    return parsed


def last_path_id(path: str) -> int | None:
    """The number that ends ``path`` (``/api/v2/persons/42`` -> 42), else ``None``."""
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return int(last) if last.isascii() and last.isdigit() else None

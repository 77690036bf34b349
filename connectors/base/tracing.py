"""Which records a partner request carries: its correlation and request-id headers.

Every request a connector sends to a partner says which of our records it is for, so that
a partner's support (or its request log) and our logs can be matched:

- every request gets ``X-Request-Id``: a random UUID4 (hex) per request, drawn when the
  request is first sent and kept for its one re-send after a 401 (the same request). It
  is random rather than derived from the records: deriving it would cost work per record
  on the hot path, and two sends of the same records (a retry of a batch) are different
  requests that must not share an id;
- a request that carries exactly one record also gets ``X-Correlation-Id`` with that
  record's correlation id (when it is a valid header value: printable ASCII, at most 256
  characters; otherwise it is left out, never mangled);
- a request that carries several records (a HubSpot batch of up to 100, a shared search)
  logs ``<partner>.request.records`` at debug with its request id, endpoint, record count
  and distinct correlation ids (ids only, never payloads). The list is built only when
  debug logging is on, so the hot path does no work per record for it.

The records a request carries are set by the sink around the calls it makes for them
(:func:`carrying`), in a context variable: the calls below a sink (lookups, identity
checks, index refreshes) need no extra parameter, and each asyncio task sees its own
value. A request made outside any :func:`carrying` block (an index fetch, a token
refresh) carries no record and gets the request id only. Partners do not restrict these
headers (PARTNERS.md lists none for HubSpot or Pipedrive; both ignore unknown headers).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final, Protocol

__all__ = [
    "CORRELATION_ID_HEADER",
    "REQUEST_ID_HEADER",
    "Correlated",
    "carried",
    "carrying",
    "trace_headers",
]


class Correlated(Protocol):
    """Anything with a correlation id (an ``OutboundRecord``)."""

    @property
    def correlation_id(self) -> str: ...


CORRELATION_ID_HEADER: Final[str] = "X-Correlation-Id"
REQUEST_ID_HEADER: Final[str] = "X-Request-Id"

_HEADER_VALUE: Final[re.Pattern[str]] = re.compile(r"[\x21-\x7e]{1,256}")


_CARRIED: ContextVar[Sequence[Correlated]] = ContextVar("qi_request_records", default=())


@contextmanager
def carrying(records: Sequence[Correlated]) -> Iterator[None]:
    """Requests sent inside the block (by this task) carry ``records``."""
    token = _CARRIED.set(records)
    try:
        yield
    finally:
        _CARRIED.reset(token)


def carried() -> Sequence[Correlated]:
    """The records requests sent now carry (empty outside :func:`carrying`)."""
    return _CARRIED.get()


def trace_headers(
    *,
    partner: str,
    endpoint: str,
    logger: logging.Logger,
    log_fields: Mapping[str, Any],
) -> dict[str, str]:
    """The headers of one request for the records carried now; see the module docstring."""
    records = _CARRIED.get()
    request_id = uuid.uuid4().hex
    headers = {REQUEST_ID_HEADER: request_id}
    if len(records) == 1:
        correlation_id = records[0].correlation_id
        if _HEADER_VALUE.fullmatch(correlation_id):
            headers[CORRELATION_ID_HEADER] = correlation_id
    elif records and logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            f"{partner}.request.records",
            extra={
                **log_fields,
                "request_id": request_id,
                "endpoint": endpoint,
                "records": len(records),
                "correlation_ids": sorted({r.correlation_id for r in records}),
            },
        )
    return headers

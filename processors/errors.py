"""Domain errors of the HTTP API and the one place that renders them.

Services raise these errors; endpoints let them through; :func:`install_error_handlers`
registers the handler that turns them into responses. Every error body has one shape::

    {"error": {"code": "not_found", "message": "connection not found"}}

and validation errors add ``details``, a list of ``{"loc": [...], "msg": "..."}``.

Error tree::

    ServiceError(status_code, code, message)   base; carries its HTTP status and a stable code
    ├── BadRequest            400  the request is malformed (bad JSON, bad cursor)
    ├── Unauthorized          401  no usable bearer token; answered with ``WWW-Authenticate``
    ├── Forbidden             403  authenticated, not allowed (same body whether or not the
    │                              target exists)
    ├── NotFound              404  the target does not exist (said only to callers allowed
    │                              to see it)
    ├── Conflict              409  the request contradicts stored state
    ├── RequestTimeout        408  the body did not arrive in time; the connection is closed
    ├── PayloadTooLarge       413  the body is over the API's limit
    ├── UnsupportedMediaType  415  a body that is not declared as JSON
    ├── ValidationFailed      422  the body or parameters are invalid; ``details`` say where
    └── ServiceUnavailable    503  a dependency (Redis, the JWKS endpoint) does not answer

The framework's own HTTP errors (no such route, method not allowed) are rendered in the same
shape, with the status phrase as code (``not_found``, ``method_not_allowed``). A 405 lists in
``Allow`` every method the path answers, gathered from every operation of the OpenAPI document
whose path template matches (a path such as ``/connections/webhook`` is served by the
``webhook`` PUT and by the ``{connector}`` GET and DELETE), and from the route that refused.

A body that cannot be read as JSON is always 400 ``malformed_json``, whether it is not UTF-8
(RFC 8259 JSON is UTF-8), not JSON, or JSON the parser refuses (nesting too deep, an integer
over Python's digit limit); see :mod:`processors.auth.routes`, which checks bodies after the
caller is authorised.

:class:`ErrorResponse` is the body's OpenAPI model; :func:`error_responses` builds the
``responses`` entries an operation declares, so the document lists every status it answers.

Nothing rendered here ever contains an input value: request validation errors keep each
entry's location and message only (never pydantic's ``input`` or ``ctx``), and a message
that would quote the input is replaced by a generic one. A secret sent in a bad body
therefore never comes back in the response.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from types import MappingProxyType
from typing import Any, ClassVar, Final, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

__all__ = [
    "BadRequest",
    "Conflict",
    "ErrorDetail",
    "ErrorResponse",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "RequestTimeout",
    "ServiceError",
    "ServiceUnavailable",
    "Unauthorized",
    "UnsupportedMediaType",
    "ValidationFailed",
    "error_body",
    "error_responses",
    "found",
    "install_error_handlers",
    "malformed_json",
    "safe_error_details",
]

_log = logging.getLogger(__name__)

ErrorDetail = dict[str, Any]
"""One validation problem: ``{"loc": [str | int, ...], "msg": str}``."""

_MAX_DETAILS: Final = 50
_MAX_LOC_ITEM_CHARS: Final = 100
_MIN_ECHO_CHARS: Final = 3


class ServiceError(Exception):
    """Base of every error a service raises to end a request with an HTTP status.

    ``code`` is stable and machine-readable; ``message`` is for humans and must never hold
    a secret, a token or personal data (it is sent to the caller as is).
    """

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        details: Sequence[ErrorDetail] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})
        self.details: list[ErrorDetail] = list(details or [])


class _StatusError(ServiceError):
    """An error raised as ``Error()``, ``Error("message")`` or ``Error(code="...")``; each
    subclass states its status, default code and message (and fixed headers) once, in its
    class line."""

    status: ClassVar[int]
    default_code: ClassVar[str]
    default_message: ClassVar[str]
    fixed_headers: ClassVar[Mapping[str, str] | None]

    def __init_subclass__(
        cls, *, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init_subclass__()
        cls.status, cls.default_code, cls.default_message = status, code, message
        cls.fixed_headers = headers

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        super().__init__(
            self.status,
            self.default_code if code is None else code,
            self.default_message if message is None else message,
            headers=self.fixed_headers,
        )


class BadRequest(_StatusError, status=400, code="bad_request", message="bad request"):
    """400: the request cannot be understood (malformed JSON, a cursor we did not issue)."""


class Unauthorized(ServiceError):
    """401: the bearer token is missing or invalid; carries ``WWW-Authenticate: Bearer``."""

    def __init__(
        self,
        message: str = "authentication required",
        *,
        code: str = "unauthorized",
        www_authenticate: str = "Bearer",
    ) -> None:
        super().__init__(401, code, message, headers={"WWW-Authenticate": www_authenticate})


class Forbidden(_StatusError, status=403, code="forbidden", message="forbidden"):
    """403: the caller is authenticated but may not do this."""


class NotFound(_StatusError, status=404, code="not_found", message="not found"):
    """404: the target does not exist."""


_T = TypeVar("_T")


def found(target: _T | None, message: str, *, code: str) -> _T:
    """``target``, read from a store that answers ``None`` for what it does not hold; a
    :class:`NotFound` with ``message`` and ``code`` when it is ``None``."""
    if target is None:
        raise NotFound(message, code=code)
    return target


class Conflict(_StatusError, status=409, code="conflict", message="conflict"):
    """409: the request contradicts what is stored."""


_CLOSE: Final[Mapping[str, str]] = MappingProxyType({"Connection": "close"})
"""Answered before the body was read to its end: the rest is never read, so the connection
cannot carry another request."""


class RequestTimeout(
    _StatusError,
    status=408,
    code="request_timeout",
    message="request body not received in time",
    headers=_CLOSE,
):
    """408: the request body did not arrive in time (``Connection: close``)."""


class PayloadTooLarge(
    _StatusError,
    status=413,
    code="payload_too_large",
    message="request body too large",
    headers=_CLOSE,
):
    """413: the request body is larger than the API accepts (``Connection: close``)."""


class UnsupportedMediaType(
    _StatusError,
    status=415,
    code="unsupported_media_type",
    message="request body must be application/json",
):
    """415: the request has a body that is not declared as JSON."""


class ValidationFailed(ServiceError):
    """422: the request is well-formed but invalid; ``details`` locate each problem."""

    def __init__(
        self,
        message: str = "request validation failed",
        *,
        code: str = "validation_failed",
        details: Sequence[ErrorDetail] | None = None,
    ) -> None:
        super().__init__(422, code, message, details=details)

    @classmethod
    def from_pydantic(
        cls, exc: ValidationError, *, loc_prefix: Sequence[str | int] = ()
    ) -> ValidationFailed:
        """From a pydantic error raised while validating part of a request body."""
        return cls(details=safe_error_details(exc.errors(), loc_prefix=loc_prefix))


class ServiceUnavailable(
    _StatusError, status=503, code="service_unavailable", message="service unavailable"
):
    """503: a dependency does not answer; the caller may retry."""


def _loc_item(item: object) -> str | int:
    if isinstance(item, int) and not isinstance(item, bool):
        return item
    return str(item)[:_MAX_LOC_ITEM_CHARS]


def _echoes_input(message: str, error: Mapping[str, Any]) -> bool:
    """Whether the message quotes the input (or an input-derived tag) it was raised for."""
    candidates: list[object] = [error.get("input")]
    context = error.get("ctx")
    if isinstance(context, Mapping):
        candidates.append(context.get("tag"))
    for candidate in candidates:
        if isinstance(candidate, str | int | float) and not isinstance(candidate, bool):
            text = str(candidate)
            if len(text) >= _MIN_ECHO_CHARS and text in message:
                return True
    return False


def _choices(error: Mapping[str, Any]) -> str | None:
    """For an enum or literal error, the allowed values alone (schema constants, no input).

    Used when pydantic's own message happens to contain the input (``professional`` is part
    of ``'professional_enterprise'``): the caller still learns what to send.
    """
    context = error.get("ctx")
    if error.get("type") in {"enum", "literal_error"} and isinstance(context, Mapping):
        expected = context.get("expected")
        if isinstance(expected, str) and expected:
            return f"Input should be {expected}"
    return None


def safe_error_details(
    errors: Iterable[Any], *, loc_prefix: Sequence[str | int] = ()
) -> list[ErrorDetail]:
    """``loc`` and ``msg`` of pydantic/FastAPI error entries; never their input or context.

    A message that would quote the input is replaced by a generic one naming the error type.
    """
    details: list[ErrorDetail] = []
    for error in errors:
        if not isinstance(error, Mapping):
            continue
        loc = [_loc_item(item) for item in (*loc_prefix, *error.get("loc", ()))]
        message = str(error.get("msg", "invalid value"))
        if _echoes_input(message, error):
            message = _choices(error) or f"invalid value ({error.get('type', 'value_error')})"
        details.append({"loc": loc, "msg": message})
        if len(details) == _MAX_DETAILS:
            break
    return details


def error_body(error: ServiceError) -> dict[str, Any]:
    """The JSON body of an error response."""
    rendered: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.details:
        rendered["details"] = error.details
    return {"error": rendered}


class ErrorDetailOut(BaseModel):
    """Where one validation problem is (``["body", "webhook", "url"]``) and what it is."""

    loc: list[str | int]
    msg: str


class ErrorInfo(BaseModel):
    """A stable machine-readable ``code``, a message for humans, and, for 422, ``details``."""

    code: str = Field(examples=["connection_not_found"])
    message: str
    details: list[ErrorDetailOut] = Field(
        default_factory=list, description="Present on validation errors only."
    )


class ErrorResponse(BaseModel):
    """The body of every error response of the API."""

    error: ErrorInfo


_STATUS_DESCRIPTIONS: Final[dict[int, str]] = {
    400: (
        "`malformed_json`: the body cannot be read as UTF-8 JSON; "
        "`bad_content_length`: the Content-Length header is not a number"
    ),
    401: (
        "`missing_token` or `invalid_token`: no usable bearer token. Answered before anything "
        "else about the request, its body included"
    ),
    403: (
        "`forbidden`: the caller's role or tenant does not allow this; the same answer whether "
        "or not the target exists"
    ),
    404: "the target does not exist",
    408: "`request_timeout`: the body did not arrive in time; the connection is closed",
    409: "the request contradicts what is stored",
    413: "`payload_too_large`: the body is over 64 KiB",
    415: "`unsupported_media_type`: a body that is not declared as `application/json`",
    422: "`validation_failed`: the path, query or body is invalid; `details` locate each problem",
    503: "`service_unavailable`: a dependency (Redis, the token signing keys) does not answer",
}

_WWW_AUTHENTICATE: Final[dict[str, Any]] = {
    "WWW-Authenticate": {
        "description": '`Bearer`, with `error="invalid_token"` for a token that was refused',
        "schema": {"type": "string"},
    }
}


def error_responses(
    *statuses: int, descriptions: Mapping[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """``responses`` entries for an operation's error statuses, each with the error body's
    schema; ``descriptions`` replace the generic text of a status (to name its codes)."""
    chosen = dict(descriptions or {})
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, *chosen}):
        entry: dict[str, Any] = {
            "model": ErrorResponse,
            "description": chosen.get(status) or _STATUS_DESCRIPTIONS.get(status, "error"),
        }
        if status == 401:
            entry["headers"] = _WWW_AUTHENTICATE
        responses[status] = entry
    return responses


INVALID_CURSOR_DESCRIPTION: Final = "`invalid_cursor`: a cursor this API did not issue"
"""The 400 of a paged listing, for ``error_responses(descriptions={400: ...})``."""


def invalid_cursor() -> BadRequest:
    """The 400 (``invalid_cursor``) for a cursor the listing did not issue."""
    return BadRequest("the cursor is not valid", code="invalid_cursor")


def _render(error: ServiceError) -> JSONResponse:
    return JSONResponse(error_body(error), status_code=error.status_code, headers=error.headers)


async def _handle_service_error(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, ServiceError):  # pragma: no cover - registered for ServiceError only
        raise exc
    return _render(exc)


async def _handle_request_validation(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):  # pragma: no cover - registered for it only
        raise exc
    errors = list(exc.errors())
    if any(isinstance(e, Mapping) and e.get("type") == "json_invalid" for e in errors):
        error: ServiceError = malformed_json()
    else:
        error = ValidationFailed(details=safe_error_details(errors))
    _log.info(
        "api.request.invalid",
        extra={"path": request.url.path, "method": request.method, "errors": len(errors)},
    )
    return _render(error)


def _status_code_name(status_code: int) -> str:
    try:
        phrase = HTTPStatus(status_code).phrase
    except ValueError:
        return f"http_{status_code}"
    return re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_")


def malformed_json(message: str = "request body is not valid JSON") -> BadRequest:
    """The one error for a body that cannot be read as JSON, whatever the reason."""
    return BadRequest(message, code="malformed_json")


def _method_index(app: FastAPI) -> list[tuple[re.Pattern[str], frozenset[str]]]:
    """Path patterns and methods of every documented operation, built once per app."""
    cached = getattr(app.state, "qi_method_index", None)
    if isinstance(cached, list):
        return cached
    index: list[tuple[re.Pattern[str], frozenset[str]]] = []
    for template, operations in app.openapi().get("paths", {}).items():
        methods = frozenset(m.upper() for m in operations if m.upper() in _HTTP_METHODS)
        if methods:
            index.append((compile_path(template)[0], methods))
    app.state.qi_method_index = index
    return index


_HTTP_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _allowed_methods(request: Request, refused_by: str | None) -> str:
    """Every method the request's path answers (see the module docstring)."""
    methods = {m.strip().upper() for m in (refused_by or "").split(",") if m.strip()}
    app = request.app
    if isinstance(app, FastAPI):
        path = request.scope.get("path", "")
        for pattern, documented in _method_index(app):
            if pattern.match(path):
                methods |= documented
    return ", ".join(sorted(methods))


async def _handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):  # pragma: no cover - registered for it only
        raise exc
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError | RecursionError):
        # the framework's own body parsing failed (bad UTF-8, a refused number): one code
        return _render(malformed_json())
    message = exc.detail if isinstance(exc.detail, str) else _status_code_name(exc.status_code)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers = {k: v for k, v in headers.items() if k.lower() != "allow"}
        headers["Allow"] = _allowed_methods(request, (exc.headers or {}).get("Allow"))
    error = ServiceError(
        exc.status_code, _status_code_name(exc.status_code), message, headers=headers
    )
    return _render(error)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers for :class:`ServiceError`, request validation errors, and the
    framework's own HTTP errors (unknown route 404, wrong method 405), all in one shape."""
    app.add_exception_handler(ServiceError, _handle_service_error)
    app.add_exception_handler(RequestValidationError, _handle_request_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)

"""The console's operations pages: dead letters, replays and backfills, preview, inbound reviews,
the allowlist.

::

    GET  /console/t/{tenant_id}/dead-letters?connector=&since=&error=&cursor=
    POST /console/t/{tenant_id}/dead-letters/redrive   connector, since, error, confirmed,
                                                       selection, id.<partition>:<offset>
    GET  /console/t/{tenant_id}/replays?connector=     the replay and backfill forms
    POST /console/t/{tenant_id}/replays                connector, since, until, event_type.*,
                                                       dry_run
    GET  /console/t/{tenant_id}/replays/{replay_id}    status and counts (refreshes while active)
    POST /console/t/{tenant_id}/replays/{replay_id}/cancel
    POST /console/t/{tenant_id}/backfills              connector, since | from_offset, until,
                                                       dry_run
    GET  /console/t/{tenant_id}/backfills/{backfill_id}
    POST /console/t/{tenant_id}/backfills/{backfill_id}/cancel
    GET  /console/t/{tenant_id}/preview                the form
    POST /console/t/{tenant_id}/preview                connector, event (JSON): what would be sent
    GET  /console/t/{tenant_id}/inbound-reviews?cursor=
    POST /console/t/{tenant_id}/inbound-reviews/{review_id}/{resolve|reject}  company_id
    GET  /console/admin/allowlist?tenant_id=           platform admins only
    POST /console/admin/allowlist                      tenant_id, allowlisted (on | off)

No second implementation. Every page calls the JSON API's own endpoint function (for example
:func:`processors.operations.replay_api.start_replay`), with the service its dependency builds
and the signed-in caller as the actor, after the console's own access check
(:func:`~processors.console.pages.tenant_principal`, or :func:`check_platform_admin` for the
allowlist), so every rule, bound, rate limit and error of the API applies unchanged; a form
is turned into the API's body model (a body that does not validate is 422, as in the API).

Decisions the issue left open:

- Redrive has a confirm step. The first POST is a dry run (the API's ``dry_run``), which
  changes nothing and answers a page with the count and a "Redrive N" button carrying the same
  choice; only that second POST (``confirmed=yes``) sends copies. "Some or all": either every
  dead letter matching the filter (connector, since, error kind; all pages), or the rows
  ticked on the page (``selection=yes`` and one ``id.<id>`` field per ticked row: the API's
  ``ids``, still narrowed by the filter). The dry run says how many of the selected ids are
  not found (another tenant's, aged out, or outside the filter); those are never sent.
- Replays and backfills: each start has a dry run that is a run of its own (its page shows the
  counts, a replay's also up to five samples kept an hour) and offers to start the same run
  for real. A run's page (``run.html``, shared by both kinds) refreshes itself every few
  seconds while it is queued or running (``<meta http-equiv="refresh">``; no script), and
  offers cancel while it is. A backfill starts from a time or from an offset, as the API takes
  it (both or neither is the API's 422); "every connection" is the API's absent connector.
- Preview is a POST (it carries a body) that changes nothing: it calls the preview endpoint,
  which neither sends nor writes. A body that is not JSON, or an error the API would answer,
  is shown above the form with the pasted text kept.
- The allowlist API has no listing, so the page looks a tenant up by id and toggles it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, TypeVar
from urllib.parse import urlencode

from fastapi import Request, Response
from pydantic import BaseModel, ValidationError

from processors.auth import Principal
from processors.auth.dependencies import check_platform_admin
from processors.console.pages import (
    action_form,
    check_tenant_id,
    optional_time,
    read_form,
    redirect,
    render,
    router,
    tenant_principal,
)
from processors.console.session import CSRF_FIELD, check_csrf, session_principal
from processors.domain.events import EventType
from processors.errors import BadRequest, NotFound, ServiceError, ValidationFailed
from processors.inbound import reviews_api
from processors.operations import backfill_api, deadletters_api, preview_api, replay_api
from processors.operations.backfill_api import BackfillOut
from processors.operations.deadletters import ERROR_KIND
from processors.operations.preview import Preview
from processors.operations.reinject import RUN_ID
from processors.operations.replay_api import ReplayOut
from processors.operations.runs import ACTIVE, RunStatus
from processors.tenants.endpoints import get_connection_service
from processors.tenants.models import Connector

__all__: list[str] = []

_log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

_DEAD_LETTER_PAGE_SIZE: Final = 50
_REVIEW_PAGE_SIZE: Final = 100
_REFRESH_SECONDS: Final = 2
_REVIEW_ID: Final = re.compile(r"^rv_[0-9a-f]{32}$")
_SELECTED: Final = "id."
"""A dead letter's checkbox is named ``id.<its id>`` (``id.0:42``), like the event-type boxes."""


def _validated(model: type[M], body: dict[str, Any]) -> M:
    """``body`` as the API's body ``model`` would read it (422 with the API's details)."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed.from_pydantic(exc, loc_prefix=("body",)) from None


async def _tenant_connectors(request: Request, tenant_id: str) -> list[str]:
    return [
        c.connector.value for c in await get_connection_service(request).list_connections(tenant_id)
    ]


# --- dead letters ----------------------------------------------------------------------------


def _dead_letter_filter(source: Mapping[str, str]) -> dict[str, str]:
    return {name: str(source.get(name, "")).strip() for name in ("connector", "since", "error")}


@router.get("/t/{tenant_id}/dead-letters")
async def dead_letters_page(request: Request, tenant_id: str) -> Response:
    principal = await tenant_principal(request, tenant_id)
    filters = _dead_letter_filter(request.query_params)
    connectors = await _tenant_connectors(request, tenant_id)
    if not filters["connector"] and connectors:
        filters["connector"] = connectors[0]
    items: list[Any] = []
    next_cursor: str | None = None
    if filters["connector"]:
        connector = _query_connector(filters["connector"])
        error = filters["error"] or None
        if error is not None and not ERROR_KIND.fullmatch(error):
            raise ValidationFailed(
                details=[{"loc": ["query", "error"], "msg": "not an error kind"}]
            )
        page = await deadletters_api.list_dead_letters(
            tenant_id,
            principal,
            deadletters_api.get_dead_letter_service(request),
            connector=connector,
            since=optional_time("since", filters["since"]),
            error=error,
            limit=_DEAD_LETTER_PAGE_SIZE,
            cursor=request.query_params.get("cursor") or None,
        )
        items, next_cursor = page.items, page.next_cursor
    query = request.query_params
    outcome = (
        {
            name: query.get(name, "")
            for name in ("redrive_id", "matched", "queued", "unrecoverable", "not_found")
        }
        if query.get("redrive_id")
        else None
    )
    next_query = urlencode({**{k: v for k, v in filters.items() if v}, "cursor": next_cursor})
    return render(
        request,
        "dead_letters.html",
        {
            "title": "Dead letters",
            "page": "dead-letters",
            "tenant_id": tenant_id,
            "principal": principal,
            "filters": filters,
            "connectors": connectors,
            "items": items,
            "next_query": next_query if next_cursor else None,
            "outcome": outcome,
        },
    )


def _query_connector(name: str) -> Connector:
    try:
        return Connector(name)
    except ValueError:
        raise ValidationFailed(
            details=[{"loc": ["query", "connector"], "msg": "not a registered connector"}]
        ) from None


@router.post("/t/{tenant_id}/dead-letters/redrive")
async def redrive(request: Request, tenant_id: str) -> Response:
    principal, form = await action_form(request, tenant_id)
    filters = _dead_letter_filter(form)
    selection = form.get("selection") == "yes"
    ids = sorted(name[len(_SELECTED) :] for name, on in form.items() if name.startswith(_SELECTED))
    if selection and not ids:
        raise ValidationFailed(
            "tick at least one dead letter to redrive the selected ones",
            details=[{"loc": ["body", "ids"], "msg": "no dead letter selected"}],
        )
    body = _validated(
        deadletters_api.RedriveIn,
        {
            "connector": filters["connector"],
            "since": filters["since"] or None,
            "error": filters["error"] or None,
            **({"ids": ids} if selection else {}),
            "dry_run": form.get("confirmed") != "yes",
        },
    )
    report = await deadletters_api.redrive_dead_letters(
        tenant_id,
        body=body,
        actor=principal,
        service=deadletters_api.get_dead_letter_service(request),
        bounds=deadletters_api.get_dead_letter_api_settings(),
        response=Response(),
    )
    if report.dry_run:
        return render(
            request,
            "redrive_confirm.html",
            {
                "title": "Confirm the redrive",
                "page": "dead-letters",
                "tenant_id": tenant_id,
                "principal": principal,
                "filters": filters,
                "report": report,
                "ids": ids if selection else None,
            },
        )
    _log.info(
        "console.redrive.done",
        extra={"tenant_id": tenant_id, "redrive_id": report.redrive_id, "actor_sub": principal.sub},
    )
    outcome = {
        **{k: v for k, v in filters.items() if v},
        "redrive_id": report.redrive_id,
        "matched": str(report.matched),
        "queued": str(report.queued),
        "unrecoverable": str(report.unrecoverable),
        "not_found": str(report.not_found),
    }
    return redirect(f"/console/t/{tenant_id}/dead-letters?{urlencode(outcome)}")


# --- replays ---------------------------------------------------------------------------------


@router.get("/t/{tenant_id}/replays")
async def replays_page(request: Request, tenant_id: str) -> Response:
    principal = await tenant_principal(request, tenant_id)
    return render(
        request,
        "replays.html",
        {
            "title": "Replays and backfills",
            "page": "replays",
            "tenant_id": tenant_id,
            "principal": principal,
            "connectors": await _tenant_connectors(request, tenant_id),
            "event_types": [e.value for e in EventType],
        },
    )


@router.post("/t/{tenant_id}/replays")
async def start_replay(request: Request, tenant_id: str) -> Response:
    principal, form = await action_form(request, tenant_id)
    body = _validated(
        replay_api.ReplayBody,
        {
            "connector": form.get("connector", ""),
            "since": form.get("since", "").strip() or None,
            "until": form.get("until", "").strip() or None,
            "event_types": [
                e.value for e in EventType if form.get(f"event_type.{e.value}") == "on"
            ],
            "dry_run": form.get("dry_run") == "on",
        },
    )
    run = await replay_api.start_replay(
        tenant_id, body, principal, replay_api.get_replay_service(request), request
    )
    return redirect(f"/console/t/{tenant_id}/replays/{run.replay_id}")


def _run_id(run_id: str, kind: str) -> str:
    """``run_id`` if it can be a run's id; else the API's 404 for ``kind``."""
    if not RUN_ID.fullmatch(run_id):
        raise NotFound(f"{kind} not found", code=f"{kind}_not_found")
    return run_id


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else ""


def _run_page(
    request: Request,
    tenant_id: str,
    principal: Principal,
    *,
    kind: str,
    run: ReplayOut | BackfillOut,
    run_id: str,
    asked: list[tuple[str, str]],
    counts: tuple[str, ...],
    again: list[tuple[str, str]],
    again_label: str,
    cancel_note: str,
    samples: list[dict[str, object]] | None = None,
) -> Response:
    """The page of one run (a replay or a backfill): what it asked, its counts (refreshing
    while it runs), cancel while active, and a finished dry run's offer to run it for real."""
    active = run.status in ACTIVE
    return render(
        request,
        "run.html",
        {
            "title": f"{kind.capitalize()} {run_id}",
            "page": "replays",
            "tenant_id": tenant_id,
            "principal": principal,
            "kind": kind,
            "run": run,
            "run_id": run_id,
            "run_url": f"/console/t/{tenant_id}/{kind}s/{run_id}",
            "asked": asked,
            "counts": counts,
            "active": active,
            "refresh": _REFRESH_SECONDS if active else None,
            "samples": [json.dumps(s, indent=2, sort_keys=True) for s in samples or []],
            "again": (
                {
                    "action": f"/console/t/{tenant_id}/{kind}s",
                    "fields": again,
                    "label": again_label,
                }
                if run.dry_run and run.status == RunStatus.COMPLETED
                else None
            ),
            "cancelled": request.query_params.get("cancel") == "requested",
            "cancel_note": cancel_note,
        },
    )


@router.get("/t/{tenant_id}/replays/{replay_id}")
async def replay_page(request: Request, tenant_id: str, replay_id: str) -> Response:
    principal = await tenant_principal(request, tenant_id)
    run = await replay_api.get_replay(
        tenant_id, _run_id(replay_id, "replay"), principal, replay_api.get_replay_service(request)
    )
    return _run_page(
        request,
        tenant_id,
        principal,
        kind="replay",
        run=run,
        run_id=run.replay_id,
        asked=[
            ("Connector", run.connector),
            ("Window", f"{_iso(run.since)} to {_iso(run.until)}"),
            ("Event types", ", ".join(run.event_types) or "all"),
        ],
        counts=("matched", "queued", "delivered", "failed", "skipped", "duplicates", "malformed"),
        again=[
            ("connector", run.connector),
            ("since", _iso(run.since)),
            ("until", _iso(run.until)),
            *((f"event_type.{e}", "on") for e in run.event_types),
        ],
        again_label=(
            "Replay this record" if run.matched == 1 else f"Replay these {run.matched} records"
        ),
        cancel_note="copies already queued are still delivered.",
        samples=run.samples,
    )


@router.post("/t/{tenant_id}/replays/{replay_id}/cancel")
async def cancel_replay(request: Request, tenant_id: str, replay_id: str) -> Response:
    principal, _form = await action_form(request, tenant_id)
    await replay_api.cancel_replay(
        tenant_id, _run_id(replay_id, "replay"), principal, replay_api.get_replay_service(request)
    )
    return redirect(f"/console/t/{tenant_id}/replays/{replay_id}?cancel=requested")


# --- backfills -------------------------------------------------------------------------------


@router.post("/t/{tenant_id}/backfills")
async def start_backfill(request: Request, tenant_id: str) -> Response:
    principal, form = await action_form(request, tenant_id)
    offset = form.get("from_offset", "").strip()
    body = _validated(
        backfill_api.BackfillBody,
        {
            "connector": form.get("connector", "").strip() or None,
            "since": form.get("since", "").strip() or None,
            "until": form.get("until", "").strip() or None,
            "from_offset": offset or None,
            "dry_run": form.get("dry_run") == "on",
        },
    )
    run = await backfill_api.start_backfill(
        tenant_id, body, principal, backfill_api.get_backfill_service(request), request
    )
    return redirect(f"/console/t/{tenant_id}/backfills/{run.backfill_id}")


@router.get("/t/{tenant_id}/backfills/{backfill_id}")
async def backfill_page(request: Request, tenant_id: str, backfill_id: str) -> Response:
    principal = await tenant_principal(request, tenant_id)
    run = await backfill_api.get_backfill(
        tenant_id,
        _run_id(backfill_id, "backfill"),
        principal,
        backfill_api.get_backfill_service(request),
    )
    start = f"offset {run.from_offset}" if run.from_offset is not None else _iso(run.since)
    return _run_page(
        request,
        tenant_id,
        principal,
        kind="backfill",
        run=run,
        run_id=run.backfill_id,
        asked=[
            ("Connector", run.connector or "every connection"),
            ("From", start),
            ("Until", _iso(run.until) or "the end when it started"),
        ],
        counts=("matched", "exported", "invalid", "unrouted", "delivered", "failed", "skipped"),
        again=[
            ("connector", run.connector or ""),
            ("since", _iso(run.since)),
            ("until", _iso(run.until)),
            ("from_offset", "" if run.from_offset is None else str(run.from_offset)),
        ],
        again_label=f"Backfill for real ({run.exported} export{'' if run.exported == 1 else 's'})",
        cancel_note="exports already made stay, and are delivered.",
    )


@router.post("/t/{tenant_id}/backfills/{backfill_id}/cancel")
async def cancel_backfill(request: Request, tenant_id: str, backfill_id: str) -> Response:
    principal, _form = await action_form(request, tenant_id)
    await backfill_api.cancel_backfill(
        tenant_id,
        _run_id(backfill_id, "backfill"),
        principal,
        backfill_api.get_backfill_service(request),
    )
    return redirect(f"/console/t/{tenant_id}/backfills/{backfill_id}?cancel=requested")


# --- preview ---------------------------------------------------------------------------------


async def _preview_form(
    request: Request,
    tenant_id: str,
    principal: Principal,
    *,
    connector: str = "",
    event: str = "",
    preview: Preview | None = None,
    error: ServiceError | None = None,
) -> Response:
    shown = (
        [
            {
                "destination": d,
                "records": json.dumps(d.record, indent=2, sort_keys=True),
                "requests": [
                    (r, None if r.body is None else json.dumps(r.body, indent=2, sort_keys=True))
                    for r in d.requests
                ],
            }
            for d in preview.destinations
        ]
        if preview is not None
        else []
    )
    return render(
        request,
        "preview.html",
        {
            "title": "Preview",
            "page": "preview",
            "tenant_id": tenant_id,
            "principal": principal,
            "connectors": await _tenant_connectors(request, tenant_id),
            "connector": connector,
            "event": event,
            "preview": preview,
            "destinations": shown,
            "error": error,
        },
        status_code=error.status_code if error is not None else 200,
    )


@router.get("/t/{tenant_id}/preview")
async def preview_page(request: Request, tenant_id: str) -> Response:
    principal = await tenant_principal(request, tenant_id)
    return await _preview_form(request, tenant_id, principal)


@router.post("/t/{tenant_id}/preview")
async def preview(request: Request, tenant_id: str) -> Response:
    principal, form = await action_form(request, tenant_id)
    connector_name, text = form.get("connector", ""), form.get("event", "")
    try:
        try:
            event = json.loads(text)
        except ValueError:
            raise BadRequest("the event is not JSON", code="malformed_json") from None
        body = _validated(preview_api.PreviewIn, {"event": event})
        connector = _query_connector(connector_name)
        result = await preview_api.preview_connection(
            tenant_id, connector, body, principal, preview_api.get_preview_service(request)
        )
    except ServiceError as exc:
        return await _preview_form(
            request, tenant_id, principal, connector=connector_name, event=text, error=exc
        )
    return await _preview_form(
        request, tenant_id, principal, connector=connector_name, event=text, preview=result
    )


# --- inbound reviews -------------------------------------------------------------------------


@router.get("/t/{tenant_id}/inbound-reviews")
async def inbound_reviews_page(request: Request, tenant_id: str) -> Response:
    principal = await tenant_principal(request, tenant_id)
    page = await reviews_api.list_reviews(
        tenant_id,
        principal,
        reviews_api._service(request),  # the API's own builder of the service
        limit=_REVIEW_PAGE_SIZE,
        cursor=request.query_params.get("cursor") or None,
    )
    query = request.query_params
    decided = query.get("decided")
    return render(
        request,
        "inbound_reviews.html",
        {
            "title": "Inbound reviews",
            "page": "inbound-reviews",
            "tenant_id": tenant_id,
            "principal": principal,
            "items": page.items,
            "next_cursor": page.next_cursor,
            "outcome": (
                {"action": decided, "review_id": query.get("review_id", "")}
                if decided in ("resolved", "rejected")
                else None
            ),
        },
    )


@router.post("/t/{tenant_id}/inbound-reviews/{review_id}/{action}")
async def decide_inbound_review(
    request: Request, tenant_id: str, review_id: str, action: str
) -> Response:
    principal, form = await action_form(request, tenant_id)
    if action not in ("resolve", "reject"):
        raise ValidationFailed(details=[{"loc": ["path", "action"], "msg": "resolve or reject"}])
    if action == "resolve":
        body = _validated(
            reviews_api.DecisionIn, {"company_id": form.get("company_id", "").strip()}
        )
    else:
        body = _validated(reviews_api.DecisionIn, {"reject": True})
    if not _REVIEW_ID.fullmatch(review_id):
        raise NotFound("no such review", code="review_not_found")
    await reviews_api.resolve_review(
        tenant_id, review_id, body, principal, reviews_api._service(request)
    )
    outcome = {
        "decided": f"{action}d" if action == "resolve" else "rejected",
        "review_id": review_id,
    }
    return redirect(f"/console/t/{tenant_id}/inbound-reviews?{urlencode(outcome)}")


# --- allowlist (platform admins) -------------------------------------------------------------


@router.get("/admin/allowlist")
async def allowlist_page(request: Request, tenant_id: str = "") -> Response:
    principal = await session_principal(request)
    check_platform_admin(principal)
    tenant = tenant_id.strip()
    status: bool | None = None
    if tenant:
        _allowlist_tenant(tenant)
        status = await get_connection_service(request).is_allowlisted(tenant)
    return render(
        request,
        "allowlist.html",
        {
            "title": "Allowlist",
            "principal": principal,
            "tenant": tenant,
            "allowlisted": status,
            "saved": request.query_params.get("saved"),
        },
    )


def _allowlist_tenant(tenant: str) -> str:
    return check_tenant_id(tenant)


@router.post("/admin/allowlist")
async def set_allowlisted(request: Request) -> Response:
    principal = await session_principal(request)
    check_platform_admin(principal)
    form = await read_form(request)
    check_csrf(request, form.get(CSRF_FIELD))
    tenant = _allowlist_tenant(form.get("tenant_id", "").strip())
    wanted = form.get("allowlisted")
    if wanted not in ("on", "off"):
        raise ValidationFailed(details=[{"loc": ["body", "allowlisted"], "msg": "on or off"}])
    await get_connection_service(request).set_allowlisted(tenant, wanted == "on", actor=principal)
    return redirect(f"/console/admin/allowlist?{urlencode({'tenant_id': tenant, 'saved': wanted})}")

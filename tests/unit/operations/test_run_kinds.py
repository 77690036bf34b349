"""What every kind of operator run shares: its routes, its errors and its reports."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.routing import APIRoute

from processors.operations.backfill import BackfillError
from processors.operations.backfill_api import BackfillOut
from processors.operations.backfill_api import router as backfill_router
from processors.operations.deadletters import RedriveReport, Unrecoverable
from processors.operations.deadletters_invalid import LineRefusal, RepublishReport
from processors.operations.errors import RunFailedError, RunInputError
from processors.operations.replay import ReplayFailedError, ReplayInputError
from processors.operations.replay_api import ReplayOut
from processors.operations.replay_api import router as replay_router
from processors.operations.run_routes import run_fields
from processors.operations.runs import ALL_CONNECTORS, RunRecord, RunStatus

PREFIX = "/v1/tenants/{tenant_id}"


def _routes(router: Any) -> dict[tuple[str, str], APIRoute]:
    return {
        (method, route.path): route
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }


@pytest.mark.parametrize(
    ("router", "runs", "kind"),
    [(replay_router, "replays", "replay"), (backfill_router, "backfills", "backfill")],
)
def test_each_kind_has_the_same_three_routes_and_answers(router: Any, runs: str, kind: str) -> None:
    routes = _routes(router)
    start = routes["POST", f"{PREFIX}/{runs}"]
    read = routes["GET", f"{PREFIX}/{runs}/{{{kind}_id}}"]
    cancel = routes["POST", f"{PREFIX}/{runs}/{{{kind}_id}}/cancel"]
    assert len(routes) == 3
    assert (start.status_code, read.status_code, cancel.status_code) == (202, None, 202)
    assert {409, 429} <= set(start.responses)
    assert "Retry-After" in start.responses[429]["headers"]
    assert f"`{kind}_active`" in start.responses[409]["description"]
    for route in (read, cancel):
        assert f"`{kind}_not_found`" in route.responses[404]["description"]


def _run(**changes: object) -> RunRecord:
    fields: dict[str, object] = {
        "run_id": "bf_1",
        "kind": "backfill",
        "tenant_id": "t_1",
        "connector": ALL_CONNECTORS,
        "status": RunStatus.RUNNING,
        "matched": 7,
        "exported": 5,
        "queued": 3,
        "created_at": datetime(2026, 12, 4, 10, 0, tzinfo=UTC),
    }
    return RunRecord.model_validate({**fields, **changes})


def test_an_answer_takes_the_run_fields_it_shows_by_name() -> None:
    shown = run_fields(BackfillOut, _run(), exclude={"connector"})
    assert shown["matched"] == 7
    assert shown["exported"] == 5
    assert "queued" not in shown, "a backfill answer shows no replay counters"
    assert not {"connector", "run_id", "kind", "requested_by"} & set(shown)
    out = BackfillOut.from_run(_run())
    assert (out.backfill_id, out.connector, out.exported) == ("bf_1", None, 5)
    replay = ReplayOut.from_run(_run(run_id="rp_1", kind="replay", connector="webhook"))
    assert (replay.replay_id, replay.connector, replay.queued, replay.samples) == (
        "rp_1",
        "webhook",
        3,
        [],
    )


def test_a_refused_field_and_a_failed_run_are_the_same_errors_for_every_kind() -> None:
    for refused in (ReplayInputError("since", "no zone"), BackfillError("no zone", field="since")):
        assert isinstance(refused, RunInputError)
        assert (refused.field, refused.message, str(refused)) == ("since", "no zone", "no zone")
    assert issubclass(ReplayFailedError, RunFailedError)


def test_redrive_and_republish_summaries_keep_their_keys_in_order() -> None:
    redrive = RedriveReport("rd_1", True, matched=3, queued=0, from_original=1)
    redrive.unrecoverable.append(Unrecoverable(4, "k", "gone"))
    assert redrive.redrive_id == "rd_1"
    assert list(redrive.summary().items()) == [
        ("redrive_id", "rd_1"),
        ("matched", 3),
        ("queued", 0),
        ("dry_run", True),
        ("from_original", 1),
        ("unrecoverable", 1),
        ("not_found", 0),
    ]
    republish = RepublishReport("rb_1", False, matched=2, refused=[LineRefusal(1, "r", "d")])
    assert republish.republish_id == "rb_1"
    assert list(republish.summary().items()) == [
        ("republish_id", "rb_1"),
        ("matched", 2),
        ("queued", 0),
        ("dry_run", False),
        ("refused", 1),
    ]

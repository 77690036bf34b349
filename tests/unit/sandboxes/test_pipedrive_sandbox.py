"""The local Pipedrive sandbox, served for real on loopback and driven with httpx.

The served sandbox's time is a :class:`SteeredClock` (real unless a test freezes it), so a
test about a rolling window does not depend on how fast a loaded machine sends requests;
the limit tests that need no server drive a :class:`SandboxState` on a fake clock.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.sandboxes.pipedrive import (
    AccountInfo,
    AccountLimits,
    AccountSpec,
    OAuthClientSpec,
    PipedriveSandbox,
    SandboxState,
)
from tests.unit.sandboxes.clocks import SteeredClock

TOKEN = "tok-acme"
OTHER_TOKEN = "tok-globex"
ERROR_KEYS = {"success", "error", "error_info", "data", "additional_data"}


@pytest.fixture(scope="module")
def module_clock() -> SteeredClock:
    return SteeredClock()


@pytest.fixture(scope="module")
def server(module_clock: SteeredClock) -> Iterator[PipedriveSandbox]:
    state = SandboxState(clock=module_clock.time, monotonic=module_clock.monotonic)
    with PipedriveSandbox(state=state) as sandbox:
        yield sandbox


@pytest.fixture
def clock(module_clock: SteeredClock) -> Iterator[SteeredClock]:
    """The served sandbox's clock: real time unless the test freezes it."""
    module_clock.release()
    yield module_clock
    module_clock.release()


@pytest.fixture
def sandbox(server: PipedriveSandbox, clock: SteeredClock) -> Iterator[PipedriveSandbox]:
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def acme(sandbox: PipedriveSandbox) -> AccountInfo:
    return sandbox.add_account(
        AccountSpec(
            name="acme",
            api_tokens=[TOKEN],
            oauth_clients=[
                OAuthClientSpec(client_id="cid", client_secret="cs", refresh_token="rt")
            ],
        )
    )


@pytest.fixture
def api(sandbox: PipedriveSandbox, acme: AccountInfo) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, headers={"x-api-token": TOKEN}) as client:
        yield client


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _state(**limits: Any) -> tuple[SandboxState, FakeTime]:
    clock = FakeTime()
    state = SandboxState(clock=clock, monotonic=clock)
    state.add_account(
        AccountSpec(name="acme", api_tokens=[TOKEN, "tok-2"], limits=AccountLimits(**limits))
    )
    return state, clock


def _get(state: SandboxState, token: str = TOKEN, *, operation: Any = "get") -> Any:
    return state.handle_api(
        operation,
        route="test",
        collection="organizations",
        object_id=1,
        headers={"x-api-token": token},
        query={"term": "acme.example", "exact_match": "true"} if operation == "search" else {},
        body=None,
    )


# -- organizations ------------------------------------------------------------------------


def test_organizations_round_trip_with_pipedrive_shapes(
    api: httpx.Client, acme: AccountInfo
) -> None:
    created = api.post(
        "/api/v2/organizations",
        json={"name": "Acme", "custom_fields": {acme.domain_field_key: "acme.example"}},
    )
    assert created.status_code == 200
    assert created.headers["x-token-cost"] == "5"
    assert created.headers["x-ratelimit-limit"] == "20"
    assert created.headers["x-ratelimit-remaining"] == "19"
    document = created.json()
    assert document["success"] is True
    org = document["data"]
    assert org["id"] == 1
    assert isinstance(org["id"], int)
    assert org["is_deleted"] is False
    assert org["custom_fields"] == {
        acme.domain_field_key: "acme.example",
        acme.queast_id_field_key: None,
    }

    patched = api.patch(
        "/api/v2/organizations/1", json={"custom_fields": {acme.queast_id_field_key: "co_1"}}
    )
    assert patched.headers["x-token-cost"] == "5"
    assert patched.json()["data"]["custom_fields"] == {
        acme.domain_field_key: "acme.example",
        acme.queast_id_field_key: "co_1",
    }
    assert patched.json()["data"]["name"] == "Acme"

    fetched = api.get("/api/v2/organizations/1", params={"custom_fields": acme.queast_id_field_key})
    assert fetched.headers["x-token-cost"] == "1"
    assert fetched.json()["data"]["custom_fields"] == {acme.queast_id_field_key: "co_1"}

    deleted = api.delete("/api/v2/organizations/1")
    assert deleted.headers["x-token-cost"] == "3"
    assert deleted.json() == {"success": True, "data": {"id": 1}}
    assert api.get("/api/v2/organizations/1").status_code == 404
    assert api.delete("/api/v2/organizations/1").status_code == 404


def test_search_organizations_by_the_domain_custom_field(
    sandbox: PipedriveSandbox, api: httpx.Client, acme: AccountInfo
) -> None:
    sandbox.seed_organization("acme", name="Acme", domain="acme.example")
    sandbox.seed_organization("acme", name="Acme Labs", domain="labs.acme.example")
    params = {"term": "ACME.example", "fields": "custom_fields", "exact_match": "true"}
    found = api.get("/api/v2/organizations/search", params=params)
    assert found.headers["x-token-cost"] == "20"
    assert found.headers["x-ratelimit-limit"] == "10"  # the search window's
    document = found.json()
    assert document["additional_data"] == {"next_cursor": None}
    (hit,) = document["data"]["items"]
    assert hit["item"]["id"] == 1
    assert hit["item"]["type"] == "organization"
    assert hit["item"]["custom_fields"] == ["acme.example"]
    loose = api.get(
        "/api/v2/organizations/search", params={"term": "acme.ex", "fields": "custom_fields"}
    )
    assert [h["item"]["id"] for h in loose.json()["data"]["items"]] == [1, 2]
    by_name = api.get(
        "/api/v2/organizations/search",
        params={"term": "acme", "fields": "name", "exact_match": "true"},
    )
    assert [h["item"]["id"] for h in by_name.json()["data"]["items"]] == [1]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"term": "a"},
        {"term": "acme", "fields": "website"},
        {"term": "acme", "limit": "501"},
        {"term": "acme", "exact_match": "maybe"},
        {"term": "acme", "domain": "x"},
    ],
)
def test_bad_searches_are_400(api: httpx.Client, params: dict[str, str]) -> None:
    answer = api.get("/api/v2/organizations/search", params=params)
    assert answer.status_code == 400
    assert set(answer.json()) == ERROR_KEYS


# -- persons ------------------------------------------------------------------------------


def test_persons_with_emails_and_an_organization(
    sandbox: PipedriveSandbox, api: httpx.Client, acme: AccountInfo
) -> None:
    org = sandbox.seed_organization("acme", name="Acme")
    created = api.post(
        "/api/v2/persons",
        json={
            "name": "Ada Lovelace",
            "emails": [{"value": "ada@acme.example", "primary": True, "label": "work"}],
            "org_id": org["id"],
            "custom_fields": {acme.queast_id_field_key: "pe_1"},
        },
    ).json()["data"]
    assert (created["first_name"], created["last_name"]) == ("Ada", "Lovelace")
    assert created["org_id"] == org["id"]
    found = api.get(
        "/api/v2/persons/search",
        params={"term": "ADA@acme.example", "fields": "email", "exact_match": "true"},
    ).json()["data"]["items"]
    (hit,) = found
    assert hit["item"]["emails"] == ["ada@acme.example"]
    assert hit["item"]["organization"] == {"id": org["id"], "name": "Acme", "address": None}
    patched = api.patch(
        f"/api/v2/persons/{created['id']}",
        json={"emails": [{"value": "a@b.example", "primary": True}]},
    ).json()["data"]
    assert patched["emails"] == [{"value": "a@b.example", "primary": True}]


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/api/v2/organizations", {"name": "A", "domain": "a.example"}, "unknown field"),
        ("/api/v2/organizations", {"custom_fields": {}}, "name: required"),
        ("/api/v2/organizations", {"name": ""}, "must not be empty"),
        ("/api/v2/organizations", {"name": 5}, "wrong type"),
        (
            "/api/v2/organizations",
            {"name": "A", "custom_fields": {"nope": "x"}},
            "unknown field key",
        ),
        ("/api/v2/organizations", ["not", "an", "object"], "JSON object"),
        ("/api/v2/persons", {"name": "A", "emails": [{"value": "a@x", "kind": "w"}]}, "emails"),
        ("/api/v2/persons", {"name": "A", "emails": [{"primary": True}]}, "emails"),
        ("/api/v2/persons", {"name": "A", "org_id": 999}, "Organization not found"),
        ("/api/v2/persons", {"name": "A", "linkedin": "x"}, "unknown field"),
        ("/v1/notes", {"content": "<p>x</p>"}, "attached"),
        ("/v1/notes", {"org_id": 1}, "content: required"),
        ("/v1/notes", {"content": "x", "org_id": 1, "title": "t"}, "unknown field"),
    ],
)
def test_invalid_bodies_get_pipedrives_error_body(
    api: httpx.Client, path: str, body: Any, message: str
) -> None:
    answer = api.post(path, json=body)
    assert answer.status_code == 400
    document = answer.json()
    assert set(document) == ERROR_KEYS
    assert document["success"] is False
    assert document["data"] is None
    assert message in document["error"] + document["error_info"]


def test_notes_are_v1_and_need_an_existing_target(
    sandbox: PipedriveSandbox, api: httpx.Client
) -> None:
    assert api.post("/v1/notes", json={"content": "x", "org_id": 5}).status_code == 404
    org = sandbox.seed_organization("acme", name="Acme")
    created = api.post("/v1/notes", json={"content": "<p>x</p>", "org_id": org["id"]})
    assert created.status_code == 201
    assert created.headers["x-token-cost"] == "10"
    assert created.json()["data"]["org_id"] == org["id"]
    assert sandbox.notes("acme")[0]["content"] == "<p>x</p>"
    assert api.post("/api/v2/notes", json={"content": "x", "org_id": org["id"]}).status_code in (
        404,
        405,
    )


# -- auth and accounts ----------------------------------------------------------------------


def test_requests_without_a_valid_token_are_401(
    sandbox: PipedriveSandbox, acme: AccountInfo
) -> None:
    assert httpx.get(f"{sandbox.url}/api/v2/organizations/1").status_code == 401
    answer = httpx.get(f"{sandbox.url}/api/v2/organizations/1", headers={"x-api-token": "nope"})
    assert answer.status_code == 401
    assert set(answer.json()) == ERROR_KEYS
    query = httpx.get(f"{sandbox.url}/api/v2/organizations/1?api_token={TOKEN}")
    assert query.status_code == 401  # only the header is supported


def test_tokens_map_to_their_own_account(sandbox: PipedriveSandbox, api: httpx.Client) -> None:
    sandbox.add_account("globex", api_tokens=[OTHER_TOKEN])
    org = sandbox.seed_organization("acme", name="Acme")
    other = httpx.get(
        f"{sandbox.url}/api/v2/organizations/{org['id']}", headers={"x-api-token": OTHER_TOKEN}
    )
    assert other.status_code == 404
    assert api.get(f"/api/v2/organizations/{org['id']}").status_code == 200


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def test_oauth_tokens_refresh_expire_and_refresh_again(
    sandbox: PipedriveSandbox, acme: AccountInfo
) -> None:
    form = {"grant_type": "refresh_token", "refresh_token": "rt"}
    bad = httpx.post(sandbox.token_url, data=form, headers={"authorization": _basic("cid", "x")})
    assert bad.status_code == 401
    wrong_grant = httpx.post(
        sandbox.token_url,
        data={"grant_type": "refresh_token", "refresh_token": "other"},
        headers={"authorization": _basic("cid", "cs")},
    )
    assert wrong_grant.json() == {"error": "invalid_grant"}
    granted = httpx.post(
        sandbox.token_url, data=form, headers={"authorization": _basic("cid", "cs")}
    )
    token = granted.json()
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3599
    assert token["refresh_token"] == "rt"
    assert token["api_domain"] == sandbox.url
    bearer = {"authorization": f"Bearer {token['access_token']}"}
    org = sandbox.seed_organization("acme", name="Acme")
    url = f"{sandbox.url}/api/v2/organizations/{org['id']}"
    answer = httpx.get(url, headers=bearer)
    assert answer.status_code == 200
    assert answer.headers["x-ratelimit-limit"] == "80"  # the OAuth burst
    sandbox.expire_tokens()
    assert httpx.get(url, headers=bearer).status_code == 401
    again = httpx.post(sandbox.token_url, data=form, headers={"authorization": _basic("cid", "cs")})
    fresh = {"authorization": f"Bearer {again.json()['access_token']}"}
    assert httpx.get(url, headers=fresh).status_code == 200
    assert sandbox.stats().token_refreshes == 2


# -- limits (with a fake clock) ---------------------------------------------------------------


def test_the_burst_window_is_per_token() -> None:
    state, clock = _state(api_token_burst=3)
    state.seed_organization("acme", name="Acme")
    answers = [_get(state) for _ in range(4)]
    assert [a.status for a in answers] == [200, 200, 200, 429]
    refused = answers[-1]
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert refused.headers["x-ratelimit-reset"] == "2"
    assert "x-token-cost" not in refused.headers
    assert _get(state, "tok-2").status == 200  # another token has its own window
    clock.now += 1.5
    assert _get(state).status == 429
    assert _get(state).headers["x-ratelimit-reset"] == "0.5"
    clock.now += 0.5
    assert _get(state).status == 200
    assert state.stats().throttled_by_reason == {"burst": 3}


def test_search_is_limited_to_ten_per_two_seconds() -> None:
    state, clock = _state(api_token_burst=100, daily_budget=10_000)
    answers = [_get(state, operation="search") for _ in range(11)]
    assert [a.status for a in answers].count(200) == 10
    assert answers[-1].status == 429
    assert answers[-1].headers["x-ratelimit-limit"] == "10"
    assert _get(state).status in (200, 404)  # other requests are not search-limited
    clock.now += 2
    assert _get(state, operation="search").status == 200


def test_the_daily_budget_answers_429_until_the_day_is_reset() -> None:
    state, _ = _state(daily_budget=3)
    state.seed_organization("acme", name="Acme")
    assert [_get(state).status for _ in range(3)] == [200, 200, 200]
    refused = _get(state)
    assert refused.status == 429
    assert refused.document["error"] == "Daily API token budget exceeded"
    assert refused.headers["x-token-cost"] == "0"
    assert int(refused.headers["x-ratelimit-remaining"]) > 0  # not the burst limit
    assert state.spent("acme") == 3
    state.reset_day()
    assert _get(state).status == 200
    assert state.stats().throttled_by_reason == {"budget": 1}


def test_the_daily_write_limit_reports_requests_left() -> None:
    state, _ = _state(daily_write_limit=1)

    def create() -> Any:
        return state.handle_api(
            "create",
            route="test",
            collection="organizations",
            object_id=None,
            headers={"x-api-token": TOKEN},
            query={},
            body={"name": "Acme"},
        )

    first = create()
    assert first.status == 200
    assert first.headers["x-daily-requests-left"] == "0"
    refused = create()
    assert refused.status == 429
    assert refused.headers["x-daily-requests-left"] == "0"
    assert _get(state).status == 200  # reads still go


def test_failures_can_be_injected_and_cost_nothing() -> None:
    state, _ = _state()
    state.seed_organization("acme", name="Acme")
    state.fail_next(2, 503, retry_after=3)
    first, second, third = (_get(state) for _ in range(3))
    assert (first.status, second.status, third.status) == (503, 503, 200)
    assert first.headers["retry-after"] == "3"
    assert state.spent("acme") == 1


# -- control over HTTP ------------------------------------------------------------------------


def test_the_control_api(sandbox: PipedriveSandbox, clock: SteeredClock) -> None:
    clock.freeze()  # the burst of 1 is per 2 s window
    with httpx.Client(base_url=sandbox.url) as control:
        created = control.post(
            "/_control/accounts",
            json={"name": "initech", "api_tokens": ["t-1"], "limits": {"daily_budget": 6}},
        )
        assert created.status_code == 201
        info = created.json()
        assert len(info["domain_field_key"]) == 40
        assert control.post("/_control/accounts", json={"name": "initech"}).status_code == 409
        assert control.post("/_control/accounts", json={"nope": 1}).status_code == 422
        seeded = control.post(
            "/_control/accounts/initech/organizations",
            json={"name": "Initech", "domain": "i.example"},
        ).json()
        assert seeded["custom_fields"][info["domain_field_key"]] == "i.example"
        person = control.post(
            "/_control/accounts/initech/persons",
            json={"name": "Peter", "emails": ["p@i.example"], "org_id": seeded["id"]},
        )
        assert person.status_code == 201
        limits = control.put("/_control/accounts/initech/limits", json={"api_token_burst": 1})
        assert limits.json()["api_token_burst"] == 1
        assert limits.json()["daily_budget"] == 6
        assert control.put("/_control/accounts/initech/limits", json={"x": 1}).status_code == 422

        headers = {"x-api-token": "t-1"}
        org_url = f"/api/v2/organizations/{seeded['id']}"
        assert control.get(org_url, headers=headers).status_code == 200
        assert control.get(org_url, headers=headers).status_code == 429  # burst of 1

        assert (
            control.post("/_control/fail_next", json={"count": 1, "status": 502}).status_code == 204
        )
        assert control.get(org_url, headers=headers).status_code == 502
        control.put("/_control/accounts/initech/limits", json={"api_token_burst": 50})
        for _ in range(5):
            control.get(org_url, headers=headers)
        assert control.get(org_url, headers=headers).status_code == 429  # budget of 6
        assert control.post("/_control/reset_day").status_code == 204
        assert control.get(org_url, headers=headers).status_code == 200
        assert control.post("/_control/expire_tokens").status_code == 204

        stored = control.get("/_control/accounts/initech").json()
        assert [o["name"] for o in stored["organizations"]] == ["Initech"]
        assert [p["name"] for p in stored["persons"]] == ["Peter"]
        assert stored["spent"] == 1
        stats = control.get("/_control/stats").json()
        assert stats["throttled"] == 2
        assert stats["by_status"]["502"] == 1
        everything = control.get("/_control").json()
        assert set(everything["accounts"]) == {"initech"}
        assert control.get("/_control/accounts/nobody").status_code == 404
        assert control.delete("/_control").status_code == 204
        assert control.get("/_control").json()["accounts"] == {}


# -- list endpoints ---------------------------------------------------------------------------


def _list(state: SandboxState, collection: Any = "organizations", **query: str) -> Any:
    return state.handle_api(
        "list",
        route="test",
        collection=collection,
        object_id=None,
        headers={"x-api-token": TOKEN},
        query=query,
        body=None,
    )


def test_list_organizations_pages_with_a_cursor(
    sandbox: PipedriveSandbox, api: httpx.Client, acme: AccountInfo
) -> None:
    for i in range(5):
        sandbox.seed_organization("acme", name=f"Org {i}", domain=f"o{i}.example")
    sandbox.seed_organization("acme", name="Gone")
    api.delete("/api/v2/organizations/6")
    params = {"limit": "2", "custom_fields": acme.domain_field_key}
    pages: list[list[int]] = []
    cursor: str | None = None
    spent_before = sandbox.state.spent("acme")
    while True:
        answer = api.get(
            "/api/v2/organizations", params={**params, **({"cursor": cursor} if cursor else {})}
        )
        assert answer.status_code == 200
        assert answer.headers["x-token-cost"] == "10"
        assert answer.headers["x-ratelimit-limit"] == "20"  # the burst window, not search
        document = answer.json()
        assert set(document) == {"success", "data", "additional_data"}
        assert document["success"] is True
        pages.append([o["id"] for o in document["data"]])
        assert all(set(o["custom_fields"]) == {acme.domain_field_key} for o in document["data"])
        cursor = document["additional_data"]["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str)
    assert pages == [[1, 2], [3, 4], [5]]  # deleted objects are not listed
    assert sandbox.state.spent("acme") - spent_before == 30
    first = api.get("/api/v2/organizations").json()["data"][0]
    assert first["custom_fields"] == {
        acme.domain_field_key: "o0.example",
        acme.queast_id_field_key: None,
    }
    assert {"id", "name", "update_time", "add_time", "is_deleted", "website"} <= set(first)


def test_list_persons_with_emails_and_an_org_filter(
    sandbox: PipedriveSandbox, api: httpx.Client, acme: AccountInfo
) -> None:
    org = sandbox.seed_organization("acme", name="Acme")
    sandbox.seed_person("acme", name="Ada", emails=["ada@acme.example"], org_id=org["id"])
    sandbox.seed_person("acme", name="Bob", emails=["bob@else.example"])
    listed = api.get("/api/v2/persons", params={"limit": "500"}).json()
    assert [p["name"] for p in listed["data"]] == ["Ada", "Bob"]
    assert listed["data"][0]["emails"] == [
        {"value": "ada@acme.example", "primary": True, "label": "work"}
    ]
    assert listed["additional_data"] == {"next_cursor": None}
    by_org = api.get("/api/v2/persons", params={"org_id": str(org["id"])}).json()["data"]
    assert [p["name"] for p in by_org] == ["Ada"]


def test_list_updated_since_returns_changes_from_that_second_on() -> None:
    state, clock = _state()
    clock.now = 1_700_000_000.0  # 2023-11-14T22:13:20Z
    state.seed_organization("acme", name="Old")
    state.seed_organization("acme", name="Changed")
    clock.now += 60
    state.seed_organization("acme", name="New")
    state.handle_api(
        "update",
        route="test",
        collection="organizations",
        object_id=2,
        headers={"x-api-token": TOKEN},
        query={},
        body={"name": "Changed again"},
    )
    since = _list(state, updated_since="2023-11-14T22:14:20Z")
    assert since.status == 200
    assert [o["name"] for o in since.document["data"]] == ["Changed again", "New"]
    assert since.document["data"][1]["update_time"] == "2023-11-14T22:14:20Z"
    later = _list(state, updated_since="2023-11-14T22:14:21Z")
    assert later.document["data"] == []
    until = _list(state, updated_until="2023-11-14T22:14:20Z")
    assert [o["name"] for o in until.document["data"]] == ["Old"]
    newest_first = _list(state, sort_by="update_time", sort_direction="desc", limit="1")
    assert newest_first.document["data"][0]["name"] in {"Changed again", "New"}
    rest = _list(
        state,
        sort_by="update_time",
        sort_direction="desc",
        limit="5",
        cursor=newest_first.document["additional_data"]["next_cursor"],
    )
    assert len(rest.document["data"]) == 2
    assert rest.document["data"][-1]["name"] == "Old"


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "501"},
        {"limit": "0"},
        {"cursor": "not-a-cursor"},
        {"updated_since": "yesterday"},
        {"updated_since": "2025-01-01T10:20:00"},
        {"sort_by": "name"},
        {"custom_fields": ",".join(f"k{i}" for i in range(16))},
        {"domain": "x"},
    ],
)
def test_bad_list_requests_are_400(query: dict[str, str]) -> None:
    state, _ = _state()
    answer = _list(state, **query)
    assert answer.status == 400
    assert set(answer.document) == ERROR_KEYS
    assert answer.headers["x-token-cost"] == "10"  # charged whatever it answers


def test_a_cursor_of_another_sort_order_is_refused() -> None:
    state, _ = _state()
    for name in ("a", "b"):
        state.seed_organization("acme", name=name)
    cursor = _list(state, limit="1").document["additional_data"]["next_cursor"]
    assert _list(state, limit="1", cursor=cursor).document["data"][0]["name"] == "b"
    assert _list(state, cursor=cursor, sort_by="add_time").status == 400

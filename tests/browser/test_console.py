"""The console in a real browser: a tenant admin's review session, refusals, and safety rules.

Each test runs against the real API app (uvicorn, real Redis and Kafka, see ``conftest.py``)
over freshly seeded state (:mod:`tests.browser.seed`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, expect
from redis.asyncio import Redis

from processors.secrets import REDACTED
from processors.topics import TopicMap
from tests.browser.conftest import Served, run_async
from tests.browser.pages import check_page, sign_in
from tests.browser.seed import (
    AUTO_LINKED,
    CORRELATION_ID,
    OTHER_TENANT,
    SECRETS,
    TENANT,
    TO_CONFIRM,
    TO_UNLINK,
    token,
)
from tests.support.kafka_io import TopicReader

API_MATCHES = f"/v1/tenants/{TENANT}/connections/hubspot/matches"


def _api(served: Served, path: str, bearer: str) -> httpx.Response:
    return httpx.get(
        f"{served.url}{path}", headers={"Authorization": f"Bearer {bearer}"}, timeout=10
    )


def _released_copies(served: Served, release_ids: set[str]) -> list[str]:
    """The entity ids of the copies on HubSpot's retry topic sent by those releases."""
    topic = TopicMap(served.settings.topics.prefix).retry("hubspot")
    reader = TopicReader(served.settings.kafka.bootstrap_servers, [topic], 1)
    try:
        records = reader.wait_until(
            lambda found: (
                len([r for r in found if r.headers.get("qi.replay_id") in release_ids])
                >= len(release_ids)
            ),
            timeout=30,
        )
    finally:
        reader.close()
    return sorted(
        r.headers["qi.entity_id"]
        for r in records
        if r.headers.get("qi.replay_id") in release_ids
        and r.headers.get("qi.run.kind") == "release"
    )


def _nav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Tenant pages").get_by_role("link", name=name).click()


def _decide(page: Page, queast_id: str, action: str) -> tuple[str, str]:
    """Press the row's ``action`` button with the keyboard; (released count, release id)."""
    row = page.locator(f'table.reviews tr[data-id="{queast_id}"]')
    row.locator(f'[data-action="{action}"]').focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**/matches?*decided=*")
    notice = page.get_by_role("status")
    expect(notice).to_contain_text(queast_id)
    released = notice.get_attribute("data-released") or ""
    release_id = notice.locator("code").nth(1).inner_text()
    return released, release_id


def test_a_tenant_admin_reviews_matches_in_the_console(
    fresh: Served, page: Page, report_dir: Path
) -> None:
    admin = token()
    sign_in(page, fresh.url, admin)
    home = check_page(page, report_dir, "home-tenant-admin")
    assert f'data-id="{TENANT}"' in home
    assert OTHER_TENANT not in home

    # Connections: both, with state, rate limits, and event-type switches that save.
    page.locator(f'li[data-id="{TENANT}"]').get_by_role("link", name="Connections").click()
    page.wait_for_url(f"**/console/t/{TENANT}/connections")
    check_page(page, report_dir, "connections")
    webhook = page.locator('section.connection[data-id="webhook"]')
    expect(webhook.locator('[data-state="enabled"]')).to_be_visible()
    expect(webhook).to_contain_text("7.0 per second, at most 3 at once")
    expect(
        page.locator('section.connection[data-id="hubspot"] [data-last-delivery]')
    ).to_contain_text("retry_scheduled (503)")
    job_ads = webhook.get_by_label("job_ad.published")
    expect(job_ads).not_to_be_checked()
    webhook.get_by_label("company.deleted").uncheck()
    webhook.locator('[data-action="save-event-types"]').click()
    page.wait_for_url("**/connections?saved=webhook")
    check_page(page, report_dir, "connections-saved")
    saved = _api(fresh, f"/v1/tenants/{TENANT}/connections/webhook", admin).json()
    assert saved["event_types"]["company.deleted"] is False
    assert saved["event_types"]["job_ad.published"] is False
    assert saved["event_types"]["company.upserted"] is True
    assert saved["settings"]["webhook"]["secret"] == REDACTED, "the stored secret was kept"
    assert saved["settings"]["rate_limit_per_second"] == 7
    hubspot = page.locator('section.connection[data-id="hubspot"]')
    hubspot.get_by_label("signal.emitted").uncheck()
    hubspot.locator('[data-action="save-event-types"]').click()
    page.wait_for_url("**/connections?saved=hubspot")
    kept = _api(fresh, f"/v1/tenants/{TENANT}/connections/hubspot", admin).json()
    assert kept["event_types"]["signal.emitted"] is False
    assert kept["settings"]["auth"] == {"type": "private_app", "token": REDACTED}, "token kept"

    # Matches: reviews first; confirm one, reject ("unlink") the other; both release.
    _nav(page, "Matches")
    page.get_by_label("Connection").select_option("hubspot")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**/matches?connector=hubspot")
    check_page(page, report_dir, "matches")
    tables = page.locator("table").evaluate_all("ts => ts.map(t => t.className)")
    assert tables == ["reviews", "links"], "pending reviews come first"
    expect(page.locator(f'table.links tr[data-id="{AUTO_LINKED}"]')).to_contain_text("auto_linked")
    confirmed, confirm_release = _decide(page, TO_CONFIRM, "confirm")
    check_page(page, report_dir, "matches-confirmed")
    unlinked, unlink_release = _decide(page, TO_UNLINK, "unlink")
    check_page(page, report_dir, "matches-unlinked")
    assert (confirmed, unlinked) == ("1", "1")
    assert _released_copies(fresh, {confirm_release, unlink_release}) == sorted(
        [TO_CONFIRM, TO_UNLINK]
    )
    listing = _api(fresh, f"{API_MATCHES}?limit=100", admin).json()
    links = {link["queast_id"]: link for link in listing["links"]}
    assert links[TO_CONFIRM]["state"] == "confirmed"
    assert links[TO_CONFIRM]["decided_by"] == "browser-t_a"
    assert listing["reviews"] == []
    expect(page.locator(f'table.links tr[data-id="{TO_CONFIRM}"]')).to_contain_text("confirmed")
    # Relink the auto-linked company by hand, from its row's box (keyboard only).
    auto = page.locator(f'table.links tr[data-id="{AUTO_LINKED}"]')
    auto.get_by_label("Relink to").fill("hs_company_901")
    auto.get_by_label("Relink to").press("Enter")
    page.wait_for_url("**/matches?*decided=relink*")
    expect(page.get_by_role("status")).to_contain_text(f"Relinked {AUTO_LINKED}: released 0")
    relinked = _api(fresh, f"{API_MATCHES}?limit=100", admin).json()["links"]
    [manual] = [link for link in relinked if link["queast_id"] == AUTO_LINKED]
    assert (manual["partner_object_id"], manual["strategy"]) == ("hs_company_901", "manual")

    # Deliveries: filter by status; attempts with errors, timings, correlation id.
    _nav(page, "Deliveries")
    page.get_by_label("Status").select_option("retry_scheduled")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/deliveries?*status=retry_scheduled*")
    check_page(page, report_dir, "deliveries-filtered")
    rows = page.locator("table.deliveries tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(CORRELATION_ID)
    expect(rows.first).to_contain_text("PartnerUnavailable: HubSpot answered 503")
    expect(rows.first).to_contain_text("120 ms")
    # From an entity to its deliveries.
    rows.first.get_by_role("link", name=AUTO_LINKED).click()
    page.wait_for_url(f"**/deliveries?entity_id={AUTO_LINKED}")
    check_page(page, report_dir, "deliveries-entity")
    expect(page.locator("table.deliveries tbody tr")).to_have_count(3)

    # Another tenant's page: refused as the API refuses it.
    other = page.goto(f"{fresh.url}/console/t/{OTHER_TENANT}/connections")
    assert other is not None
    assert other.status == 403
    api_refusal = _api(fresh, f"/v1/tenants/{OTHER_TENANT}/connections", admin)
    assert api_refusal.status_code == 403
    expect(page.get_by_role("alert")).to_contain_text(api_refusal.json()["error"]["message"])
    expect(page.get_by_role("heading", level=1)).to_have_text("Forbidden")
    check_page(page, report_dir, "other-tenant-refused")

    # Sign out: the session is gone.
    page.goto(f"{fresh.url}/console/")
    page.locator('[data-action="sign-out"]').click()
    page.wait_for_url("**/console/login?signed_out=1")
    check_page(page, report_dir, "signed-out")
    assert page.context.cookies() == []
    after = page.goto(f"{fresh.url}/console/t/{TENANT}/connections")
    assert after is not None
    assert after.status == 401


def test_a_platform_admin_switches_tenants(fresh: Served, page: Page, report_dir: Path) -> None:
    sign_in(page, fresh.url, token(tenant_id=None, roles=("platform_admin",)))
    check_page(page, report_dir, "home-platform-admin")
    page.get_by_label("Tenant id").fill(OTHER_TENANT)
    page.get_by_label("Tenant id").press("Enter")
    page.wait_for_url(f"**/console/t/{OTHER_TENANT}/connections")
    expect(page.locator('section.connection[data-id="webhook"]')).to_be_visible()
    check_page(page, report_dir, "connections-platform-admin-other-tenant")


@contextmanager
def _signed_in_client(served: Served, bearer: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=10, follow_redirects=False) as client:
        answer = client.post("/console/login", data={"token": bearer})
        assert answer.status_code == 303, answer.text
        yield client


def _csrf(client: httpx.Client, path: str) -> str:
    html = client.get(path).text
    marker = 'name="csrf_token" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def test_posts_without_the_session_csrf_token_change_nothing(fresh: Served) -> None:
    admin = token()
    confirm = f"/console/t/{TENANT}/matches/hubspot/company/{TO_CONFIRM}/confirm"
    with _signed_in_client(fresh, admin) as client:
        valid = _csrf(client, f"/console/t/{TENANT}/matches")
        decisions = [confirm.replace("/confirm", f"/{a}") for a in ("confirm", "relink", "unlink")]
        for path in decisions:
            for form in ({}, {"csrf_token": ""}, {"csrf_token": "0" * 64}):
                refused = client.post(path, data={**form, "partner_object_id": "hs_company_102"})
                assert refused.status_code == 403, (path, form)
                assert "csrf_failed" in refused.text
        with _signed_in_client(fresh, token(tenant_id=OTHER_TENANT)) as other:
            forged = other.post(confirm, data={"csrf_token": valid})
            assert forged.status_code == 403, "another session's token and tenant"
        events = f"/console/t/{TENANT}/connections/webhook/event-types"
        assert client.post(events, data={}).status_code == 403
        assert client.post("/console/logout", data={}).status_code == 403
        elsewhere = {"Origin": "https://elsewhere.example"}
        cross = client.post(confirm, data={"csrf_token": valid}, headers=elsewhere)
        assert cross.status_code == 403
        assert "cross_origin" in cross.text
        login_elsewhere = client.post("/console/login", data={"token": admin}, headers=elsewhere)
        assert login_elsewhere.status_code == 403
        assert "set-cookie" not in login_elsewhere.headers
        oversized = client.post(confirm, data={"csrf_token": valid, "x": "y" * 20_000})
        assert oversized.status_code == 413
    anonymous = httpx.post(f"{fresh.url}{confirm}", data={"csrf_token": valid}, timeout=10)
    assert anonymous.status_code == 401
    # Access is judged first, as the API judges it: 401, then 403, then a malformed path 422.
    bogus = f"/console/t/{TENANT}/connections/not-a-connector/event-types"
    assert httpx.post(f"{fresh.url}{bogus}", data={}, timeout=10).status_code == 401
    with _signed_in_client(fresh, token(tenant_id=OTHER_TENANT)) as other:
        assert other.post(bogus, data={}).status_code == 403
        assert other.get("/console/t/bad%20id/connections").status_code == 403
    with _signed_in_client(fresh, token(tenant_id=None, roles=("platform_admin",))) as ops:
        assert ops.get("/console/t/bad%20id/connections").status_code == 422
        ops_csrf = _csrf(ops, f"/console/t/{TENANT}/matches")
        assert ops.post(bogus, data={"csrf_token": ops_csrf}).status_code == 422
    listing = _api(fresh, f"{API_MATCHES}?limit=100", admin).json()
    assert {r["queast_id"] for r in listing["reviews"]} == {TO_CONFIRM, TO_UNLINK}
    events_now = _api(fresh, f"/v1/tenants/{TENANT}/connections/webhook", admin).json()
    assert events_now["event_types"] == {"job_ad.published": False}


async def _snapshot(served: Served) -> dict[bytes, Any]:
    redis = Redis.from_url(served.settings.redis.url)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{served.settings.redis.key_prefix}*")]
        return {k: await redis.dump(k) for k in sorted(keys)}
    finally:
        await redis.aclose()


def test_console_gets_change_nothing_and_render_no_secret(fresh: Served) -> None:
    pages = [
        "/console/",
        "/console/login",
        f"/console/switch?tenant_id={TENANT}",
        f"/console/t/{TENANT}/connections",
        f"/console/t/{TENANT}/connections?saved=webhook",
        f"/console/t/{TENANT}/matches",
        f"/console/t/{TENANT}/matches?connector=hubspot&decided=confirm&queast_id={TO_CONFIRM}",
        f"/console/t/{TENANT}/matches?connector=webhook",
        f"/console/t/{TENANT}/deliveries",
        f"/console/t/{TENANT}/deliveries?status=delivered&connector=hubspot&since=2020-01-01T00:00:00Z",
        f"/console/t/{OTHER_TENANT}/connections",
        f"/console/t/{OTHER_TENANT}/matches",
        # an action's URL fetched with GET is not the action
        f"/console/t/{TENANT}/matches/hubspot/company/{TO_CONFIRM}/confirm",
        "/console/logout",
    ]
    before = run_async(lambda: _snapshot(fresh))
    post_forms = 0
    with _signed_in_client(fresh, token(tenant_id=None, roles=("platform_admin",))) as client:
        for path in pages:
            answer = client.get(path)
            assert answer.status_code in {200, 303, 405}, (path, answer.status_code)
            shown = [s for s in SECRETS if s in answer.text]
            assert not shown, f"{path} renders a secret"
            for form in re.findall(r"<form\b.*?</form>", answer.text, flags=re.DOTALL):
                if 'method="post"' in form and 'action="/console/login"' not in form:
                    assert 'name="csrf_token"' in form, f"{path}: a POST form without CSRF"
                    post_forms += 1
        assert client.get("/console/").status_code == 200, (
            "still signed in: GET /logout did nothing"
        )
    assert run_async(lambda: _snapshot(fresh)) == before


def test_sign_in_sets_a_strict_session_cookie_and_refuses_bad_tokens(fresh: Served) -> None:
    bearer = token()
    answer = httpx.post(f"{fresh.url}/console/login", data={"token": bearer}, timeout=10)
    assert answer.status_code == 303
    [raw] = answer.headers.get_list("set-cookie")
    cookie = SimpleCookie()
    cookie.load(raw)
    [morsel] = cookie.values()
    assert morsel.value == bearer, "only the token, which every request verifies again"
    assert morsel["httponly"]
    assert morsel["samesite"] == "strict"
    assert morsel["path"] == "/console"
    assert not morsel["secure"], "plain HTTP here; set when the request came over HTTPS"
    assert 3500 <= int(morsel["max-age"]) <= 3600, "expires with the token"

    expired = token(exp_in=-600)
    forged = bearer[:-4] + ("AAAA" if not bearer.endswith("AAAA") else "BBBB")
    for refused in (expired, forged, "not-a-jwt", ""):
        again = httpx.post(f"{fresh.url}/console/login", data={"token": refused}, timeout=10)
        assert again.status_code == 401
        assert "set-cookie" not in again.headers
    stale = httpx.get(f"{fresh.url}/console/", cookies={"qi_console_session": forged}, timeout=10)
    assert stale.status_code == 401

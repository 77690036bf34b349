"""The console's operations pages in a real browser: dead letters, replays, preview, inbound
reviews and the allowlist, over the real API app, Redis and Kafka (see ``conftest.py``).

Dead letters and exports are produced straight to the session's topics with the envelope the
delivery engine writes; the redrive's and the replay's copies are read back from the
connector's retry topic, where a worker would pick them up.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
from playwright.sync_api import Page, expect
from redis.asyncio import Redis

from connectors.base.inbound import InboundCompany
from processors.deliveries.envelope import REQUIRED_HEADERS
from processors.inbound.directory import CompanyDirectory, directory_update
from processors.inbound.models import InboundEvent, InboundReview
from processors.inbound.reviews import ReviewStore
from processors.kafka import producer
from processors.samples import sample_events
from processors.secrets import REDACTED
from processors.topics import TopicMap
from tests.browser.conftest import Served, run_async, window_start
from tests.browser.pages import check_page, sign_in
from tests.browser.seed import OTHER_TENANT, SECRETS, TENANT, token
from tests.browser.test_console import _signed_in_client, _snapshot
from tests.support.kafka_io import ConsumedRecord, TopicReader

COMPANY: Final = "co_inbound_console"
PAYLOAD_MARK: Final = "payload-only-5e1d"
"""In every produced record's value, never in a page."""
PAGES: Final = ("dead-letters", "replays", "preview", "inbound-reviews")


def _envelope(key: str, **extra: str) -> list[tuple[str, str | bytes | None]]:
    """The delivery envelope of one webhook record of the tenant, with ``extra`` headers."""
    headers = {name: f"{name}-{key}" for name in REQUIRED_HEADERS}
    headers.update(
        {
            "qi.tenant_id": TENANT,
            "qi.connector": "webhook",
            "qi.event_type": "company.upserted",
            "qi.entity_version": "1",
            "qi.idempotency_key": key,
            "qi.delivery_id": f"dl_{key}",
            **extra,
        }
    )
    return [(name, value.encode()) for name, value in headers.items()]


def _produce(served: Served, topic: str, key: str, **extra: str) -> None:
    client = producer(served.settings.kafka)
    client.produce(
        topic,
        key=TENANT.encode(),
        value=json.dumps({"idempotency_key": key, "data": {"note": PAYLOAD_MARK}}).encode(),
        headers=_envelope(key, **extra),
    )
    assert client.flush(30) == 0


def _copies(served: Served, run_id: str) -> list[ConsumedRecord]:
    """The copies on the webhook retry topic sent by run ``run_id`` (a redrive or replay)."""
    topic = TopicMap(served.settings.topics.prefix).retry("webhook")
    reader = TopicReader(served.settings.kafka.bootstrap_servers, [topic], 1)

    def mine(found: list[ConsumedRecord]) -> list[ConsumedRecord]:
        return [r for r in found if r.headers.get("qi.replay_id") == run_id]

    try:
        return mine(reader.wait_until(lambda found: bool(mine(found)), timeout=30, settle=1))
    finally:
        reader.close()


def _nav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Tenant pages").get_by_role("link", name=name).click()


def test_a_dead_letter_is_counted_then_redriven(
    fresh: Served, page: Page, report_dir: Path
) -> None:
    key = f"ik_dl_{uuid.uuid4().hex[:8]}"
    queued_before = _retry_keys(fresh)  # runs of earlier tests sharing the session's topics
    since = window_start()
    _produce(
        fresh,
        TopicMap(fresh.settings.topics.prefix).dlq("webhook"),
        key,
        **{
            "qi.error.class": "PermanentError",
            "qi.error.status": "400",
            "qi.error.reason": "http_400: the receiver refused the body",
            "qi.attempt": "3",
            "qi.payload_included": "true",
        },
    )
    sign_in(page, fresh.url, token())
    page.goto(f"{fresh.url}/console/t/{TENANT}/connections")
    _nav(page, "Dead letters")
    page.get_by_label("Connector").select_option("webhook")
    page.get_by_label("Error kind (class, status or reason code)").fill("PermanentError")
    page.get_by_label("Since (ISO 8601, with zone)").fill(since)
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/dead-letters?*connector=webhook*")
    html = check_page(page, report_dir, "dead-letters")
    row = page.locator(f'table.dead-letters tr[data-id="dl_{key}"]')
    expect(row).to_contain_text("PermanentError")
    expect(row).to_contain_text("400")
    expect(row).to_contain_text("http_400: the receiver refused the body")
    expect(row.locator("td").nth(6)).to_have_text("3")
    assert PAYLOAD_MARK not in html, "a dead letter's payload is never shown"

    page.locator('[data-action="redrive"]').press("Enter")
    page.wait_for_url("**/dead-letters/redrive")
    check_page(page, report_dir, "dead-letters-redrive-confirm")
    notice = page.get_by_role("status")
    expect(notice).to_have_attribute("data-matched", "1")
    expect(notice).to_contain_text("Nothing was sent")
    assert _retry_keys(fresh) == queued_before, "the dry run queued nothing"

    page.locator('[data-action="redrive"]').press("Enter")
    page.wait_for_url("**/dead-letters?*redrive_id=*")
    check_page(page, report_dir, "dead-letters-redriven")
    done = page.get_by_role("status")
    expect(done).to_have_attribute("data-queued", "1")
    redrive_id = done.get_attribute("data-redrive-id") or ""
    assert redrive_id.startswith("rd_")
    [copy] = _copies(fresh, redrive_id)
    assert copy.headers["qi.idempotency_key"] == key
    assert copy.headers["qi.run.kind"] == "redrive"


def _retry_keys(served: Served) -> set[str]:
    topic = TopicMap(served.settings.topics.prefix).retry("webhook")
    reader = TopicReader(served.settings.kafka.bootstrap_servers, [topic], 1)
    try:
        reader.poll_for(2)
        return {r.headers.get("qi.replay_id", "") for r in reader.records} - {""}
    finally:
        reader.close()


def _finished(page: Page, report_dir: Path, name: str) -> str:
    """Wait for the run page (refreshing itself) to show a finished run; its status."""
    section = page.locator("section[data-status]")
    expect(section).to_have_attribute(
        "data-status", re.compile("completed|failed|cancelled"), timeout=60_000
    )
    check_page(page, report_dir, name)
    return section.get_attribute("data-status") or ""


def test_a_dry_run_replay_then_a_real_one(fresh: Served, page: Page, report_dir: Path) -> None:
    key = f"ik_rp_{uuid.uuid4().hex[:8]}"
    since = window_start()
    _produce(fresh, TopicMap(fresh.settings.topics.prefix).exports("webhook"), key)
    sign_in(page, fresh.url, token())
    page.goto(f"{fresh.url}/console/t/{TENANT}/connections")
    _nav(page, "Replays")
    check_page(page, report_dir, "replays")
    page.get_by_label("Connector", exact=True).select_option("webhook")
    page.get_by_label("Since (ISO 8601, with zone; default an hour before until)").fill(since)
    page.get_by_label("company.upserted").check()
    expect(page.get_by_label("Dry run (count and preview only)")).to_be_checked()
    page.locator('[data-action="replay"]').press("Enter")
    page.wait_for_url(re.compile(r".*/replays/rp_[^/]+$"))
    assert _finished(page, report_dir, "replay-dry-run") == "completed"
    expect(page.locator('[data-count="matched"]')).to_have_text("1")
    expect(page.locator('[data-count="queued"]')).to_have_text("0")
    expect(page.locator("pre.sample")).to_have_count(1)
    dry_url = page.url

    page.locator('[data-action="replay"]').press("Enter")
    page.wait_for_url(lambda url: url != dry_url and "/replays/rp_" in url)
    assert _finished(page, report_dir, "replay-real") == "completed"
    expect(page.locator("h2#run-status")).not_to_contain_text("dry run")
    expect(page.locator('[data-count="queued"]')).to_have_text("1")
    replay_id = page.url.rsplit("/", 1)[1]
    [copy] = _copies(fresh, replay_id)
    assert copy.headers["qi.idempotency_key"] == key
    expect(page.locator('[data-action="cancel"]')).to_have_count(0)

    # Cancel: the API's answer for a finished run, then the run's page again.
    with _signed_in_client(fresh, token()) as client:
        html = client.get(f"/console/t/{TENANT}/replays/{replay_id}").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert csrf is not None
        cancel = f"/console/t/{TENANT}/replays/{replay_id}/cancel"
        assert client.post(cancel, data={}).status_code == 403, "no CSRF token"
        answer = client.post(cancel, data={"csrf_token": csrf.group(1)})
        assert answer.status_code == 303
        assert answer.headers["location"].endswith(f"/replays/{replay_id}?cancel=requested")
        missing = client.post(
            f"/console/t/{TENANT}/replays/rp_{'0' * 32}/cancel",
            data={"csrf_token": csrf.group(1)},
        )
        assert missing.status_code == 404


def _exports(served: Served, run_id: str) -> list[ConsumedRecord]:
    """The webhook exports a backfill ``run_id`` appended."""
    topic = TopicMap(served.settings.topics.prefix).exports("webhook")
    reader = TopicReader(served.settings.kafka.bootstrap_servers, [topic], 1)

    def mine(found: list[ConsumedRecord]) -> list[ConsumedRecord]:
        return [r for r in found if r.headers.get("qi.replay_id") == run_id]

    try:
        return mine(reader.wait_until(lambda found: bool(mine(found)), timeout=30, settle=1))
    finally:
        reader.close()


def test_a_dry_run_backfill_then_a_real_one_then_a_refused_one(
    fresh: Served, page: Page, report_dir: Path
) -> None:
    event = _event()
    company = f"co_backfill_{uuid.uuid4().hex[:8]}"
    event["data"]["company_id"] = company
    since = window_start()
    client = producer(fresh.settings.kafka)
    client.produce(
        TopicMap(fresh.settings.topics.prefix).domain_events,
        key=TENANT.encode(),
        value=json.dumps(event).encode(),
    )
    assert client.flush(30) == 0
    sign_in(page, fresh.url, token())
    page.goto(f"{fresh.url}/console/t/{TENANT}/replays")
    page.get_by_label("Backfill connector").select_option("webhook")
    page.get_by_label("Backfill since (ISO 8601, with zone)").fill(since)
    expect(page.get_by_label("Dry run (count only)")).to_be_checked()
    page.locator('[data-action="backfill"]').press("Enter")
    page.wait_for_url(re.compile(r".*/backfills/bf_[^/]+$"))
    assert _finished(page, report_dir, "backfill-dry-run") == "completed"
    expect(page.locator("h2#run-status")).to_contain_text("dry run")
    expect(page.locator('[data-count="matched"]')).to_have_text("1")
    expect(page.locator('[data-count="exported"]')).to_have_text("1")
    dry_url = page.url

    page.locator('[data-action="backfill"]').press("Enter")
    page.wait_for_url(lambda url: url != dry_url and "/backfills/bf_" in url)
    assert _finished(page, report_dir, "backfill-real") == "completed"
    expect(page.locator("h2#run-status")).not_to_contain_text("dry run")
    expect(page.locator('[data-count="exported"]')).to_have_text("1")
    backfill_id = page.url.rsplit("/", 1)[1]
    [export] = _exports(fresh, backfill_id)
    assert export.headers["qi.run.kind"] == "backfill"
    assert export.headers["qi.entity_id"] == company
    expect(page.locator('[data-action="cancel"]')).to_have_count(0)

    with _signed_in_client(fresh, token()) as http:
        html = http.get(f"/console/t/{TENANT}/replays").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert csrf is not None
        form = {"csrf_token": csrf.group(1), "connector": "webhook", "dry_run": "on"}
        both = http.post(
            f"/console/t/{TENANT}/backfills", data={**form, "since": since, "from_offset": "0"}
        )
        assert both.status_code == 422, "a time and an offset: the API's 422"
        assert "not both" in both.text
        naive = http.post(
            f"/console/t/{TENANT}/backfills", data={**form, "since": "2026-12-04T10:00:00"}
        )
        assert naive.status_code == 422
        unknown = http.post(f"/console/t/{TENANT}/backfills", data={**form, "connector": "nope"})
        assert unknown.status_code == 422
        assert http.post(f"/console/t/{TENANT}/backfills", data=form).status_code == 422
        cancel = f"/console/t/{TENANT}/backfills/{backfill_id}/cancel"
        assert http.post(cancel, data={}).status_code == 403, "no CSRF token"
        answer = http.post(cancel, data={"csrf_token": csrf.group(1)})
        assert answer.status_code == 303
        assert answer.headers["location"].endswith(f"/backfills/{backfill_id}?cancel=requested")
        for missing in (f"bf_{'0' * 32}", "not-an-id"):
            gone = http.post(
                f"/console/t/{TENANT}/backfills/{missing}/cancel",
                data={"csrf_token": csrf.group(1)},
            )
            assert gone.status_code == 404
            assert "backfill_not_found" in gone.text
        assert http.get(f"/console/t/{TENANT}/backfills/{backfill_id}").status_code == 200
        refused = http.post(
            f"/console/t/{OTHER_TENANT}/backfills",
            data={**form, "since": since},
        )
        assert refused.status_code == 403
        assert http.get(f"/console/t/{OTHER_TENANT}/backfills/{backfill_id}").status_code == 403


def test_rows_picked_one_by_one_are_counted_then_redriven_alone(
    fresh: Served, page: Page, report_dir: Path
) -> None:
    keys = [f"ik_pick_{n}_{uuid.uuid4().hex[:8]}" for n in range(2)]
    since = window_start()
    for key in keys:
        _produce(
            fresh,
            TopicMap(fresh.settings.topics.prefix).dlq("webhook"),
            key,
            **{"qi.error.class": "PermanentError", "qi.payload_included": "true"},
        )
    sign_in(page, fresh.url, token())
    page.goto(f"{fresh.url}/console/t/{TENANT}/dead-letters?connector=webhook&since={since}")
    rows = page.locator("table.dead-letters tbody tr")
    expect(rows).to_have_count(2)
    picked = page.locator(f'table.dead-letters tr[data-id="dl_{keys[1]}"]')
    picked.get_by_role("checkbox").check()
    check_page(page, report_dir, "dead-letters-picked")
    page.locator('[data-action="redrive-selected"]').press("Enter")
    page.wait_for_url("**/dead-letters/redrive")
    check_page(page, report_dir, "dead-letters-picked-confirm")
    notice = page.get_by_role("status")
    expect(notice).to_have_attribute("data-matched", "1")
    expect(notice).to_have_attribute("data-not-found", "0")
    page.locator('[data-action="redrive-selected"]').press("Enter")
    page.wait_for_url("**/dead-letters?*redrive_id=*")
    done = page.get_by_role("status")
    expect(done).to_have_attribute("data-queued", "1")
    redrive_id = done.get_attribute("data-redrive-id") or ""
    assert [c.headers["qi.idempotency_key"] for c in _copies(fresh, redrive_id)] == [keys[1]]

    with _signed_in_client(fresh, token()) as http:
        html = http.get(f"/console/t/{TENANT}/dead-letters?connector=webhook").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert csrf is not None
        form = {"csrf_token": csrf.group(1), "connector": "webhook", "selection": "yes"}
        redrive = f"/console/t/{TENANT}/dead-letters/redrive"
        none_ticked = http.post(redrive, data=form)
        assert none_ticked.status_code == 422
        assert "tick at least one" in none_ticked.text
        assert http.post(redrive, data={**form, "id.0:x": "on"}).status_code == 422
        forged = http.post(redrive, data={**form, "id.0:999999999": "on"})
        assert forged.status_code == 200, "a dry run"
        assert 'data-matched="0"' in forged.text
        assert 'data-not-found="1"' in forged.text
        crowded = http.post(redrive, data={**form, **{f"id.0:{n}": "on" for n in range(120)}})
        assert crowded.status_code == 413


def _event() -> dict[str, Any]:
    return next(
        e for e in sample_events([TENANT], 20, seed=7) if e["event_type"] == "company.upserted"
    )


def test_a_preview_shows_the_request_with_the_signature_redacted_and_changes_nothing(
    fresh: Served, page: Page, report_dir: Path
) -> None:
    sign_in(page, fresh.url, token())
    page.goto(f"{fresh.url}/console/t/{TENANT}/preview")
    check_page(page, report_dir, "preview-form")
    before = run_async(lambda: _snapshot(fresh))
    page.get_by_label("Connection").select_option("webhook")
    page.get_by_label("Domain event (JSON)").fill(json.dumps(_event(), indent=2))
    page.locator('[data-action="preview"]').press("Enter")
    page.wait_for_load_state()
    html = check_page(page, report_dir, "preview-result")
    destination = page.locator("article.destination").first
    expect(destination).to_contain_text("POST http://127.0.0.1:9/hook")
    signature = destination.locator('tr[data-header="webhook-signature"] td')
    expect(signature).to_have_text(REDACTED)
    assert not [s for s in SECRETS if s in html]
    assert run_async(lambda: _snapshot(fresh)) == before, "a preview wrote to Redis"

    # Bad input: a clear error, the pasted text kept, nothing changed.
    page.get_by_label("Domain event (JSON)").fill("{not json")
    page.locator('[data-action="preview"]').press("Enter")
    page.wait_for_load_state()
    expect(page.get_by_role("alert")).to_contain_text("malformed_json")
    expect(page.get_by_label("Domain event (JSON)")).to_have_value("{not json")
    check_page(page, report_dir, "preview-error")
    other = _event() | {"tenant_id": OTHER_TENANT}
    page.get_by_label("Domain event (JSON)").fill(json.dumps(other))
    page.locator('[data-action="preview"]').press("Enter")
    page.wait_for_load_state()
    expect(page.get_by_role("alert")).to_contain_text("invalid_event")
    assert run_async(lambda: _snapshot(fresh)) == before


async def _seed_review(served: Served, name: str = "Console Widgets") -> str:
    redis = Redis.from_url(served.settings.redis.url)
    prefix = served.settings.redis.key_prefix
    try:
        company_event = {
            "event_id": str(uuid.uuid4()),
            "event_type": "company.upserted",
            "schema_version": "1.0",
            "tenant_id": TENANT,
            "occurred_at": "2026-12-01T09:00:00Z",
            "correlation_id": str(uuid.uuid4()),
            "data": {"company_id": COMPANY, "name": "Console Widgets", "version": 1},
        }
        update = directory_update(json.dumps(company_event).encode())
        assert update is not None
        await CompanyDirectory(redis, key_prefix=prefix).apply(update)
        event = InboundEvent(
            inbound_id=f"in_{uuid.uuid4().hex}",
            tenant_id=TENANT,
            connector="webhook",
            connection_id="conn_console_inbound",
            partner_event_id=f"evt-{uuid.uuid4().hex[:12]}",
            company=InboundCompany(name=name),
            occurred_at=datetime.now(UTC),
            received_at=datetime.now(UTC),
            correlation_id=str(uuid.uuid4()),
        )
        review = InboundReview.model_validate(
            {
                "review_id": f"rv_{uuid.uuid4().hex}",
                "tenant_id": TENANT,
                "reason": "ambiguous",
                "explanation": "two companies share the name Console Widgets",
                "candidates": [
                    {"company_id": COMPANY, "score": 0.82, "strategy": "company_name"},
                    {"company_id": "co_other_widgets", "score": 0.8, "strategy": "company_name"},
                ],
                "event": event,
                "created_at": datetime.now(UTC),
            }
        )
        assert await ReviewStore(redis, key_prefix=prefix).add(review)
        return review.review_id
    finally:
        await redis.aclose()


def test_an_inbound_review_is_resolved(fresh: Served, page: Page, report_dir: Path) -> None:
    review_id = run_async(lambda: _seed_review(fresh))
    rejected_id = run_async(lambda: _seed_review(fresh, "Unknown Gadgets"))
    bookmarks = TopicMap(fresh.settings.topics.prefix).bookmarks
    sign_in(page, fresh.url, token())
    page.goto(f"{fresh.url}/console/t/{TENANT}/connections")
    _nav(page, "Inbound reviews")
    check_page(page, report_dir, "inbound-reviews")
    row = page.locator(f'table.inbound-reviews tr[data-id="{review_id}"]')
    expect(row).to_have_attribute("data-status", "pending")
    expect(row).to_contain_text("0.82 (company_name)")
    expect(row).to_contain_text("Console Widgets")
    expect(row).to_contain_text("ambiguous: two companies share the name")
    row.get_by_label("Company id").fill(COMPANY)
    row.locator('[data-action="resolve"]').press("Enter")
    page.wait_for_url("**/inbound-reviews?decided=resolved*")
    check_page(page, report_dir, "inbound-reviews-resolved")
    expect(row).to_have_attribute("data-status", "resolved")
    expect(row.locator('[data-action="reject"]')).to_have_count(0)
    other = page.locator(f'table.inbound-reviews tr[data-id="{rejected_id}"]')
    other.locator('[data-action="reject"]').press("Enter")
    page.wait_for_url("**/inbound-reviews?decided=rejected*")
    expect(other).to_have_attribute("data-status", "rejected")
    listed = httpx.get(
        f"{fresh.url}/v1/tenants/{TENANT}/inbound/reviews",
        headers={"Authorization": f"Bearer {token()}"},
        timeout=10,
    ).json()["items"]
    [decided] = [r for r in listed if r["review_id"] == review_id]
    [refused] = [r for r in listed if r["review_id"] == rejected_id]
    assert (refused["status"], refused["bookmark"]) == ("rejected", None)
    assert decided["bookmark"]["company_id"] == COMPANY
    assert decided["decided_by"] == "browser-t_a"
    reader = TopicReader(fresh.settings.kafka.bootstrap_servers, [bookmarks], 1)
    try:
        found = reader.wait_until(
            lambda rs: any(
                json.loads(r.value or b"{}").get("bookmark_id")
                == decided["bookmark"]["bookmark_id"]
                for r in rs
            ),
            timeout=30,
        )
    finally:
        reader.close()
    assert [r for r in found if COMPANY.encode() in (r.value or b"")]


def test_a_platform_admin_edits_the_allowlist(fresh: Served, page: Page, report_dir: Path) -> None:
    sign_in(page, fresh.url, token(tenant_id=None, roles=("platform_admin",)))
    page.get_by_role("link", name="Allowlist").click()
    page.get_by_label("Tenant id").fill("t_new_customer")
    page.get_by_label("Tenant id").press("Enter")
    section = page.locator('section[data-id="t_new_customer"]')
    expect(section).to_have_attribute("data-allowlisted", "no")
    check_page(page, report_dir, "allowlist")
    section.locator('[data-action="allow"]').press("Enter")
    page.wait_for_url("**/allowlist?*saved=on*")
    expect(page.locator('section[data-id="t_new_customer"]')).to_have_attribute(
        "data-allowlisted", "yes"
    )
    check_page(page, report_dir, "allowlist-saved")
    ops = token(tenant_id=None, roles=("platform_admin",))
    status = httpx.get(
        f"{fresh.url}/admin/v1/allowlist/t_new_customer",
        headers={"Authorization": f"Bearer {ops}"},
        timeout=10,
    ).json()
    assert status == {"tenant_id": "t_new_customer", "allowlisted": True}
    page.locator('[data-action="disallow"]').press("Enter")
    page.wait_for_url("**/allowlist?*saved=off*")
    expect(page.locator('section[data-id="t_new_customer"]')).to_have_attribute(
        "data-allowlisted", "no"
    )


def test_operations_pages_refuse_other_tenants_and_gets_change_nothing(fresh: Served) -> None:
    admin = token()
    before = run_async(lambda: _snapshot(fresh))
    with _signed_in_client(fresh, admin) as client:
        for slug in PAGES:
            assert client.get(f"/console/t/{TENANT}/{slug}").status_code == 200, slug
            refused = client.get(f"/console/t/{OTHER_TENANT}/{slug}")
            assert refused.status_code == 403, slug
            assert "not allowed for this tenant" in refused.text
        csrf = re.search(
            r'name="csrf_token" value="([^"]+)"', client.get(f"/console/t/{TENANT}/preview").text
        )
        assert csrf is not None
        for path in (
            f"/console/t/{OTHER_TENANT}/dead-letters/redrive",
            f"/console/t/{OTHER_TENANT}/replays",
            f"/console/t/{OTHER_TENANT}/preview",
            f"/console/t/{OTHER_TENANT}/inbound-reviews/rv_{'0' * 32}/reject",
        ):
            assert client.post(path, data={"csrf_token": csrf.group(1)}).status_code == 403, path
        for path in (
            f"/console/t/{TENANT}/dead-letters/redrive",
            f"/console/t/{TENANT}/replays",
            f"/console/t/{TENANT}/preview",
        ):
            assert client.post(path, data={}).status_code == 403, f"{path}: no CSRF"
        bad = client.post(
            f"/console/t/{TENANT}/dead-letters/redrive",
            data={"csrf_token": csrf.group(1), "connector": "webhook", "since": "yesterday"},
        )
        assert bad.status_code == 422
        assert client.get("/console/admin/allowlist").status_code == 403, "platform admins only"
        gets = [
            f"/console/t/{TENANT}/dead-letters?connector=webhook&error=PermanentError",
            f"/console/t/{TENANT}/dead-letters?connector=hubspot&since=2020-01-01T00:00:00Z",
            f"/console/t/{TENANT}/dead-letters/redrive",
            f"/console/t/{TENANT}/replays/rp_{'0' * 32}",
            f"/console/t/{TENANT}/replays/rp_{'0' * 32}/cancel",
            f"/console/t/{TENANT}/backfills/bf_{'0' * 32}",
            f"/console/t/{TENANT}/backfills/bf_{'0' * 32}/cancel",
            f"/console/t/{TENANT}/inbound-reviews?decided=resolved&review_id=x",
        ]
        for path in gets:
            answer = client.get(path)
            assert answer.status_code in {200, 404, 405}, (path, answer.status_code)
            assert not [s for s in SECRETS if s in answer.text], path
    with _signed_in_client(fresh, token(tenant_id=None, roles=("platform_admin",))) as ops:
        for path in ("/console/admin/allowlist", "/console/admin/allowlist?tenant_id=t_a"):
            assert ops.get(path).status_code == 200
        assert ops.get("/console/admin/allowlist?tenant_id=bad%20id").status_code == 422
    assert run_async(lambda: _snapshot(fresh)) == before

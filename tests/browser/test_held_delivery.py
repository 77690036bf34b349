"""A record held for review is delivered after a tenant admin confirms its match in the console.

Real worker (delivering for HubSpot, against the HubSpot sandbox), real Kafka and Redis, the
real API app: a company whose domain two HubSpot companies share is held; the tenant admin
finds the review in the console, confirms it with the keyboard, sees one record released, and
then sees that record delivered on the Deliveries page, under the decision's release id.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from processors.samples import sample_events, to_json_line
from processors.topics import TopicMap
from tests.browser.conftest import Served, reload_until, worker_env
from tests.browser.pages import check_page, sign_in
from tests.browser.seed import TENANT, token
from tests.sandboxes.hubspot import HubSpotSandbox
from tests.support.kafka_io import produce
from tests.support.worker import WorkerProcess

COMPANY = "co_console_held"
DOMAIN = "console-held-ab.se"
PORTAL_TOKEN = "pat-na1-console-held-portal-token-51d0"


@pytest.fixture
def hubspot() -> Iterator[HubSpotSandbox]:
    with HubSpotSandbox() as sandbox:
        yield sandbox


def test_a_confirmed_match_delivers_the_held_record(
    fresh: Served, page: Page, hubspot: HubSpotSandbox, report_dir: Path, tmp_path: Path
) -> None:
    admin = token()
    portal = hubspot.add_portal(private_app_token=PORTAL_TOKEN)
    seeded = [
        hubspot.state.seed(portal, "companies", {"name": f"Held {n}", "domain": DOMAIN})
        for n in (1, 2)
    ]
    saved = httpx.put(
        f"{fresh.url}/v1/tenants/{TENANT}/connections/hubspot",
        json={"delivery_mode": "api", "auth": {"type": "private_app", "token": PORTAL_TOKEN}},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    assert saved.status_code == 200, saved.text
    event = next(
        e for e in sample_events([TENANT], 20, seed=5) if e["event_type"] == "company.upserted"
    )
    event["data"].update(
        company_id=COMPANY,
        name="Held In The Console AB",
        domain=DOMAIN,
        domains=[DOMAIN],
        website=f"https://{DOMAIN}/",
        linkedin_url="https://www.linkedin.com/company/held-in-the-console-ab",
    )
    worker = WorkerProcess(
        worker_env(fresh, "hubspot", QI_HUBSPOT_BASE_URL=hubspot.url), tmp_path / "worker.log"
    ).start()
    try:
        produce(
            fresh.settings.kafka.bootstrap_servers,
            TopicMap(fresh.settings.topics.prefix).domain_events,
            [(TENANT.encode(), to_json_line(event))],
        )
        sign_in(page, fresh.url, admin)
        page.goto(f"{fresh.url}/console/t/{TENANT}/matches?connector=hubspot")
        review = page.locator(f'table.reviews tr[data-id="{COMPANY}"]')
        assert reload_until(page, lambda: review.count() == 1, within=180), "never held"
        assert PORTAL_TOKEN not in check_page(page, report_dir, "matches-held-by-worker")
        review.locator('[data-action="confirm"]').focus()
        page.keyboard.press("Enter")
        page.wait_for_url("**/matches?*decided=confirm*")
        notice = page.get_by_role("status")
        expect(notice).to_have_attribute("data-released", "1")
        release_id = notice.locator("code").nth(1).inner_text()

        page.goto(f"{fresh.url}/console/t/{TENANT}/deliveries?entity_id={COMPANY}")
        delivered = page.locator(
            'table.deliveries tr[data-status="delivered"]', has_text=release_id
        )
        assert reload_until(page, lambda: delivered.count() == 1, within=180), "not delivered"
        assert PORTAL_TOKEN not in check_page(page, report_dir, "deliveries-released-record")
        expect(page.locator('table.deliveries tr[data-status="held_for_review"]')).to_have_count(1)
    finally:
        worker.stop()
    companies = {c["id"]: c for c in hubspot.objects(portal, "companies")}
    # Exports of earlier browser files (same session topics and tenant) may land in the portal
    # too; what must not exist is a new company for this entity or its domain.
    ours = {
        cid
        for cid, c in companies.items()
        if c["properties"].get("queast_id") == COMPANY or c["properties"].get("domain") == DOMAIN
    }
    assert ours == set(seeded), "the confirmed company was updated, none created"
    confirmed = [c for c in companies.values() if c["properties"].get("queast_id") == COMPANY]
    assert len(confirmed) == 1

"""A dead-lettered record is delivered after a tenant admin redrives it in the console.

Real worker (delivering for the webhook connector), the webhook receiver sandbox, real Kafka
and Redis, the real API app: the receiver refuses the tenant's record (400), the worker
dead-letters it; the receiver is fixed; the tenant admin finds the dead letter in the console,
sees the dry run's count, redrives it, and sees it delivered on the Deliveries page under the
redrive id, exactly once at the receiver. With two dead letters, the one ticked in the table is
redriven and delivered, and the other is not.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from processors.samples import sample_events, to_json_line
from processors.topics import TopicMap
from tests.browser.conftest import Served, reload_until, window_start, worker_env
from tests.browser.pages import check_page, sign_in
from tests.browser.seed import TENANT, WHSEC, token
from tests.sandboxes.webhook_receiver import Behaviour, ReceiverServer
from tests.support.kafka_io import produce
from tests.support.worker import WorkerProcess


@pytest.fixture
def receiver() -> Iterator[ReceiverServer]:
    with ReceiverServer() as server:
        yield server


def _connect_refusing_endpoint(fresh: Served, receiver: ReceiverServer, admin: str) -> None:
    """The tenant's webhook connection, saved through the API, to an endpoint answering 400."""
    receiver.set_secret(TENANT, WHSEC)
    receiver.set_behaviour(TENANT, Behaviour(status=400))
    saved = httpx.put(
        f"{fresh.url}/v1/tenants/{TENANT}/connections/webhook",
        json={"webhook": {"url": receiver.endpoint_url(TENANT), "secret": WHSEC}},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    assert saved.status_code == 200, saved.text


def _publish(fresh: Served, events: list[dict[str, Any]]) -> None:
    produce(
        fresh.settings.kafka.bootstrap_servers,
        TopicMap(fresh.settings.topics.prefix).domain_events,
        [(TENANT.encode(), to_json_line(e)) for e in events],
    )


def test_a_redriven_dead_letter_is_delivered(
    fresh: Served, page: Page, receiver: ReceiverServer, report_dir: Path, tmp_path: Path
) -> None:
    admin = token()
    _connect_refusing_endpoint(fresh, receiver, admin)
    company = f"co_redrive_{uuid.uuid4().hex[:8]}"
    event = next(
        e for e in sample_events([TENANT], 20, seed=11) if e["event_type"] == "company.upserted"
    )
    event["data"]["company_id"] = company
    since = window_start()
    worker = WorkerProcess(
        worker_env(fresh, "webhook", QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS="true"),
        tmp_path / "worker.log",
    ).start()
    try:
        _publish(fresh, [event])
        sign_in(page, fresh.url, admin)
        page.goto(
            f"{fresh.url}/console/t/{TENANT}/dead-letters?connector=webhook&error=400&since={since}"
        )
        row = page.locator("table.dead-letters tbody tr", has_text=company)
        assert reload_until(page, lambda: row.count() == 1, within=180), "never dead-lettered"
        check_page(page, report_dir, "dead-letters-by-worker")
        receiver.set_behaviour(TENANT, None)  # fixed: 200 from now on

        page.locator('[data-action="redrive"]').press("Enter")
        page.wait_for_url("**/dead-letters/redrive")
        expect(page.get_by_role("status")).to_have_attribute("data-matched", "1")
        page.locator('[data-action="redrive"]').press("Enter")
        page.wait_for_url("**/dead-letters?*redrive_id=*")
        done = page.get_by_role("status")
        expect(done).to_have_attribute("data-queued", "1")
        redrive_id = done.get_attribute("data-redrive-id") or ""

        page.goto(f"{fresh.url}/console/t/{TENANT}/deliveries?entity_id={company}")
        delivered = page.locator(
            'table.deliveries tr[data-status="delivered"]', has_text=redrive_id
        )
        assert reload_until(page, lambda: delivered.count() == 1, within=180), "not delivered"
        check_page(page, report_dir, "deliveries-redriven-record")
        expect(page.locator('table.deliveries tr[data-status="dead_lettered"]')).to_have_count(1)
    finally:
        worker.stop()
    assert list(receiver.count_by_id(TENANT, delivered_only=True).values()) == [1]


def test_of_two_dead_letters_only_the_ticked_one_is_delivered(
    fresh: Served, page: Page, receiver: ReceiverServer, report_dir: Path, tmp_path: Path
) -> None:
    admin = token()
    _connect_refusing_endpoint(fresh, receiver, admin)
    tag = uuid.uuid4().hex[:8]
    kept, picked = f"co_kept_{tag}", f"co_picked_{tag}"
    events = [
        e for e in sample_events([TENANT], 40, seed=13) if e["event_type"] == "company.upserted"
    ][:2]
    for event, company in zip(events, (kept, picked), strict=True):
        event["data"]["company_id"] = company
    since = window_start()
    worker = WorkerProcess(
        worker_env(fresh, "webhook", QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS="true"),
        tmp_path / "worker.log",
    ).start()
    try:
        _publish(fresh, events)
        sign_in(page, fresh.url, admin)
        page.goto(
            f"{fresh.url}/console/t/{TENANT}/dead-letters?connector=webhook&error=400&since={since}"
        )
        rows = page.locator("table.dead-letters tbody tr")
        assert reload_until(page, lambda: rows.count() == 2, within=180), "not dead-lettered"
        receiver.set_behaviour(TENANT, None)  # fixed: 200 from now on

        rows.filter(has_text=picked).get_by_role("checkbox").check()
        check_page(page, report_dir, "dead-letters-one-ticked")
        page.locator('[data-action="redrive-selected"]').press("Enter")
        page.wait_for_url("**/dead-letters/redrive")
        expect(page.get_by_role("status")).to_have_attribute("data-matched", "1")
        page.locator('[data-action="redrive-selected"]').press("Enter")
        page.wait_for_url("**/dead-letters?*redrive_id=*")
        done = page.get_by_role("status")
        expect(done).to_have_attribute("data-queued", "1")
        redrive_id = done.get_attribute("data-redrive-id") or ""

        page.goto(f"{fresh.url}/console/t/{TENANT}/deliveries?entity_id={picked}")
        delivered = page.locator(
            'table.deliveries tr[data-status="delivered"]', has_text=redrive_id
        )
        assert reload_until(page, lambda: delivered.count() == 1, within=180), "not delivered"
        check_page(page, report_dir, "deliveries-ticked-record")
        page.goto(f"{fresh.url}/console/t/{TENANT}/deliveries?entity_id={kept}")
        expect(page.locator('table.deliveries tr[data-status="delivered"]')).to_have_count(0)
        expect(page.locator('table.deliveries tr[data-status="dead_lettered"]')).to_have_count(1)
    finally:
        worker.stop()
    delivered_ids = receiver.count_by_id(TENANT, delivered_only=True)
    assert list(delivered_ids.values()) == [1], "only the ticked record reached the receiver"

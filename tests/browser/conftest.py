"""Browser tests of the console: the real API app served by uvicorn, headless Chromium.

One browser per session (Debian's ``chromium``, found or installed by
``deploy/local/chromium.sh``, driven by Playwright for Python with ``executable_path``), one
browser context per test. One API app per session, served by uvicorn on a free loopback port in
a thread, over the real Redis and Kafka, with this session's key and topic prefix; each test
starts from freshly seeded state (:mod:`tests.browser.seed`) and the session deletes every key,
topic and consumer group under its prefix at its end (failing if any is left).

Screenshots of every page go to ``$QI_BROWSER_REPORT_DIR`` (default
``.local/reports/browser/``, gitignored), one PNG per page and test.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
from pydantic import SecretStr

from processors.api import create_api
from processors.kafka import ensure_topics
from processors.settings import (
    AuthSettings,
    KafkaSettings,
    RedisSettings,
    Settings,
    TopicSettings,
    WebhookSettings,
)
from processors.topics import TopicMap
from tests.browser.seed import JWT_SECRET, seed
from tests.support.hygiene import delete_keys, remove_prefix
from tests.support.infrastructure import REPO_ROOT, Infrastructure, infrastructure
from tests.support.worker import free_port

T = TypeVar("T")


@dataclass(frozen=True)
class Served:
    """The console under test: its base URL and the settings of its app."""

    url: str
    settings: Settings
    run: str
    """This session's prefix: of its Redis keys, topics, and consumer groups (workers' app id)."""


@pytest.fixture(scope="session")
def infra() -> Iterator[Infrastructure]:
    with infrastructure() as found:
        yield found


@pytest.fixture(scope="session")
def run_id() -> str:
    return f"qi-browser-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def settings(infra: Infrastructure, run_id: str) -> Iterator[Settings]:
    run = run_id
    made = Settings(
        kafka=KafkaSettings(bootstrap_servers=infra.bootstrap_servers),
        redis=RedisSettings(url=infra.redis_url, key_prefix=f"{run}:"),
        topics=TopicSettings(prefix=f"{run}.", partitions=1),
        auth=AuthSettings(jwt_secret=SecretStr(JWT_SECRET)),
        webhook=WebhookSettings(allow_private_networks=True),
    )
    ensure_topics(made.kafka, made.topics, TopicMap(made.topics.prefix).all_specs())
    yield made
    left = remove_prefix(
        bootstrap_servers=infra.bootstrap_servers,
        redis_url=infra.redis_url,
        topic_prefix=made.topics.prefix,
        key_prefix=made.redis.key_prefix,
        group_prefix=run,
    )
    assert not left.topics, f"topics left behind: {left.topics[:5]}"
    assert not left.keys, f"Redis keys left behind: {left.keys[:5]}"


@pytest.fixture(scope="session")
def served(settings: Settings, run_id: str) -> Iterator[Served]:
    """The real API app (console included) under uvicorn on a free port, in a thread."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_api(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="console-uvicorn", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).is_success:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    else:
        server.should_exit = True
        pytest.fail("the API did not start")
    yield Served(url, settings, run_id)
    server.should_exit = True
    thread.join(timeout=30)


def worker_env(served: Served, connector: str, **extra: str) -> dict[str, str]:
    """A real worker's environment on the session's topics, keys and group, delivering for
    ``connector`` only, with quick retries and a short session (``extra`` adds to it)."""
    settings = served.settings
    return {
        "QI_ENV": "development",
        "QI_KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "QI_REDIS_URL": settings.redis.url,
        "QI_REDIS_KEY_PREFIX": settings.redis.key_prefix,
        "QI_TOPIC_PREFIX": settings.topics.prefix,
        "QI_TOPIC_PARTITIONS": str(settings.topics.partitions),
        "QI_WORKER_APP_ID": served.run,
        "QI_METRICS_PORT": str(free_port()),
        "QI_WORKER_DELIVERY_CONNECTORS": json.dumps([connector]),
        "QI_DELIVERY_RETRY_BASE_DELAY_SECONDS": "0.2",
        "QI_DELIVERY_RETRY_MAX_DELAY_SECONDS": "1",
        "BROKER_SESSION_TIMEOUT": "10",
        "BROKER_HEARTBEAT_INTERVAL": "1",
        **extra,
    }


def reload_until(page: Page, found: Callable[[], bool], *, within: float) -> bool:
    """Reload ``page`` each second until ``found()`` holds or ``within`` seconds pass."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if found():
            return True
        page.wait_for_timeout(1000)
        page.reload()
    return found()


def window_start() -> str:
    """A filter's ``since`` (whole seconds, as the forms take it) that leaves out every record
    produced before this call: it waits for the next whole second and names it. The browser
    files share one API, topic prefix and tenant per process, so an earlier test's dead letters
    or deliveries of a moment ago would otherwise fall inside a window reaching back."""
    now = time.time()
    time.sleep(math.ceil(now) - now)
    return datetime.fromtimestamp(math.ceil(now), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_async(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to its end in a thread of its own: Playwright's sync API keeps an event
    loop running in the test's thread, where ``asyncio.run`` is refused."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(work())).result()


def _skip_earlier_records(served: Served) -> None:
    """Commit the end of every topic of the session as the workers' group position.

    The browser files share one topic prefix and one worker group per process, and some tests
    publish to a topic no worker of theirs reads; a later test's worker would otherwise route
    or deliver those records and count them among its own. Workers of earlier tests have
    stopped (every test stops its worker), so the group has no member to object."""
    bootstrap = served.settings.kafka.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bootstrap})
    metadata = admin.list_topics(timeout=10)
    partitions = [
        TopicPartition(name, number)
        for name, topic in metadata.topics.items()
        if name.startswith(served.settings.topics.prefix)
        for number in topic.partitions
    ]
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": served.run, "enable.auto.commit": False}
    )
    try:
        ends = []
        for partition in partitions:
            _low, high = consumer.get_watermark_offsets(partition, timeout=10)
            ends.append(TopicPartition(partition.topic, partition.partition, high))
        if ends:
            consumer.commit(offsets=ends, asynchronous=False)
    finally:
        consumer.close()


@pytest.fixture
def fresh(served: Served) -> Served:
    """The served console over freshly seeded state (whatever earlier tests changed), its
    workers' group past every record published before."""
    delete_keys(served.settings.redis.url, served.settings.redis.key_prefix)
    run_async(lambda: seed(served.settings))
    _skip_earlier_records(served)
    return served


def _chromium() -> str:
    found = subprocess.run(
        [str(REPO_ROOT / "deploy" / "local" / "chromium.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        pytest.fail(f"no Chromium for the browser tests: {found.stderr.strip()}")
    return found.stdout.strip()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Per test file: the sync API keeps an event loop running in this thread while it is open,
    which the asyncio tests of the next file in the same process could not start beside."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(
        executable_path=_chromium(),
        headless=True,
        args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
    )
    yield launched
    launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context: BrowserContext = browser.new_context(bypass_csp=True)  # axe-core is injected
    context.set_default_timeout(15_000)
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture(scope="session")
def report_dir() -> Path:
    """Where screenshots go (``QI_BROWSER_REPORT_DIR``, else ``.local/reports/browser``)."""
    chosen = os.environ.get("QI_BROWSER_REPORT_DIR")
    path = Path(chosen) if chosen else REPO_ROOT / ".local" / "reports" / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path

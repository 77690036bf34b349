"""``queast-integrations preview``: the real command in a child process, over the real Redis."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from processors.samples import sample_events
from processors.secrets import REDACTED
from processors.settings import Settings
from processors.tenants.models import ConnectionRecord, Connector, DeliveryMode
from processors.tenants.repository import ConnectionRepository
from processors.tenants.secret_fields import seal_settings
from tests.support.counting_http import CountingServer
from tests.support.infrastructure import REPO_ROOT

TENANT = "t_cli"
WHSEC = "whsec_" + base64.b64encode(b"preview-cli-webhook-secret-32by!").decode()


def company_event(tenant: str = TENANT) -> str:
    event = next(e for e in sample_events([tenant], 10) if e["event_type"] == "company.upserted")
    return json.dumps(event)


@pytest.fixture
def server() -> Iterator[CountingServer]:
    with CountingServer() as counting:
        yield counting


@pytest.fixture
async def stored(
    repository: ConnectionRepository, settings: Settings, server: CountingServer
) -> ConnectionRecord:
    connection_id = "conn_cli_webhook"
    record = ConnectionRecord(
        tenant_id=TENANT,
        connector=Connector("webhook"),
        connection_id=connection_id,
        delivery_mode=DeliveryMode.WEBHOOK,
        settings=seal_settings(
            {"webhook": {"url": f"{server.url}/hook", "secret": WHSEC}},
            box=settings.secrets.secret_box(),
            tenant_id=TENANT,
            connection_id=connection_id,
        ),
    )
    await repository.put(record)
    await repository.allow(TENANT)
    return record


def run_preview(
    env: Mapping[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "processors", "preview", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env, "QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true"},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_json_preview_of_a_file_ends_with_one_json_object(
    stored: ConnectionRecord, qi_env: dict[str, str], tmp_path: Path, server: CountingServer
) -> None:
    path = tmp_path / "event.json"
    path.write_text(company_event())

    result = run_preview(qi_env, "--tenant", TENANT, "--connector", "webhook", "--json", str(path))

    assert result.returncode == 0, result.stderr
    preview = json.loads(result.stdout.strip().splitlines()[-1])
    assert preview["connection_id"] == stored.connection_id
    assert preview["outcome"] == "would_send"
    (request,) = preview["destinations"][0]["requests"]
    assert request["url"] == f"{server.url}/hook"
    assert request["headers"]["webhook-signature"] == REDACTED
    assert WHSEC not in result.stdout
    assert server.received == []


async def test_stdin_and_the_rich_view(
    stored: ConnectionRecord, qi_env: dict[str, str], server: CountingServer
) -> None:
    result = run_preview(
        qi_env, "--tenant", TENANT, "--connector", "webhook", "-", stdin=company_event()
    )

    assert result.returncode == 0, result.stderr
    assert "would_send" in result.stdout
    assert f"POST {server.url}/hook" in result.stdout
    assert WHSEC not in result.stdout
    assert server.received == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "unparseable"),
        ("[]", "not_an_object"),
        ("x" * (64 * 1024 + 1), "over"),
        (company_event("t_other"), "key_mismatch"),
    ],
)
async def test_a_bad_file_exits_2(
    stored: ConnectionRecord,
    qi_env: dict[str, str],
    tmp_path: Path,
    server: CountingServer,
    content: str | None,
    message: str,
) -> None:
    path = tmp_path / "event.json"
    if content is not None:
        path.write_text(content)

    result = run_preview(qi_env, "--tenant", TENANT, "--connector", "webhook", str(path))

    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""
    assert server.received == []


async def test_an_unknown_tenant_exits_2(
    stored: ConnectionRecord, qi_env: dict[str, str], tmp_path: Path, server: CountingServer
) -> None:
    path = tmp_path / "event.json"
    path.write_text(company_event("t_nobody"))

    result = run_preview(qi_env, "--tenant", "t_nobody", "--connector", "webhook", str(path))

    assert result.returncode == 2
    assert "has no webhook connection" in result.stderr
    assert server.received == []


@pytest.mark.parametrize(
    "args",
    [
        ("--tenant", "bad tenant!", "--connector", "webhook"),
        ("--tenant", TENANT, "--connector", "salesforce"),
    ],
)
async def test_a_bad_tenant_or_connector_exits_2(
    stored: ConnectionRecord, qi_env: dict[str, str], tmp_path: Path, args: tuple[str, ...]
) -> None:
    path = tmp_path / "event.json"
    path.write_text(company_event())

    result = run_preview(qi_env, *args, str(path))

    assert result.returncode == 2
    assert "preview:" in result.stderr

"""Tenant configuration written the way an operator writes it: ``connections seed FILE``.

Tests that must not depend on how configuration reaches Redis (for example, a marker the
command writes alongside it) run the real command in a child process, with the worker's
environment, rather than calling the repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.support.infrastructure import REPO_ROOT

__all__ = ["seed_webhooks"]


def seed_webhooks(
    env: Mapping[str, str],
    path: Path,
    endpoints: Mapping[str, tuple[str, str]],
    *,
    rate_limit_per_second: int = 1000,
    max_concurrency: int = 8,
) -> None:
    """Allow every tenant of ``endpoints`` (tenant to webhook URL and ``whsec_`` secret) and
    give it one webhook connection ``conn_<tenant>``, with ``queast-integrations connections
    seed``. The seed file holds secrets: it is written to ``path`` (a test's tmp dir)."""
    document = {
        "allowlist": sorted(endpoints),
        "connections": [
            {
                "tenant_id": tenant,
                "connector": "webhook",
                "connection_id": f"conn_{tenant}",
                "delivery_mode": "webhook",
                "settings": {
                    "webhook": {"url": url, "secret": secret},
                    "rate_limit_per_second": rate_limit_per_second,
                    "max_concurrency": max_concurrency,
                },
            }
            for tenant, (url, secret) in sorted(endpoints.items())
        ],
    }
    path.write_text(json.dumps(document))
    result = subprocess.run(
        [sys.executable, "-m", "processors", "connections", "seed", str(path)],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        msg = f"connections seed failed ({result.returncode}): {result.stderr[-2000:]}"
        raise RuntimeError(msg)

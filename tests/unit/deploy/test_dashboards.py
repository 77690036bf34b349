"""The dashboard and alert rules only name metrics the service really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import processors.gcpause  # registers its metrics too
import processors.metrics  # noqa: F401  (registers the metrics)

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
_NAME = re.compile(r"\bqi_[a-z0-9_]+")


def _exported() -> set[str]:
    """Series names of every registered family (labelled families have no samples yet)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names: set[str] = set()
    for metric in REGISTRY.collect():
        names.update(metric.name + suffix for suffix in suffixes.get(metric.type, ("",)))
    return names


def test_dashboard_and_alerts_name_existing_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana/dashboards/queast-integrations.json").read_text())
    text = json.dumps(dashboard) + (DEPLOY / "prometheus/alerts.yml").read_text()
    referenced = set(_NAME.findall(text))
    assert referenced, "the dashboard queries the service's metrics"
    exported = _exported()
    unknown = {name for name in referenced if name not in exported}
    assert not unknown, unknown

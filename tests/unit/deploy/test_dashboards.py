"""The Grafana dashboards and the alert rules: valid panels on the provisioned datasource,
querying only metrics (and labels) the service really exports.

Metric names come from the prometheus_client registry after importing the modules that define
metrics (a counter is queried as ``<name>_total``, a histogram as ``_bucket``, ``_sum`` and
``_count``); label names from those modules' metric objects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

import processors.gcpause
import processors.metrics

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
DASHBOARDS = sorted((DEPLOY / "grafana/dashboards").glob("*.json"))
METRIC_MODULES = (processors.metrics, processors.gcpause)

_NAME = re.compile(r"\bqi_[a-z0-9_]+")
_BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_LEGEND_LABEL = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_SCRAPE_LABELS = frozenset({"instance", "job"})


def _series_names(name: str, kind: str) -> tuple[str, ...]:
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    return tuple(name + suffix for suffix in suffixes.get(kind, ("",)))


def _exported() -> set[str]:
    """Series names of every registered family (labelled families have no samples yet)."""
    return {
        series
        for family in REGISTRY.collect()
        for series in _series_names(family.name, family.type)
    }


def _labels() -> dict[str, frozenset[str]]:
    """Series name -> its label names, for the project's metric objects."""
    labels: dict[str, frozenset[str]] = {}
    for module in METRIC_MODULES:
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                extra = {"le"} if value._type == "histogram" else set()
                for series in _series_names(value._name, str(value._type)):
                    labels[series] = frozenset(value._labelnames) | extra | _SCRAPE_LABELS
    return labels


def _known() -> dict[str, frozenset[str]]:
    exported = _exported()
    return {name: labels for name, labels in _labels().items() if name in exported}


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, those nested in (collapsed) rows included; rows themselves are not."""
    for panel in panels:
        if panel.get("type") == "row":
            yield from _panels(panel.get("panels", []))
        else:
            yield panel


def _datasource() -> dict[str, str]:
    provisioned = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").open()
    )
    (source,) = provisioned["datasources"]
    return {"type": source["type"], "uid": source["uid"]}


def _expr_problems(
    expr: str, legend: str, known: dict[str, frozenset[str]], *, allow_or: bool = False
) -> list[str]:
    problems = []
    names = set(_NAME.findall(expr))
    if not names:
        problems.append("queries none of the service's metrics")
    if unknown := sorted(names - set(known)):
        problems.append(f"unknown metrics {unknown}")
    if not allow_or and re.search(r"\bor\b", expr):
        problems.append("joins series with `or` (one target per metric instead)")
    available = frozenset().union(*(known.get(name, frozenset()) for name in names))
    grouped: set[str] = set()
    for clause in _BY.findall(expr):
        by = {label.strip() for label in clause.split(",") if label.strip()}
        if missing := sorted(by - available):
            problems.append(f"groups by labels its metrics do not have: {missing}")
        grouped |= by
    shown = set(_LEGEND_LABEL.findall(legend))
    result_labels = grouped if grouped else available
    if invalid := sorted(shown - result_labels):
        problems.append(f"legend names labels the query does not return: {invalid}")
    return problems


@pytest.mark.parametrize("path", DASHBOARDS, ids=[path.name for path in DASHBOARDS])
def test_dashboard_panels_are_valid(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    datasource = _datasource()
    known = _known()
    assert dashboard.get("title")
    assert dashboard.get("uid")
    panels = list(_panels(dashboard["panels"]))
    assert panels, "a dashboard has panels"
    ids = [panel.get("id") for panel in panels]
    assert None not in ids
    assert len(ids) == len(set(ids)), f"panel ids are unique: {ids}"
    problems: list[str] = []
    for panel in panels:
        where = f"panel {panel.get('id')} {panel.get('title')!r}"
        for field in ("type", "title", "gridPos"):
            if not panel.get(field):
                problems.append(f"{where}: no {field}")
        if panel.get("datasource") != datasource:
            problems.append(f"{where}: datasource {panel.get('datasource')} is not {datasource}")
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{where}: no targets")
        ref_ids = [target.get("refId") for target in targets]
        if len(ref_ids) != len(set(ref_ids)) or None in ref_ids:
            problems.append(f"{where}: target refIds are not unique: {ref_ids}")
        for target in targets:
            if target.get("datasource", datasource) != datasource:
                problems.append(f"{where}: target datasource is not {datasource}")
            expr = target.get("expr")
            if not expr:
                problems.append(f"{where}: target {target.get('refId')} has no expr")
                continue
            problems.extend(
                f"{where}: {problem}"
                for problem in _expr_problems(expr, target.get("legendFormat", ""), known)
            )
    assert not problems, "\n".join(problems)


def test_the_dashboard_shows_consumer_lag_and_failing_connections() -> None:
    exprs = " ".join(
        target["expr"]
        for path in DASHBOARDS
        for panel in _panels(json.loads(path.read_text())["panels"])
        for target in panel.get("targets", [])
    )
    assert "qi_consumer_lag" in exprs
    assert "qi_connections_failing" in exprs


def test_the_alert_rules_name_existing_metrics_and_labels() -> None:
    known = _known()
    rules = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
    problems = [
        f"{rule['alert']}: {problem}"
        for group in rules["groups"]
        for rule in group["rules"]
        for problem in _expr_problems(rule["expr"], "", known, allow_or=True)
    ]
    assert not problems, "\n".join(problems)


def test_the_checks_catch_broken_queries() -> None:
    known = _known()
    assert _expr_problems("sum by (connector) (rate(qi_nope_total[1m]))", "", known)
    assert _expr_problems("sum by (connectr) (rate(qi_deliveries_total[1m]))", "", known)
    assert _expr_problems("sum by (connector) (rate(qi_deliveries_total[1m]))", "{{kind}}", known)
    assert _expr_problems(
        "rate(qi_deliveries_total[1m]) or rate(qi_dlq_records_total[1m])", "", known
    )
    assert not _expr_problems(
        "sum by (connector, outcome) (rate(qi_deliveries_total[1m]))", "{{connector}}", known
    )

"""The alert rules of ``deploy/prometheus/``: valid for Prometheus, and each one tested.

``promtool`` comes from ``deploy/local/promtool.sh`` (Debian's ``prometheus`` package, extracted
into ``.local/``; ``make test`` runs it first through ``make promtool``). When it cannot be
had, these tests fail with the script's reason: they never skip.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy/prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERTS_TEST = PROMETHEUS / "alerts_test.yml"


@pytest.fixture(scope="module")
def promtool() -> Path:
    found = subprocess.run(
        [str(REPO / "deploy/local/promtool.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if found.returncode != 0:
        pytest.fail(f"promtool is not available:\n{found.stderr}", pytrace=False)
    return Path(found.stdout.strip().splitlines()[-1])


def _run(promtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], capture_output=True, text=True, timeout=300, check=False
    )


def _load(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict), path
    return loaded


def _alert_names() -> list[str]:
    return [
        rule["alert"]
        for group in _load(ALERTS)["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def test_the_rules_are_valid(promtool: Path) -> None:
    checked = _run(promtool, "check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(_alert_names())} rules found" in checked.stdout


def test_the_rules_pass_their_unit_tests(promtool: Path) -> None:
    tested = _run(promtool, "test", "rules", str(ALERTS_TEST))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    """A new alert without both cases in alerts_test.yml fails here."""
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in _load(ALERTS_TEST)["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = _alert_names()
    assert len(names) == len(set(names)), "alert names are unique"
    assert set(names) - firing == set(), "alerts with no case where they fire"
    assert set(names) - quiet == set(), "alerts with no case where they stay quiet"
    assert (firing | quiet) - set(names) == set(), "cases of alerts that do not exist"


def test_the_unit_tests_load_the_rules_file_prometheus_loads() -> None:
    assert _load(ALERTS_TEST)["rule_files"] == [ALERTS.name]
    configured = _load(PROMETHEUS / "prometheus.yml")["rule_files"]
    assert [Path(name).name for name in configured] == [ALERTS.name]

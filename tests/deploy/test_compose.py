"""docker-compose.yml names only what the project has, and starts in the right order.

There is no Docker engine here, so ``docker compose config`` cannot run: this test is the check.
Services built from the repository's Dockerfile run ``queast-integrations`` sub-commands (checked
by the CLI's own parser) with ``QI_*`` names and values the settings accept (``${NAME:-default}``
read as its default); the checks are shared with the Kubernetes manifests' test
(:mod:`tests.deploy.checks`). Redis keeps its data on a named volume; the worker and the API
restart, have healthchecks on what they serve, and wait for a one-shot ``topics ensure`` to
succeed, which waits for a healthy broker.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from processors import cli
from tests.deploy.checks import (
    command_problems,
    entrypoint,
    env_names,
    setting_problems,
    settings_from,
    settings_problems,
)
from tests.support.infrastructure import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"
_RESTARTING = {"always", "unless-stopped", "on-failure"}

Compose = dict[str, Any]


def _load(path: Path) -> Compose:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict)
    return document


def _argv(service: Mapping[str, Any]) -> list[str]:
    command = service.get("command") or []
    if isinstance(command, str):
        command = command.split()
    return [*(service.get("entrypoint") or entrypoint()), *command]


def _depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    """Each dependency and its condition (a plain list means ``service_started``)."""
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return dict.fromkeys(depends, "service_started")
    return {
        name: (spec or {}).get("condition", "service_started") for name, spec in depends.items()
    }


_DEFAULTED = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _environment(service: Mapping[str, Any]) -> dict[str, str]:
    """The service's environment, ``${NAME:-default}`` read as its default (unset: empty)."""
    environment = service.get("environment") or {}
    if not isinstance(environment, Mapping):
        environment = dict(str(item).partition("=")[::2] for item in environment)
    return {
        str(name): _DEFAULTED.sub(lambda found: found.group(2) or "", str(value))
        for name, value in environment.items()
        if value is not None
    }


def _healthcheck_problems(name: str, service: Mapping[str, Any], argv: list[str]) -> list[str]:
    test = " ".join(str(word) for word in (service.get("healthcheck") or {}).get("test") or [])
    if not test:
        return [f"{name}: no healthcheck"]
    args = cli._parser().parse_args(argv[1:])
    if args.command == "worker":
        expected = f":{settings_from(_environment(service)).metrics.port}/metrics"
    elif args.command == "api":
        expected = f":{args.port}/healthz"
    else:
        return []
    if expected not in test:
        return [f"{name}: the healthcheck does not ask {expected}"]
    return []


def compose_problems(path: Path) -> list[str]:
    """Every problem of the compose file at ``path`` (empty: all fine)."""
    compose = _load(path)
    services: dict[str, dict[str, Any]] = compose.get("services") or {}
    volumes = compose.get("volumes") or {}
    problems: list[str] = []
    runs: dict[str, str] = {}
    for name, service in services.items():
        for dependency, condition in _depends_on(service).items():
            if dependency not in services:
                problems.append(f"{name}: depends on {dependency!r}, which is not a service")
            elif condition == "service_healthy" and "healthcheck" not in services[dependency]:
                problems.append(f"{name}: waits for {dependency} to be healthy; it has no check")
        if "build" not in service:
            continue
        build = service["build"]
        context = build.get("context") if isinstance(build, Mapping) else build
        if context != ".":
            problems.append(f"{name}: built from {context!r}, not the repository's Dockerfile")
        argv = _argv(service)
        argv_problems = command_problems(argv, where=name)
        problems += argv_problems
        problems += setting_problems(env_names(service.get("environment")), where=name)
        value_problems = settings_problems(_environment(service), where=name)
        problems += value_problems
        if not argv_problems and not value_problems and len(argv) > 1:
            runs[argv[1]] = name
            if argv[1] in {"worker", "api"}:
                problems += _healthcheck_problems(name, service, argv)
                if service.get("restart") not in _RESTARTING:
                    problems.append(f"{name}: restart policy {service.get('restart')!r}")

    topics = next(
        (name for name, service in services.items() if _argv(service)[1:] == ["topics", "ensure"]),
        None,
    )
    if topics is None:
        problems.append("no service runs `topics ensure`")
    elif services[topics].get("restart", "no") not in {"no", None}:
        problems.append(f"{topics}: a one-shot service must not restart")
    for command in ("worker", "api"):
        runner = runs.get(command)
        if runner is None:
            problems.append(f"no service runs `{command}`")
        elif topics is not None:
            waits_for = _depends_on(services[runner]).get(topics)
            if waits_for != "service_completed_successfully":
                problems.append(f"{runner}: does not wait for {topics} to complete successfully")

    redis = services.get("redis") or {}
    mounts = [str(volume).split(":") for volume in redis.get("volumes") or []]
    if not any(target == "/data" and source in volumes for source, target, *_ in mounts):
        problems.append("redis: /data is not on a named volume")
    if "healthcheck" not in redis:
        problems.append("redis: no healthcheck")
    return problems


def test_the_compose_file_names_only_what_the_project_has() -> None:
    assert compose_problems(COMPOSE) == []


def _service_change(service: str, **fields: Any) -> Callable[[Compose], None]:
    def change(compose: Compose) -> None:
        target = compose["services"][service]
        for key, value in fields.items():
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value

    return change


def _misspelt_setting(compose: Compose) -> None:
    compose["services"]["worker"]["environment"] = {"QI_KAFKA_BOOTSTRAP_SERVER": "kafka:9092"}


def _bad_port(compose: Compose) -> None:
    compose["services"]["topics"]["environment"]["QI_METRICS_PORT"] = "${METRICS_PORT:-http}"


def _metrics_elsewhere(compose: Compose) -> None:
    compose["services"]["worker"]["environment"] = {"QI_METRICS_PORT": "9200"}


def _no_redis_volume(compose: Compose) -> None:
    compose["services"]["redis"].pop("volumes")


MISTAKES: dict[str, tuple[Callable[[Compose], None], str]] = {
    "renamed command": (_service_change("worker", command=["wroker"]), "no command 'wroker'"),
    "unknown option": (
        _service_change("api", command=["api", "--prot", "8080"]),
        "unrecognized arguments: --prot",
    ),
    "misspelt setting": (_misspelt_setting, "QI_KAFKA_BOOTSTRAP_SERVER is not a setting"),
    "worker without restart": (_service_change("worker", restart=None), "restart policy None"),
    "worker not waiting for topics": (
        _service_change("worker", depends_on=["kafka", "redis", "topics"]),
        "does not wait for topics to complete successfully",
    ),
    "no healthcheck": (_service_change("api", healthcheck=None), "api: no healthcheck"),
    "redis without volume": (_no_redis_volume, "/data is not on a named volume"),
    "value the settings refuse": (_bad_port, "invalid setting MetricsSettings.port"),
    "healthcheck on another port": (_metrics_elsewhere, "does not ask :9200/metrics"),
    "restarting one-shot": (
        _service_change("topics", restart="on-failure"),
        "must not restart",
    ),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_deliberate_mistake_is_found(mistake: str, tmp_path: Path) -> None:
    change, expected = MISTAKES[mistake]
    copy = tmp_path / "docker-compose.yml"
    shutil.copyfile(COMPOSE, copy)
    compose = _load(copy)
    change(compose)
    copy.write_text(yaml.safe_dump(compose, sort_keys=False))
    problems = compose_problems(copy)
    assert any(expected in problem for problem in problems), problems

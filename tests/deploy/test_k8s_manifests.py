"""deploy/k8s/ names only what the project really has, and deploys it hardened (no cluster needed).

:func:`manifest_problems` reads every manifest the kustomization lists and checks them against
the code (see :mod:`tests.deploy.checks`): the image, every command line, every ``QI_*`` name
and value (the settings each container would read from its ConfigMap and literal values), that
no secret setting has a literal value, the probes (on what each process serves, on an address
the kubelet reaches), the security context, resources, the autoscaler's consumer group, brokers,
topics and replica ceiling, and that the kustomization lists every file. The tests below run it
on the real directory, then on copies with one deliberate mistake each, to prove that each check
can fail.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from processors import cli
from processors.api import create_api
from processors.settings import Settings
from processors.topics import TopicMap
from tests.deploy.checks import (
    command_problems,
    entrypoint,
    env_names,
    image_name,
    image_problems,
    load_documents,
    project_version,
    secret_setting_names,
    setting_problems,
    settings_from,
    settings_problems,
)
from tests.support.infrastructure import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"
_WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}

Document = dict[str, Any]


@cache
def _api_paths() -> frozenset[str]:
    app = create_api(Settings())
    return frozenset(str(getattr(route, "path", "")) for route in app.routes)


def _pod_spec(document: Document) -> dict[str, Any]:
    spec: dict[str, Any] = document["spec"]["template"]["spec"]
    return spec


def _containers(document: Document) -> Iterator[dict[str, Any]]:
    spec = _pod_spec(document)
    yield from spec.get("initContainers") or []
    yield from spec.get("containers") or []


def _argv(container: Mapping[str, Any]) -> list[str]:
    """What the container runs: ``command`` replaces the image's ENTRYPOINT, ``args`` its CMD."""
    command = container.get("command") or entrypoint()
    return [str(word) for word in [*command, *(container.get("args") or [])]]


def _environment(
    container: Mapping[str, Any], configmaps: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """The literal settings a container gets (ConfigMaps it loads, then its own ``value``s)."""
    values: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef")
        if ref is not None:
            values.update(configmaps.get(ref["name"], {}))
    for item in container.get("env") or []:
        if "value" in item:
            values[item["name"]] = str(item["value"])
    return values


def _security_problems(where: str, document: Document) -> list[str]:
    problems = []
    pod = _pod_spec(document)
    pod_context = pod.get("securityContext") or {}
    tmp_volumes = {volume["name"] for volume in pod.get("volumes") or [] if "emptyDir" in volume}
    for container in _containers(document):
        here = f"{where} container {container.get('name')}"
        context = container.get("securityContext") or {}
        non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        user = context.get("runAsUser", pod_context.get("runAsUser"))
        if non_root is not True or user == 0:
            problems.append(f"{here}: runAsNonRoot must be true (and runAsUser not 0)")
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{here}: readOnlyRootFilesystem must be true")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{here}: allowPrivilegeEscalation must be false")
        if context.get("privileged"):
            problems.append(f"{here}: must not be privileged")
        if "ALL" not in ((context.get("capabilities") or {}).get("drop") or []):
            problems.append(f"{here}: capabilities must drop ALL")
        mounts = {
            mount["mountPath"]: mount["name"] for mount in container.get("volumeMounts") or []
        }
        if mounts.get("/tmp") not in tmp_volumes:
            problems.append(f"{here}: /tmp must be an emptyDir (the root filesystem is read-only)")
        resources = container.get("resources") or {}
        for kind in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(resources.get(kind) or {}):
                problems.append(f"{here}: resources.{kind} must set cpu and memory")
    return problems


def _env_problems(
    where: str, container: Mapping[str, Any], configmaps: Mapping[str, Mapping[str, str]]
) -> list[str]:
    here = f"{where} container {container.get('name')}"
    problems = setting_problems(env_names(container.get("env")), where=here)
    for item in container.get("env") or []:
        if "value" in item and item["name"] in secret_setting_names():
            problems.append(f"{here}: {item['name']} is a secret: take it from a Secret")
        ref = (item.get("valueFrom") or {}).get("secretKeyRef")
        if ref is not None:
            problems += setting_problems([ref["key"]], where=f"{here} secretKeyRef")
        ref = (item.get("valueFrom") or {}).get("configMapKeyRef")
        if ref is not None and ref["key"] not in configmaps.get(ref["name"], {}):
            problems.append(f"{here}: ConfigMap {ref['name']} has no key {ref['key']}")
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef")
        if ref is not None and ref["name"] not in configmaps:
            problems.append(f"{here}: no ConfigMap {ref['name']} among the manifests")
    return problems


def _probe_port(container: Mapping[str, Any], port: object) -> int | None:
    if isinstance(port, int):
        return port
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    return None


def _probe_problems(where: str, container: Mapping[str, Any], settings: Settings) -> list[str]:
    """Both probes exist and reach what the process serves, on an address the kubelet reaches."""
    here = f"{where} container {container.get('name')}"
    argv = _argv(container)
    args = cli._parser().parse_args(argv[1:])
    if args.command == "worker":
        served_port, host = settings.metrics.port, settings.metrics.host
        paths: frozenset[str] | None = frozenset({"/metrics"})
    elif args.command == "api":
        served_port, host, paths = int(args.port), str(args.host), _api_paths()
    else:
        return [f"{here}: a Deployment runs {args.command!r}, which serves nothing to probe"]
    problems = []
    if host in _LOOPBACK:
        problems.append(f"{here}: listens on {host}: the kubelet's probes cannot reach it")
    for kind in ("readinessProbe", "livenessProbe"):
        probe = container.get(kind)
        if not probe:
            problems.append(f"{here}: no {kind}")
            continue
        http = probe.get("httpGet")
        if http is None:
            problems.append(f"{here}: {kind} must be an httpGet on what the process serves")
            continue
        if _probe_port(container, http.get("port")) != served_port:
            problems.append(f"{here}: {kind} port {http.get('port')} is not {served_port}")
        if paths is not None and http.get("path") not in paths:
            problems.append(f"{here}: {kind} path {http.get('path')} is not served")
    return problems


def _scaler_problems(where: str, document: Document, workers: Mapping[str, Settings]) -> list[str]:
    spec = document["spec"]
    target = spec["scaleTargetRef"]["name"]
    if target not in workers:
        return [f"{where}: scales {target!r}, which is not a worker Deployment"]
    settings = workers[target]
    partitions = settings.topics.partitions
    group = settings.worker.app_id  # the Faust app id is the consumer group id
    servers = settings.kafka.bootstrap_servers
    topics = {topic.name for topic in TopicMap(settings.topics.prefix).all_specs()}
    problems = []
    if int(spec.get("maxReplicaCount", 100)) > partitions:  # KEDA's default: 100
        problems.append(f"{where}: maxReplicaCount is more than the {partitions} partitions")
    triggers = spec.get("triggers") or []
    if not triggers:
        problems.append(f"{where}: no triggers")
    for trigger in triggers:
        meta = trigger.get("metadata") or {}
        if trigger.get("type") != "kafka":
            problems.append(f"{where}: trigger {trigger.get('type')!r} is not on consumer lag")
            continue
        if meta.get("consumerGroup") != group:
            problems.append(
                f"{where}: consumerGroup {meta.get('consumerGroup')!r} is not {group!r}"
            )
        if meta.get("bootstrapServers") != servers:
            problems.append(f"{where}: bootstrapServers is not {servers!r}")
        if meta.get("topic") not in topics:
            problems.append(f"{where}: topic {meta.get('topic')!r} is not a topic of the app")
        if meta.get("offsetResetPolicy") != "earliest":
            problems.append(f"{where}: offsetResetPolicy must be earliest, as the worker's")
    return problems


def _selector_problems(
    documents: list[tuple[str, Document]], workers: Mapping[str, Settings]
) -> list[str]:
    """Services and disruption budgets select pods of a Deployment; one budget, the workers'."""
    pods = {
        doc["metadata"]["name"]: (dict(doc["spec"]["template"]["metadata"]["labels"]), doc)
        for _, doc in documents
        if doc["kind"] == "Deployment"
    }
    problems = []
    budgeted: set[str] = set()
    for where, doc in documents:
        if doc["kind"] == "Service":
            selector = doc["spec"].get("selector") or {}
        elif doc["kind"] == "PodDisruptionBudget":
            selector = (doc["spec"].get("selector") or {}).get("matchLabels") or {}
        else:
            continue
        selected = [
            name for name, (labels, _) in pods.items() if selector.items() <= labels.items()
        ]
        if not selector or not selected:
            problems.append(f"{where}: selects no Deployment's pods")
        if doc["kind"] == "PodDisruptionBudget":
            budgeted.update(selected)
        for port in doc["spec"].get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            for name in selected:
                container = next(iter(_containers(pods[name][1])))
                if _probe_port(container, target) is None and not isinstance(target, int):
                    problems.append(f"{where}: no container port named {target!r} in {name}")
    problems += [f"no PodDisruptionBudget for {name}" for name in workers if name not in budgeted]
    return problems


def _secret_keys(documents: list[tuple[str, Document]]) -> set[str]:
    """The keys of the operator's Secret that the workloads read."""
    return {
        str(item["valueFrom"]["secretKeyRef"]["key"])
        for _, doc in documents
        if doc["kind"] in _WORKLOADS
        for container in _containers(doc)
        for item in container.get("env") or []
        if "secretKeyRef" in (item.get("valueFrom") or {})
    }


def manifest_problems(directory: Path) -> list[str]:
    """Every problem of the manifests in ``directory`` (empty: all fine)."""
    kustomization = load_documents(directory / "kustomization.yaml")[0]
    listed = [str(name) for name in kustomization.get("resources") or []]
    present = sorted(
        path.name for path in directory.glob("*.y*ml") if path.name != "kustomization.yaml"
    )
    problems = [
        f"kustomization.yaml does not list {name}" for name in present if name not in listed
    ]
    problems += [
        f"kustomization.yaml lists {name}, which is missing"
        for name in listed
        if name not in present
    ]
    for image in kustomization.get("images") or []:
        if (
            image.get("name") != image_name()
            or image.get("newTag", project_version()) != project_version()
        ):
            problems.append(f"kustomization.yaml: images entry {image} is not the project's")

    documents = [
        (f"{name} {doc['kind']} {doc['metadata']['name']}", doc)
        for name in listed
        if name in present
        for doc in load_documents(directory / name)
    ]
    configmaps: dict[str, dict[str, str]] = {}
    for where, doc in documents:
        if doc["kind"] == "ConfigMap":
            data = {str(key): str(value) for key, value in (doc.get("data") or {}).items()}
            configmaps[doc["metadata"]["name"]] = data
            problems += setting_problems(data, where=where)
            problems += [
                f"{where}: {key} is not a QI_ setting" for key in data if not key.startswith("QI_")
            ]
            problems += [
                f"{where}: {key} is a secret: put it in the Secret"
                for key in data
                if key in secret_setting_names()
            ]
    if not configmaps:
        problems.append("no ConfigMap with the settings")

    workers: dict[str, Settings] = {}
    kinds: set[str] = set()
    for where, doc in documents:
        if doc["kind"] not in _WORKLOADS:
            continue
        problems += _security_problems(where, doc)
        for container in _containers(doc):
            here = f"{where} container {container.get('name')}"
            problems += image_problems(str(container.get("image")), where=here)
            argv_problems = command_problems(_argv(container), where=here)
            problems += argv_problems + _env_problems(where, container, configmaps)
            environment = _environment(container, configmaps)
            value_problems = settings_problems(environment, where=here)
            problems += value_problems
            if doc["kind"] != "Deployment" or argv_problems or value_problems:
                continue
            settings = settings_from(environment)
            problems += _probe_problems(where, container, settings)
            command = _argv(container)[1]
            kinds.add(command)
            if command == "worker":
                workers[doc["metadata"]["name"]] = settings
    problems += [f"no {kind} Deployment" for kind in ("worker", "api") if kind not in kinds]
    readme = directory / "README.md"
    instructions = readme.read_text() if readme.is_file() else ""
    problems += [
        f"README.md does not tell the operator about the Secret key {key}"
        for key in sorted(_secret_keys(documents))
        if key not in instructions
    ]
    for where, doc in documents:
        if doc["kind"] == "ScaledObject":
            problems += _scaler_problems(where, doc, workers)
    problems += _selector_problems(documents, workers)
    for kind in ("PodDisruptionBudget", "ScaledObject", "Service", "Job"):
        if not any(doc["kind"] == kind for _, doc in documents):
            problems.append(f"no {kind}")
    return problems


def test_the_manifests_name_only_what_the_project_has() -> None:
    assert manifest_problems(K8S) == []


def _edit(directory: Path, name: str, change: Callable[[list[Document]], None]) -> None:
    path = directory / name
    documents = load_documents(path)
    change(documents)
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))


def _container(documents: list[Document]) -> dict[str, Any]:
    return next(iter(_containers(documents[0])))


def _set_args(*args: str) -> Callable[[list[Document]], None]:
    def change(documents: list[Document]) -> None:
        _container(documents)["args"] = list(args)

    return change


def _rename_config_key(old: str, new: str) -> Callable[[list[Document]], None]:
    def change(documents: list[Document]) -> None:
        data = documents[0]["data"]
        data[new] = data.pop(old)

    return change


def _container_change(**fields: Any) -> Callable[[list[Document]], None]:
    def change(documents: list[Document]) -> None:
        container = _container(documents)
        for key, value in fields.items():
            if value is None:
                container.pop(key, None)
            else:
                container[key] = value

    return change


def _from_secret(name: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": "secrets", "key": name}}}


def _select_nothing(documents: list[Document]) -> None:
    documents[0]["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] = "wrker"


def _target_port(name: str) -> Callable[[list[Document]], None]:
    def change(documents: list[Document]) -> None:
        documents[0]["spec"]["ports"][0]["targetPort"] = name

    return change


def _writable_root(documents: list[Document]) -> None:
    _container(documents)["securityContext"]["readOnlyRootFilesystem"] = False


def _unlist(name: str) -> Callable[[list[Document]], None]:
    def change(documents: list[Document]) -> None:
        documents[0]["resources"].remove(name)

    return change


def _scale_group(documents: list[Document]) -> None:
    documents[0]["spec"]["triggers"][0]["metadata"]["consumerGroup"] = "another-group"


def _metrics_on_loopback(documents: list[Document]) -> None:
    documents[0]["data"]["QI_METRICS_HOST"] = "127.0.0.1"


def _partitions_in_words(documents: list[Document]) -> None:
    documents[0]["data"]["QI_TOPIC_PARTITIONS"] = "eight"


def _fewer_partitions(documents: list[Document]) -> None:
    documents[0]["data"]["QI_TOPIC_PARTITIONS"] = "4"


def _secret_in_config(documents: list[Document]) -> None:
    documents[0]["data"]["QI_SECRETS_KEYS"] = "k1:AAAA"


MISTAKES: dict[str, tuple[str, Callable[[list[Document]], None], str]] = {
    "renamed command": ("worker-deployment.yaml", _set_args("workers"), "has no command 'workers'"),
    "missing sub-command": ("topics-job.yaml", _set_args("topics"), "needs a sub-command"),
    "unknown option": (
        "api-deployment.yaml",
        _set_args("api", "--hots", "0.0.0.0"),
        "unrecognized arguments: --hots",
    ),
    "misspelt ConfigMap key": (
        "configmap.yaml",
        _rename_config_key("QI_WORKER_APP_ID", "QI_WORKER_APPID"),
        "QI_WORKER_APPID is not a setting",
    ),
    "misspelt env name": (
        "api-deployment.yaml",
        _container_change(env=[{"name": "QI_REDIS_ULR", "value": "redis://r:6379/0"}]),
        "QI_REDIS_ULR is not a setting",
    ),
    "secret in the ConfigMap": ("configmap.yaml", _secret_in_config, "QI_SECRETS_KEYS is a secret"),
    "value the settings refuse": (
        "configmap.yaml",
        _partitions_in_words,
        "invalid setting TopicSettings.partitions",
    ),
    "more workers than partitions": (
        "configmap.yaml",
        _fewer_partitions,
        "maxReplicaCount is more than the 4 partitions",
    ),
    "undocumented Secret key": (
        "api-deployment.yaml",
        _container_change(env=[_from_secret("QI_KAFKA_SSL_KEY_PASSWORD")]),
        "about the Secret key QI_KAFKA_SSL_KEY_PASSWORD",
    ),
    "foreign image": (
        "worker-deployment.yaml",
        _container_change(image="python:3.11-slim"),
        "image 'python:3.11-slim' is not",
    ),
    "stale tag": (
        "api-deployment.yaml",
        _container_change(image="registry.example.com/queast-integrations:0.0.9"),
        "is not 'queast-integrations:",
    ),
    "no readiness probe": (
        "api-deployment.yaml",
        _container_change(readinessProbe=None),
        "no readinessProbe",
    ),
    "probe on a route the API lacks": (
        "api-deployment.yaml",
        _container_change(readinessProbe={"httpGet": {"path": "/health", "port": "http"}}),
        "readinessProbe path /health is not served",
    ),
    "worker metrics on loopback": ("configmap.yaml", _metrics_on_loopback, "listens on 127.0.0.1"),
    "writable root filesystem": (
        "worker-deployment.yaml",
        _writable_root,
        "readOnlyRootFilesystem must be true",
    ),
    "budget selecting nothing": ("worker-pdb.yaml", _select_nothing, "selects no Deployment's"),
    "service on an undeclared port": (
        "worker-metrics-service.yaml",
        _target_port("prometheus"),
        "no container port named 'prometheus'",
    ),
    "file not listed": (
        "kustomization.yaml",
        _unlist("api-pdb.yaml"),
        "does not list api-pdb.yaml",
    ),
    "scaler on another group": (
        "worker-scaledobject.yaml",
        _scale_group,
        "consumerGroup 'another-group' is not",
    ),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_deliberate_mistake_is_found(mistake: str, tmp_path: Path) -> None:
    name, change, expected = MISTAKES[mistake]
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    _edit(copy, name, change)
    problems = manifest_problems(copy)
    assert any(expected in problem for problem in problems), problems


def test_a_command_renamed_in_the_cli_fails_the_manifests(monkeypatch: pytest.MonkeyPatch) -> None:
    real = cli._parser

    def renamed() -> argparse.ArgumentParser:
        parser = real()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                action.choices["topic"] = action.choices.pop("topics")
        return parser

    monkeypatch.setattr(cli, "_parser", renamed)
    problems = manifest_problems(K8S)
    assert any("has no command 'topics'" in problem for problem in problems), problems

"""What a deployment file may name, taken from the code: the shared checks of the manifest tests.

Each check returns a list of problems (empty: fine), each naming the file and the place, so a
failing test says what to fix. The truth comes from the project itself, never from a copy:

- settings: :func:`setting_names`, every ``QI_*`` variable :class:`processors.settings.Settings`
  reads (each component's ``env_prefix`` and field names, and the partners' base URLs), and
  :func:`settings_from`, the settings a process would read from exactly the environment a file
  gives it (so a value the settings refuse fails too);
- commands: :func:`command_problems`, an argument list parsed by ``processors.cli``'s own parser,
  so a renamed or removed sub-command or option fails;
- the image: :func:`image_reference`, the name the Dockerfile labels its image with and the
  version of ``pyproject.toml``; :func:`entrypoint`, the Dockerfile's ``ENTRYPOINT``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, get_args
from unittest import mock

import yaml
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings

from connectors.registry import registered
from processors import cli
from processors.secrets import KeyRingError
from processors.settings import PartnerSettings, Settings
from tests.support.infrastructure import REPO_ROOT

SETTING_PREFIX = "QI_"


@cache
def setting_names() -> frozenset[str]:
    """Every environment variable the settings read (upper case)."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        component = field.annotation
        if isinstance(component, type) and issubclass(component, BaseSettings):
            prefix = str(component.model_config.get("env_prefix", ""))
            for name, inner in component.model_fields.items():
                alias = inner.validation_alias
                names.add((alias if isinstance(alias, str) else prefix + name).upper())
        elif component is PartnerSettings:
            names.update(
                spec.base_url_setting
                for spec in registered().values()
                if spec.base_url_setting is not None
            )
        else:  # a new kind of component: teach this function how it reads the environment
            msg = f"Settings field of unknown kind: {component!r}"
            raise TypeError(msg)
    return frozenset(names)


def _is_secret(annotation: object) -> bool:
    return annotation is SecretStr or any(_is_secret(arg) for arg in get_args(annotation))


@cache
def secret_setting_names() -> frozenset[str]:
    """The settings typed as secrets: never a literal value in a deployment file."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        component = field.annotation
        if isinstance(component, type) and issubclass(component, BaseSettings):
            prefix = str(component.model_config.get("env_prefix", ""))
            for name, inner in component.model_fields.items():
                if _is_secret(inner.annotation):
                    names.add((prefix + name).upper())
    return frozenset(names)


def setting_problems(names: Iterable[str], *, where: str) -> list[str]:
    """Names starting with ``QI_`` that no setting reads (a typo is silently ignored)."""
    valid = setting_names()
    return [
        f"{where}: {name} is not a setting (processors/settings.py)"
        for name in names
        if name.upper().startswith(SETTING_PREFIX) and name.upper() not in valid
    ]


def settings_from(environment: Mapping[str, str]) -> Settings:
    """The settings a process with exactly ``environment`` reads (``ValidationError`` if bad)."""
    with mock.patch.dict(os.environ, dict(environment), clear=True):
        return Settings()


def settings_problems(environment: Mapping[str, str], *, where: str) -> list[str]:
    """The values of ``environment`` that the settings refuse."""
    try:
        settings_from(environment)
    except ValidationError as exc:
        return [
            f"{where}: invalid setting {exc.title}.{'.'.join(map(str, error['loc']))}: "
            f"{error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        ]
    except KeyRingError as exc:
        return [f"{where}: invalid QI_SECRETS_KEYS: {exc}"]
    return []


def _sub_commands(parser: argparse.ArgumentParser) -> Mapping[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def command_problems(argv: Sequence[str], *, where: str) -> list[str]:
    """``argv`` (the program first) is not a ``queast-integrations`` command line."""
    if not argv or argv[0] != "queast-integrations":
        return [f"{where}: runs {list(argv)!r}, not queast-integrations"]
    parser = cli._parser()
    words = [word for word in argv[1:] if not word.startswith("-")]
    path = ["queast-integrations"]
    for word in words:
        commands = _sub_commands(parser)
        if not commands:
            break
        if word not in commands:
            known = ", ".join(sorted(commands))
            return [f"{where}: {' '.join(path)} has no command {word!r} (known: {known})"]
        path.append(word)
        parser = commands[word]
    if _sub_commands(parser):
        return [f"{where}: {' '.join(path)} needs a sub-command"]
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            cli._parser().parse_args(list(argv[1:]))
    except SystemExit:
        message = errors.getvalue().strip().splitlines()
        return [f"{where}: {' '.join(argv)}: {message[-1] if message else 'refused'}"]
    return []


def _dockerfile() -> str:
    return (REPO_ROOT / "Dockerfile").read_text()


def entrypoint() -> list[str]:
    """The Dockerfile's ``ENTRYPOINT`` (exec form)."""
    found = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", _dockerfile(), re.MULTILINE)
    assert found, "the Dockerfile has an exec-form ENTRYPOINT"
    value = json.loads(found.group(1))
    assert isinstance(value, list)
    return [str(word) for word in value]


def image_name() -> str:
    """The name the Dockerfile gives its image (``org.opencontainers.image.title``)."""
    found = re.search(
        r'^LABEL\s+org\.opencontainers\.image\.title="([^"]+)"', _dockerfile(), re.MULTILINE
    )
    assert found, "the Dockerfile labels its image with org.opencontainers.image.title"
    return found.group(1)


def project_version() -> str:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return str(project["version"])


def image_reference() -> str:
    """``name:version``: the image as built (``docker build -t queast-integrations:<version>``)."""
    return f"{image_name()}:{project_version()}"


def image_problems(image: str, *, where: str) -> list[str]:
    """``image`` is not the project's image (a registry in front of its name is fine)."""
    repository, _, tag = image.rpartition(":")
    if "/" in tag or not repository:  # no tag, and the colon was a registry's port
        repository, tag = image, ""
    if repository.rsplit("/", 1)[-1] != image_name() or tag != project_version():
        return [f"{where}: image {image!r} is not {image_reference()!r}"]
    return []


def env_names(env: Any) -> list[str]:
    """The variable names of a Kubernetes ``env`` list or a Compose ``environment``."""
    if env is None:
        return []
    if isinstance(env, Mapping):
        return [str(name) for name in env]
    names = []
    for item in env:
        if isinstance(item, Mapping):
            names.append(str(item["name"]))
        else:
            names.append(str(item).split("=", 1)[0])
    return names


def load_documents(path: Path) -> list[dict[str, Any]]:
    """Every YAML document of ``path`` (empty ones dropped)."""
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert all(isinstance(doc, dict) for doc in documents), f"{path.name}: mappings only"
    return documents

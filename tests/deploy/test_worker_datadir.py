"""Starting the worker's Faust app writes nothing to the working directory.

Faust creates its data directory (``<app_id>-data/v1/tables``) when the app first starts, even
with the in-memory store the worker uses; relative to the working directory unless told. A pod
with a read-only root filesystem cannot start like that, and every test run used to leave one
such directory in the checkout.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from processors.app import create_app
from processors.settings import KafkaSettings, Settings, WorkerSettings

_KAFKA = KafkaSettings(bootstrap_servers="127.0.0.1:1")


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return workdir


def test_the_data_directory_is_the_configured_one(cwd: Path, tmp_path: Path) -> None:
    datadir = tmp_path / "faust"
    worker = WorkerSettings(app_id="dd-configured", datadir=str(datadir))
    app = create_app(Settings(kafka=_KAFKA, worker=worker))
    asyncio.run(app.on_first_start())  # what Faust's worker runs first: creates the directories
    assert list(cwd.iterdir()) == []
    assert (datadir / "v1" / "tables").is_dir()


def test_by_default_the_data_directory_is_under_the_temporary_directory(
    cwd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    app = create_app(Settings(kafka=_KAFKA, worker=WorkerSettings(app_id="dd-default")))
    asyncio.run(app.on_first_start())
    assert list(cwd.iterdir()) == []
    assert (temporary / "dd-default-data" / "v1" / "tables").is_dir()


def test_a_data_directory_faust_would_expand_is_refused() -> None:
    with pytest.raises(ValueError, match="datadir"):
        WorkerSettings(datadir="/tmp/{conf.name}")

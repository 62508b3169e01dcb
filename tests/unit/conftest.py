"""Fixtures shared by the unit tests: the in-memory fakes of the upload store and the object store,
and the CLI's world (a clean environment, a fake intake behind the real client), fresh for each
test (a module that needs them arranged otherwise defines its own)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from genobase import commands, config
from genobase.client import Client
from tests.unit.fakes import FakeObjects, FakeUploads
from tests.unit.fakes_intake_http import ENDPOINT, GOOD_KEY, FakeIntake


@pytest.fixture
def uploads() -> FakeUploads:
    return FakeUploads()


@pytest.fixture
def objects() -> FakeObjects:
    return FakeObjects()


@pytest.fixture
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No profile, no stack file, no GENOBASE_* of the caller; the current directory a fresh one."""
    for name in list(os.environ):
        if name.startswith("GENOBASE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("GENOBASE_STACK_FILE", str(tmp_path / "no-stack" / "stack.env"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def intake(clean_environment: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeIntake:
    """The CLI's commands talk to a fake intake through the real client (no retries, no sleeps)."""
    fake = FakeIntake()

    def open_client(connection: config.Connection) -> Client:
        return Client(
            connection.endpoint,
            connection.api_key,
            transport=fake.transport(),
            state_dir=tmp_path / "transfers",
            retries=0,
            sleep=lambda seconds: None,
        )

    monkeypatch.setattr(commands, "open_client", open_client)
    monkeypatch.setenv("GENOBASE_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("GENOBASE_API_KEY", GOOD_KEY)
    return fake

"""Fixtures shared by the unit tests: the in-memory fakes of the upload store and the object store,
fresh for each test (a module that needs them arranged otherwise defines its own)."""

from __future__ import annotations

import pytest

from tests.unit.fakes import FakeObjects, FakeUploads


@pytest.fixture
def uploads() -> FakeUploads:
    return FakeUploads()


@pytest.fixture
def objects() -> FakeObjects:
    return FakeObjects()

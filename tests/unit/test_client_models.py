"""The client's models against the intake's OpenAPI document: the same fields, the same ones
required, so that a field added, renamed or made optional on either side fails here first.

The document is the real app's (``build_app`` over the fakes, as the route tests build it); the
client imports nothing of the intake, so this test is what ties the two together.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from genobase.client import models
from shared.domain.record_schema import RECORD_KEYS
from tests.unit.test_problems import intake_app

# The intake's schema name -> the client's model of it.
MIRRORS: dict[str, type[BaseModel]] = {
    "UploadStatus": models.Upload,
    "UploadSummary": models.UploadSummary,
    "UploadList": models.UploadPage,
    "UploadResult": models.UploadResult,
    "Progress": models.Progress,
    "UploadError": models.UploadError,
    "StageTimes": models.StageTimes,
    "Stall": models.Stall,
    "Deletion": models.Deletion,
    "Source": models.Source,
    "ValidationReport": models.ValidationReport,
    "Problem": models.Problem,
    "FieldError": models.FieldError,
    "UploadTicket": models.UploadTicket,
    "MultipartTicket": models.MultipartTicket,
}


@pytest.fixture(scope="module")
def schemas() -> dict[str, Any]:
    document = TestClient(intake_app()).get("/openapi.json").json()
    found: dict[str, Any] = document["components"]["schemas"]
    return found


@pytest.mark.parametrize("name", sorted(MIRRORS))
def test_each_model_has_the_schema_s_fields_and_requires_the_same(name: str, schemas: dict[str, Any]) -> None:
    schema, model = schemas[name], MIRRORS[name]
    assert set(model.model_fields) == set(schema["properties"]), name
    required = {field for field, info in model.model_fields.items() if info.is_required()}
    assert required == set(schema.get("required", [])), name


def test_every_schema_the_client_reads_is_mirrored(schemas: dict[str, Any]) -> None:
    """A new answer schema nested in a mirrored one would otherwise go unchecked."""
    nested = set()
    for name in MIRRORS:
        for prop in schemas[name]["properties"].values():
            for ref in _refs(prop):
                nested.add(ref)
    enumerations = {name for name, schema in schemas.items() if "enum" in schema}
    assert nested - enumerations <= set(MIRRORS)


def test_a_record_has_every_key_the_records_api_shows() -> None:
    assert set(models.Record.model_fields) == set(RECORD_KEYS)
    assert not any(info.is_required() for info in models.Record.model_fields.values())  # fields= picks


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"].rsplit("/", 1)[-1]] if "$ref" in node else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_the_client_imports_no_service_and_no_adapter() -> None:
    """It talks to the intake over HTTP only: a service's or an adapter's module would tie it to
    the server's code (and its dependencies) instead of to the interface."""
    allowed = {"shared.runtime.failpoints"}
    package = Path(models.__file__).parent
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in ("services", "shared", "tests"):
                    assert name in allowed, f"{source.name} imports {name}"

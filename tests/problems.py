"""Checks of the services' error answers: RFC 9457 problem details (shared/web/problems.py)."""

from __future__ import annotations

from typing import Any

import httpx

from shared.web.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_BASE

_PROBLEM = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def problem(response: httpx.Response) -> dict[str, Any]:
    """The answer's problem, its shape checked (media type, ``status`` equal to the answer's,
    ``type`` and ``title`` from ``code``, an ``error_id``); returned without the members that
    follow from the code or change each time: ``code``, ``detail`` and any extension members."""
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE, (response.status_code, response.text)
    body: dict[str, Any] = response.json()
    assert body.pop("status") == response.status_code, body
    assert body.pop("type") == PROBLEM_TYPE_BASE + body["code"], body
    assert body.pop("title") == body["code"].replace("_", " ").capitalize(), body
    error_id = body.pop("error_id")
    assert isinstance(error_id, str) and len(error_id) == 16, error_id
    assert isinstance(body["detail"], str) and body["detail"], body
    return body


def check_openapi(document: dict[str, Any]) -> list[str]:
    """Every operation of an OpenAPI document has a unique operationId and tags, and declares each
    4xx and 5xx answer (500 always; 401 and 429 where a key is required, with their headers; 422
    where it takes parameters or a body) as a problem. Returns the operation ids."""
    schemas = document["components"]["schemas"]
    assert {"type", "title", "status", "detail", "code", "error_id"} <= set(schemas["Problem"]["properties"])
    assert "HTTPValidationError" not in schemas  # FastAPI's own 422 shape is gone
    ids: list[str] = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            ids.append(operation["operationId"])
            assert operation["operationId"].isidentifier() and operation.get("tags"), where
            responses = operation["responses"]
            assert "500" in responses, where
            if operation.get("security"):
                assert "WWW-Authenticate" in responses["401"]["headers"], where
                assert "Retry-After" in responses["429"]["headers"], where
            if operation.get("parameters") or "requestBody" in operation:
                assert "422" in responses, where
            for code, answer in responses.items():
                if code[0] in "45":
                    assert answer["content"] == _PROBLEM and answer["description"], (where, code)
    assert len(ids) == len(set(ids)), ids
    return ids

"""Checks of the services' error answers: RFC 9457 problem details (shared/web/problems.py)."""

from __future__ import annotations

from typing import Any

import httpx

from shared.web.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_BASE


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

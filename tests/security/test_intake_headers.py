"""The intake's answers against the running stack: nothing loaded from elsewhere, a
Content-Security-Policy on its pages, a request id on every answer and every log line of the
request, and no query value that reaches Postgres unchecked (a 422, never a 500)."""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest

from shared.runtime.polling import poll_until
from tests.conftest import Pipeline

pytestmark = pytest.mark.e2e


def anonymous(pipeline: Pipeline) -> httpx.Client:
    return httpx.Client(base_url=pipeline.settings.status_base_url, timeout=30)


def test_no_page_loads_anything_from_elsewhere(pipeline: Pipeline) -> None:
    """FastAPI's Swagger UI and ReDoc load their scripts from a CDN: they are not served."""
    client = anonymous(pipeline)
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert client.get(path).status_code == 404, path
    assert client.get("/openapi.json").status_code == 200  # the API's description stays
    page = client.get("/")
    assert page.status_code == 200
    sources = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", page.text)
    assert sources and all(s.startswith("/static/") for s in sources), sources
    assert "<style" not in page.text and "<script>" not in page.text  # nothing inline
    for source in sources:
        assert client.get(source).status_code == 200, source


@pytest.mark.parametrize("path", ["/", "/static/upload.js", "/static/page.css", "/openapi.json", "/healthz"])
def test_every_page_has_a_content_security_policy(pipeline: Pipeline, path: str) -> None:
    answer = anonymous(pipeline).get(path)
    directives = (part.strip().partition(" ") for part in answer.headers["content-security-policy"].split(";"))
    policy = {name: value for name, _, value in directives}
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and policy["base-uri"] == "'none'"
    # the page talks to the intake and to the store its presigned URLs point at, nothing else
    store = pipeline.settings.presign_endpoint.rstrip("/")
    assert policy["connect-src"].split() == ["'self'", store]
    assert "unsafe" not in answer.headers["content-security-policy"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"


def test_every_answer_carries_a_request_id(pipeline: Pipeline) -> None:
    client = anonymous(pipeline)
    answers = [
        client.get("/healthz"),  # 200
        client.get(f"/uploads/{uuid.uuid4()}"),  # 401
        pipeline.http.get(f"/uploads/{uuid.uuid4()}"),  # 404
        pipeline.http.post("/uploads", json={"filename": "x.fa"}),  # 422
        pipeline.http.post("/uploads", content=b"x" * (65 * 1024)),  # 413 before any route
        client.get("/static/no-such-file"),  # 404 of the static files
    ]
    ids = [a.headers.get("x-request-id") for a in answers]
    assert all(i and re.fullmatch(r"[0-9a-f]{32}", i) for i in ids), ids
    assert len(set(ids)) == len(ids)


def test_a_well_formed_request_id_is_kept_and_any_other_replaced(pipeline: Pipeline) -> None:
    client = anonymous(pipeline)
    mine = f"client-{uuid.uuid4().hex}"
    assert client.get("/healthz", headers={"X-Request-ID": mine}).headers["x-request-id"] == mine
    for bad in ("short", "x" * 300, "has space in it", 'quote"d-and-more', "newline%0d%0aSet-Cookie:x"):
        got = client.get("/healthz", headers={"X-Request-ID": bad}).headers["x-request-id"]
        assert got != bad and re.fullmatch(r"[0-9a-f]{32}", got), (bad, got)


def test_every_log_line_of_a_request_names_it(pipeline: Pipeline) -> None:
    """Every line the intake logs while it answers a request names the request's id."""
    mine = f"trace-{uuid.uuid4().hex}"
    log = pipeline.processes.log_file("intake")
    since = log.stat().st_size
    answer = pipeline.http.get(f"/uploads/{uuid.uuid4()}", headers={"X-Request-ID": mine})
    assert answer.status_code == 404 and answer.headers["x-request-id"] == mine
    lines = poll_until(
        lambda: [json.loads(line) for line in log.read_bytes()[since:].splitlines() if mine.encode() in line] or None,
        timeout=10,
        interval=0.2,
        what="an intake log line naming the request",
    )
    assert all(line.get("request_id") == mine for line in lines)


@pytest.mark.parametrize(
    "body",
    [
        {"filename": "x.fa", "size": 10**30},
        {"filename": "x.fa", "size": -1},
        {"filename": "x.fa", "size": 2**63},
        {"filename": "x.fa", "size": 1e308},
        {"filename": "x.fa", "size": "9" * 5000},
    ],
)
def test_a_number_out_of_bounds_in_a_registration_is_422(pipeline: Pipeline, body: dict[str, object]) -> None:
    answer = pipeline.http.post("/uploads", json=body)
    assert answer.status_code == 422, answer.text


@pytest.mark.parametrize(
    "params",
    [
        {"bucket": "uploads", "key": "a\x00b"},  # Postgres text cannot hold NUL
        {"bucket": "uploads", "key": "k" * 5000},
        {"bucket": "uploads", "key": "é" * 600},  # 600 characters, 1,200 bytes: over S3's 1,024
        {"bucket": "b" * 5000, "key": "k"},
        {"bucket": "UP\x00LOADS", "key": "k"},
        {"bucket": "uploads", "key": ""},
    ],
)
def test_an_impossible_object_in_a_look_up_is_422(pipeline: Pipeline, params: dict[str, str]) -> None:
    answer = pipeline.http.get("/uploads/lookup", params=params)
    assert answer.status_code == 422, answer.text


@pytest.mark.parametrize("number", [0, -1, 10_001, 10**30, 2**63])
def test_a_part_number_out_of_bounds_is_422(pipeline: Pipeline, number: int) -> None:
    answer = pipeline.http.post(
        f"/uploads/{uuid.uuid4()}/parts", json={"parts": [{"number": number, "md5": "A" * 22 + "=="}]}
    )
    assert answer.status_code == 422, answer.text

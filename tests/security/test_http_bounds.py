"""No request can slow the HTTP services for others, and none without a key gets anywhere.

Against the stack's own refget (and, for the metric labels HttpMetrics gives both, the intake):
a body is refused before it is read when the caller has no key; a body nesting deeper than the
seqcol schema, or an element larger than a name, is refused before it is compared; slow readers
of long sequences hold no database session; invented methods and paths do not grow /metrics;
every number in a query is bounded (no database error); every answer names its request; every
error of both services is an RFC 9457 problem, as their OpenAPI documents declare.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import statistics
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from genobase import stack
from shared.runtime.polling import poll_until
from tests.conftest import Pipeline, another_process
from tests.helpers import upload_via_intake
from tests.problems import check_openapi, problem

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024


def _headers(pipeline: Pipeline) -> dict[str, str]:
    return {"Authorization": f"Bearer {pipeline.api_key}"}


def _raw_request(url: str, head: bytes, receive_buffer: int | None = None) -> socket.socket:
    """A connection that sent ``head`` (request line and headers) and nothing else."""
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:  # before connecting: the window is agreed then
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect((parts.hostname or "127.0.0.1", parts.port or 80))
    sock.sendall(head)
    return sock


def _answer(sock: socket.socket) -> bytes:
    """The whole answer on ``sock``: its head, then as many body bytes as its Content-Length says."""
    data = b""
    while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )
    while len(body) < length and (chunk := sock.recv(65536)):
        body += chunk
    return head + b"\r\n\r\n" + body


@pytest.fixture(scope="module")
def stored(pipeline: Pipeline) -> dict[str, Any]:
    """A collection, and a 24 MiB sequence: longer than what socket buffers hold."""
    rng = random.Random(5)
    residues = "".join(rng.choice("ACGT") for _ in range(24 * MiB))
    name = f"bounds-{uuid.uuid4().hex[:6]}"
    data = f">{name}\n{residues}\n>short\nACGT\n".encode()
    status = pipeline.wait_for(upload_via_intake(pipeline, f"{name}.fa", data)["id"], timeout=400)
    assert status["state"] == "done", pipeline.logs()
    return {"md5": hashlib.md5(residues.encode()).hexdigest(), "collection": status["collection_digest"]}


def test_a_post_without_a_key_is_refused_before_its_body_is_read(
    refget_url: str,
    stored: dict[str, Any],
) -> None:
    """The request says 16 MiB follow and sends none: the 401 comes at once, not after a body."""
    head = (
        f"POST /comparison/{stored['collection']} HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nContent-Length: {16 * MiB}\r\n\r\n"
    ).encode()
    with _raw_request(refget_url, head) as sock:
        sock.settimeout(5)
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b'"unauthorized"' in answer and b"x-request-id" in answer.lower()


def _nested(size: int) -> bytes:
    depth = (size - 20) // 2
    return b'{"names": ' + b"[" * depth + b"]" * depth + b"}"


def test_a_deeply_nested_body_is_refused_before_it_is_parsed(
    pipeline: Pipeline,
    refget_url: str,
    stored: dict[str, Any],
) -> None:
    url = f"{refget_url}/comparison/{stored['collection']}"
    for body in (_nested(200_000), b'{"name_length_pairs": [{"name": [["x"]], "length": 1}]}'):
        answer = httpx.post(url, content=body, headers={**_headers(pipeline), "Content-Type": "application/json"})
        assert answer.status_code == 400, answer.text
        assert answer.json()["code"] == "too_deep"


def test_each_posted_element_is_bounded_not_only_their_count(
    pipeline: Pipeline,
    refget_url: str,
    stored: dict[str, Any],
) -> None:
    url = f"{refget_url}/comparison/{stored['collection']}"
    for body in ({"names": ["x" * MiB]}, {"name_length_pairs": [{"name": "x" * MiB, "length": 1}]}):
        answer = httpx.post(url, json=body, headers=_headers(pipeline), timeout=30)
        assert answer.status_code == 413, answer.text
        assert answer.json()["code"] == "element_too_large"
    wrong_type = httpx.post(url, json={"lengths": [{"a": 1}]}, headers=_headers(pipeline))
    assert wrong_type.status_code == 400 and wrong_type.json()["code"] == "bad_request"


def test_big_posts_without_a_key_do_not_slow_service_info(
    refget_url: str,
    stored: dict[str, Any],
) -> None:
    """Two clients post 16 MiB nested bodies without a key, over and over, while a third asks
    for service-info: each answer stays well under a second."""
    body = _nested(16 * MiB - 1024)
    url = f"{refget_url}/comparison/{stored['collection']}"
    stop = threading.Event()
    posted: list[int] = []

    def post() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                try:
                    posted.append(
                        client.post(url, content=body, headers={"Content-Type": "application/json"}).status_code
                    )
                except httpx.TransportError:  # refused unread: the server closes the connection
                    posted.append(0)

    posters = [threading.Thread(target=post, daemon=True) for _ in range(2)]
    for poster in posters:
        poster.start()
    seconds = []
    try:
        with httpx.Client(timeout=30) as probe:
            for _ in range(30):
                started = time.perf_counter()
                assert probe.get(f"{refget_url}/service-info").status_code == 200
                seconds.append(time.perf_counter() - started)
                time.sleep(0.1)
    finally:
        stop.set()
        for poster in posters:
            poster.join(timeout=60)
    assert posted and set(posted) <= {401, 0}, set(posted)
    assert max(seconds) < 1.0, (max(seconds), statistics.median(seconds))


def test_slow_readers_of_long_sequences_hold_no_database_session(
    pipeline: Pipeline,
    refget_url: str,
    stored: dict[str, Any],
) -> None:
    """More stalled readers than the service has sessions (8): another read still answers at once."""
    head = (
        f"GET /sequence/{stored['md5']} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {pipeline.api_key}\r\n\r\n"
    ).encode()
    stalled = [_raw_request(refget_url, head, receive_buffer=4096) for _ in range(12)]
    try:
        for sock in stalled:
            sock.settimeout(30)
            assert sock.recv(64).startswith(b"HTTP/1.1 200")  # started streaming, then nobody reads
        time.sleep(2)
        started = time.perf_counter()
        answer = httpx.get(
            f"{refget_url}/sequence/{stored['md5']}",
            params={"start": 0, "end": 10},
            headers=_headers(pipeline),
            timeout=40,
        )
        assert answer.status_code == 200 and len(answer.text) == 10
        assert time.perf_counter() - started < 5
    finally:
        for sock in stalled:
            sock.close()


def _metrics_text(pipeline: Pipeline, service: str) -> str:
    port = pipeline.processes.values[stack.metrics_port_setting(service)]
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).raise_for_status().text


@pytest.mark.parametrize("service", ["refget", "intake"])
def test_invented_methods_and_paths_do_not_grow_metrics(
    pipeline: Pipeline,
    refget_url: str,
    service: str,
) -> None:
    url = refget_url if service == "refget" else pipeline.settings.status_base_url
    token = uuid.uuid4().hex[:8].upper()
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(3):  # the labels of a first "other" and "unmatched", if none yet
            client.request(f"WARM{i}", "/healthz")
            client.get(f"/warm/{i}")
        before = len(_metrics_text(pipeline, service))
        for i in range(100):
            client.request(f"{token}{i}{'M' * 200}", "/healthz")
            client.get(f"/invented/{token}/{i}")
    after = _metrics_text(pipeline, service)
    assert token not in after
    assert len(after) - before < 2000, len(after) - before  # counts grew, not series


def test_numbers_and_digests_in_a_query_are_bounded(
    pipeline: Pipeline,
    refget_url: str,
    stored: dict[str, Any],
) -> None:
    with httpx.Client(base_url=refget_url, headers=_headers(pipeline), timeout=30) as client:
        for path, params in [
            ("/list/collection", {"page": str(10**17)}),
            ("/list/collection", {"page": "9" * 5000}),
            ("/list/collection", {"page_size": str(10**6)}),
            ("/list/attributes/names", {"page": str(10**17)}),
            (f"/collection/{stored['collection']}", {"level": "3"}),
        ]:
            answer = client.get(path, params=params)
            assert answer.status_code == 422, (path, params, answer.text)
            assert answer.json()["code"] == "invalid_request" and "9999" not in answer.text
        for path in ("/collection/%00", "/attribute/collection/names/%00", "/comparison/%00/%00"):
            answer = client.get(path)
            assert answer.status_code == 404 and answer.json()["code"] == "not_found", (path, answer.text)
        listed = client.get("/list/collection", params={"names": "\x00"})
        assert listed.status_code == 200 and listed.json()["results"] == []
        sequence = f"/sequence/{stored['md5']}"
        assert client.get(sequence, params={"start": "9" * 5000}).status_code == 416
        assert client.get(sequence, params={"start": "-1"}).status_code == 400
        nowhere = client.get("/no/such/route")
        assert nowhere.status_code == 404 and nowhere.json()["code"] == "not_found"


def test_every_answer_names_its_request_and_its_log_lines_do(
    pipeline: Pipeline,
    refget_url: str,
    stored: dict[str, Any],
) -> None:
    answers = [
        httpx.get(f"{refget_url}/sequence/{stored['md5']}", params={"end": 5}, headers=_headers(pipeline)),
        httpx.get(f"{refget_url}/sequence/{stored['md5']}"),  # 401
        httpx.get(f"{refget_url}/sequence/{'0' * 32}", headers=_headers(pipeline)),  # 404
        httpx.get(f"{refget_url}/service-info"),
    ]
    assert [a.status_code for a in answers] == [200, 401, 404, 200]
    ids = [a.headers["X-Request-ID"] for a in answers]
    assert len(set(ids)) == 4 and all(len(i) == 32 for i in ids)
    mine = f"trace-{uuid.uuid4().hex}"
    kept = httpx.get(f"{refget_url}/sequence/{'0' * 32}", headers={**_headers(pipeline), "X-Request-ID": mine})
    assert kept.headers["X-Request-ID"] == mine
    replaced = httpx.get(f"{refget_url}/service-info", headers={"X-Request-ID": "no good\tid"})
    assert replaced.headers["X-Request-ID"] != "no good\tid"
    log = pipeline.processes.log_file("refget")
    lines = poll_until(
        lambda: [json.loads(line) for line in log.read_text().splitlines() if mine in line] or None,
        timeout=10,
        interval=0.2,
        what="a refget log line naming the request",
    )
    assert all(line["request_id"] == mine for line in lines)


def test_a_post_to_the_intake_without_a_key_is_refused_before_its_body_is_read(pipeline: Pipeline) -> None:
    """The intake's routes take bodies from owners only: no key, no body read, no parse."""
    base = pipeline.settings.status_base_url
    for path in ("/uploads", f"/uploads/{uuid.uuid4()}/parts"):
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {16 * MiB}\r\n\r\n"
        ).encode()
        with _raw_request(base, head) as sock:
            sock.settimeout(5)
            answer = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 401"), (path, answer[:200])


def test_a_body_nested_deeper_than_the_intakes_schemas_is_refused_unparsed(pipeline: Pipeline) -> None:
    body = b'{"filename": "a.fa", "size": 1, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    answer = pipeline.http.post("/uploads", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and answer.json()["code"] == "too_deep", answer.text


def test_refget_serves_no_cdn_pages_and_sends_a_content_security_policy(refget_url: str) -> None:
    for path in ("/docs", "/redoc"):
        assert httpx.get(refget_url + path, timeout=10).status_code == 404, path
    answer = httpx.get(refget_url + "/sequence/service-info", timeout=10)
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_an_address_that_floods_invented_keys_is_throttled_before_any_lookup(pipeline: Pipeline) -> None:
    """Each key look-up takes a database connection: an address past 100 unknown keys in 10 s gets
    429 with Retry-After at once for any key not seen valid before, until its window passes (a
    second intake process, so that this run's own intake keeps its own count)."""
    with another_process(pipeline, "intake", "GENOBASE_INTAKE_PORT", {}) as url, httpx.Client(base_url=url) as http:
        in_use = {"Authorization": f"Bearer {pipeline.api_key}"}
        assert http.get("/uploads", headers=in_use).status_code != 401  # a key in use, seen valid
        codes = [
            http.get("/uploads/00000000-0000-0000-0000-000000000000", headers={"Authorization": f"Bearer gbk_{i:040d}"})
            for i in range(101)
        ]
        assert {c.status_code for c in codes[:100]} == {401}
        throttled = codes[100]
        assert throttled.status_code == 429 and throttled.json()["code"] == "too_many_failed_keys"
        assert 1 <= int(throttled.headers["Retry-After"]) <= 10
        # a key this process found valid before is still looked up (and so served): the flood
        # does not lock out the keys in use from an address that others share
        assert http.get("/uploads", headers=in_use).status_code not in (401, 429)
        # a client cannot pass as another address: X-Forwarded-For is not believed
        spoofed = {"Authorization": "Bearer gbk_invented", "X-Forwarded-For": "203.0.113.9"}
        assert http.get("/uploads/00000000-0000-0000-0000-000000000000", headers=spoofed).status_code == 429
    # the stack's own intake, another process, still answers this address
    assert pipeline.http.get("/healthz").status_code == 200


def test_the_running_services_answer_every_kind_of_error_as_a_problem(pipeline: Pipeline, refget_url: str) -> None:
    """Each answered by a different part of the service: the key guard, a route, FastAPI's
    validation, Starlette's router, the body limit; the error id is in the service's log."""
    intake, key, base = pipeline.http, _headers(pipeline), pipeline.settings.status_base_url  # intake: with the key
    missing = intake.get(f"/uploads/{uuid.uuid4()}")
    cases = [
        (httpx.post(f"{base}/uploads", json={"filename": "x.fa", "size": 1}), 401, "unauthorized"),
        (missing, 404, "not_found"),
        (intake.get("/no/such/route"), 404, "not_found"),
        (intake.delete("/healthz"), 405, "method_not_allowed"),
        (intake.post("/uploads", json={"filename": "x.fa", "size": "9" * 500}), 422, "invalid_request"),
        (intake.post("/uploads", content=b" " * (1 * MiB)), 413, "request_too_large"),
        (httpx.get(f"{refget_url}/sequence/{'0' * 32}"), 401, "unauthorized"),
        (httpx.get(f"{refget_url}/sequence/{'0' * 32}", headers=key), 404, "not_found"),
        (httpx.post(f"{refget_url}/collection/x", headers=key), 405, "method_not_allowed"),
        (httpx.get(f"{refget_url}/list/collection?page=-1", headers=key), 422, "invalid_request"),
    ]
    for answer, status, code in cases:
        assert answer.status_code == status and problem(answer)["code"] == code, (status, code, answer.text)
    assert cases[0][0].headers["www-authenticate"].startswith("Bearer") and cases[3][0].headers["allow"] == "GET"
    assert "9" * 50 not in cases[4][0].text
    invalid = cases[4][0]  # logged at info (a refusal anyone can cause at will, a 401 or 404, at debug)
    error_id = invalid.json()["error_id"]
    log = pipeline.processes.log_file("intake")
    logged = poll_until(
        lambda: [json.loads(line) for line in log.read_text().splitlines() if error_id in line] or None,
        timeout=10,
        interval=0.2,
        what="the intake's log line of the error",
    )
    assert logged[0]["detail"] == invalid.json()["detail"] and logged[0]["code"] == "invalid_request"
    for url in (base, refget_url):
        check_openapi(httpx.get(f"{url}/openapi.json", timeout=10).raise_for_status().json())

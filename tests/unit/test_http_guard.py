"""The HTTP guards shared by the intake and refget: request ids, authentication before the body,
the JSON depth check, the body limit and the bounded metric labels (on small Starlette apps)."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest
import structlog
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from shared.domain.access import Caller, KeyStore
from shared.runtime import metrics
from shared.usecases.keys import create_key, revoke_key
from shared.web import guard
from shared.web.body_limit import BodyLimit
from shared.web.guard import (
    CLIENT_ADDRESS,
    MAX_KEY_CHARS,
    AuthBeforeBody,
    FailedKeyLimiter,
    KnownKeys,
    RequestId,
    Throttled,
    Unauthorized,
    api_key_caller,
    authenticated,
    carries_body,
    json_too_deep,
)
from tests.problems import problem
from tests.unit.fakes_keys import FakeKeys


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"1", 0),
        (b'"[[[[{{{{"', 0),  # brackets in a string are not structure
        (b"[]", 1),
        (b'{"a": [1, 2], "b": [3]}', 2),
        (b'{"pairs": [{"name": "x", "length": 1}, {"name": "y]", "length": 2}]}', 3),
        (b'["\\"[", ["\\\\"]]', 2),  # an escaped quote, then an escaped backslash before the closing quote
        (json.dumps({"a": [[[[[]]]]]}).encode(), 6),
    ],
)
def test_json_depth(text: bytes, depth: int) -> None:
    json.loads(text)  # each is valid JSON
    assert not json_too_deep(text, depth)
    if depth > 0:
        assert json_too_deep(text, depth - 1)


def test_unbalanced_brackets_are_too_deep() -> None:
    assert json_too_deep(b"[" * 100, 3)
    assert json_too_deep(b'{"a": "unterminated [[[[', 3)


def test_the_depth_check_is_linear_on_16_mib() -> None:
    mib = 1024 * 1024
    nested = b"[" * (8 * mib) + b"]" * (8 * mib)
    wide = b'{"names": [' + b'"abcdefgh",' * mib + b'"x"]}'
    short_strings = b'{"names": [' + b'"a",' * (4 * mib) + b'"x"]}'
    bracketed_strings = b'"["[' * (4 * mib)  # no two strings meet: each is one piece to drop
    escapes = b'["' + b'\\"' * (4 * mib) + b'"]'
    for text in (nested, wide, short_strings, bracketed_strings, escapes):
        started = time.perf_counter()
        json_too_deep(text, 3)
        assert time.perf_counter() - started < 2


def test_a_body_is_announced_by_length_or_chunking() -> None:
    def scope(*headers: tuple[bytes, bytes]) -> Scope:
        return {"type": "http", "headers": list(headers)}

    assert carries_body(scope((b"content-length", b"10")))
    assert carries_body(scope((b"transfer-encoding", b"chunked")))
    assert not carries_body(scope((b"content-length", b"0")))
    assert not carries_body(scope())


def _app(authenticate: Any, max_depth: int | None = 3) -> Any:
    async def echo(request: Request) -> JSONResponse:
        caller = authenticated(request, authenticate)
        body = await request.body()
        structlog.get_logger().info("echoing")
        return JSONResponse({"caller": caller, "bytes": len(body)})

    async def fail(_: Request) -> PlainTextResponse:
        raise RuntimeError("secret detail")

    app = Starlette(routes=[Route("/echo", echo, methods=["GET", "POST"]), Route("/fail", fail)])
    app.add_middleware(BodyLimit, max_bytes=1000, max_json_depth=max_depth)
    app.add_middleware(AuthBeforeBody, authenticate=authenticate)
    app.add_middleware(metrics.HttpMetrics)
    app.add_middleware(RequestId)
    return app


def _key_check(header: str | None) -> str:
    if header != "Bearer good":
        raise Unauthorized("an API key is required")
    return "alice"


def test_without_a_key_a_body_is_never_received() -> None:
    received: list[Message] = []
    sent: list[Message] = []
    app = _app(_key_check)

    async def receive() -> Message:
        message: Message = {"type": "http.request", "body": b"{}" * 100, "more_body": True}
        received.append(message)
        return message

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": "/echo",
        "raw_path": b"/echo",
        "query_string": b"",
        "headers": [(b"content-length", b"999")],
        "scheme": "http",
        "server": ("test", 80),
        "client": ("test", 1),
        "root_path": "",
        "http_version": "1.1",
    }
    anyio.run(_call, app, scope, receive, send)
    assert received == []
    assert sent[0]["status"] == 401
    assert json.loads(sent[1]["body"])["code"] == "unauthorized"
    assert (b"content-type", b"application/problem+json") in sent[0]["headers"]


async def _call(app: Any, scope: Scope, receive: Receive, send: Send) -> None:
    await app(scope, receive, send)


def test_with_a_key_the_caller_reaches_the_route_once_authenticated() -> None:
    calls: list[str | None] = []

    def counting(header: str | None) -> str:
        calls.append(header)
        return _key_check(header)

    with TestClient(_app(counting)) as client:
        answer = client.post("/echo", content=b"[1, 2]", headers={"Authorization": "Bearer good"})
        assert answer.status_code == 200 and answer.json() == {"caller": "alice", "bytes": 6}
        assert calls == ["Bearer good"]  # by the middleware; the route reused it
        assert client.get("/echo", headers={"Authorization": "Bearer good"}).json()["caller"] == "alice"
        assert client.post("/echo", content=b"[1]", headers={"Authorization": "Bearer bad"}).status_code == 401


def test_a_body_nested_deeper_than_allowed_is_refused_400() -> None:
    with TestClient(_app(_key_check)) as client:
        answer = client.post("/echo", content=b'{"a": [[[1]]]}', headers={"Authorization": "Bearer good"})
        assert answer.status_code == 400 and answer.json()["code"] == "too_deep"
        assert client.post("/echo", content=b"x" * 1001, headers={"Authorization": "Bearer good"}).status_code == 413


def test_every_answer_carries_a_request_id_and_a_well_formed_one_is_kept() -> None:
    with TestClient(_app(_key_check), raise_server_exceptions=False) as client:
        generated = client.get("/echo", headers={"Authorization": "Bearer good"}).headers["x-request-id"]
        assert len(generated) == 32
        kept = client.get("/echo", headers={"Authorization": "Bearer good", "X-Request-ID": "client-id-1234"})
        assert kept.headers["x-request-id"] == "client-id-1234"
        for bad in ("short", "with space inside it", "x" * 200, "bad\u00e9id-12345"):
            header = bad.encode("utf-8")
            answer = client.get("/echo", headers={"Authorization": "Bearer good", "X-Request-ID": header})
            assert (
                answer.headers["x-request-id"] != header.decode("latin-1") and len(answer.headers["x-request-id"]) == 32
            )
        refused = client.post("/echo", content=b"{}")
        assert refused.status_code == 401 and len(refused.headers["x-request-id"]) == 32


def test_an_unhandled_error_is_a_500_with_a_code_an_error_id_and_no_detail() -> None:
    with structlog.testing.capture_logs() as logs, TestClient(_app(_key_check), raise_server_exceptions=False) as c:
        answer = c.get("/fail", headers={"X-Request-ID": "trace-me-please"})
    assert answer.status_code == 500 and answer.headers["x-request-id"] == "trace-me-please"
    body = answer.json()
    assert problem(answer) == {"code": "internal_error", "detail": "the request failed"} and "secret" not in answer.text
    failed = [line for line in logs if line["event"] == "request failed"]
    assert failed and failed[0]["error_id"] == body["error_id"]


def test_log_lines_of_a_request_name_its_id() -> None:
    capture = structlog.testing.LogCapture()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    try:
        with TestClient(_app(_key_check)) as client:
            client.get("/echo", headers={"Authorization": "Bearer good", "X-Request-ID": "trace-me-please"})
    finally:
        structlog.reset_defaults()
    echoing = [line for line in capture.entries if line["event"] == "echoing"]
    assert echoing and echoing[0]["request_id"] == "trace-me-please"


def _series(method: str) -> float | None:
    return REGISTRY.get_sample_value(
        "genobase_http_requests_total", {"route": "/echo", "method": method, "status": "405"}
    )


def test_metric_labels_take_only_known_methods_and_routes() -> None:
    before = _series("other") or 0
    with TestClient(_app(_key_check)) as client:
        for i in range(5):
            client.request(f"INVENTED{i}", "/echo")
        client.get(f"/no/such/path/{'x' * 100}")
    assert _series("other") == before + 5
    assert all(_series(f"INVENTED{i}") is None for i in range(5))
    assert metrics.method_label("GET") == "GET" and metrics.method_label("get") == "other"
    assert REGISTRY.get_sample_value(
        "genobase_http_requests_total", {"route": "unmatched", "method": "GET", "status": "404"}
    )


def test_known_keys_are_bounded_and_forget_the_least_recent() -> None:
    known = KnownKeys(size=2)
    for key_hash in ("a", "b", "a", "c"):
        known.add(key_hash)
    assert "a" in known and "c" in known and "b" not in known


def test_an_address_that_tried_too_many_unknown_keys_waits_for_its_window() -> None:
    now = [100.0]
    limiter = FailedKeyLimiter(failures=3, window=10, addresses=2, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("10.0.0.1") is None
        limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 10 and limiter.retry_after("10.0.0.2") is None
    now[0] += 9.5
    assert limiter.retry_after("10.0.0.1") == 1  # rounded up: never "try again in 0 s"
    now[0] += 0.6
    assert limiter.retry_after("10.0.0.1") is None  # the oldest failure left the window
    limiter.failed("a")
    limiter.failed("b")  # three addresses for room for two: the least recent is forgotten
    assert "10.0.0.1" not in limiter._seen and set(limiter._seen) == {"a", "b"}


@pytest.fixture
def limited(monkeypatch: pytest.MonkeyPatch) -> FailedKeyLimiter:
    """A fresh failure limiter (2 unknown keys per address) and known keys, for one test."""
    limiter = FailedKeyLimiter(failures=2, window=60)
    monkeypatch.setattr(guard, "FAILED_KEYS", limiter)
    monkeypatch.setattr(guard, "KNOWN_KEYS", KnownKeys())
    return limiter


def _from(address: str | None, store: KeyStore, header: str | None) -> Caller:
    """The key check as a request from ``address`` meets it."""
    token = CLIENT_ADDRESS.set(address)
    try:
        return api_key_caller(store, header)
    finally:
        CLIENT_ADDRESS.reset(token)


def test_the_key_check_names_the_caller_of_a_valid_key(limited: FailedKeyLimiter) -> None:
    keys = FakeKeys()
    key = create_key(keys, "alice", admin=True)
    for header in (f"Bearer {key}", f"bearer   {key} ", f"  BEARER {key}"):
        caller = _from("10.0.0.1", keys, header)
        assert caller == Caller("alice", admin=True)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic abc", "gbk_abc"])
def test_a_missing_key_is_refused_without_a_look_up(limited: FailedKeyLimiter, header: str | None) -> None:
    keys = FakeKeys()
    with pytest.raises(Unauthorized, match="an API key is required") as refused:
        _from("10.0.0.2", keys, header)
    assert not isinstance(refused.value, Throttled) and keys.lookups == 0
    assert limited.retry_after("10.0.0.2") is None  # not counted as a failed key


def test_unknown_revoked_and_over_long_keys_are_refused_alike_and_counted(limited: FailedKeyLimiter) -> None:
    keys = FakeKeys()
    revoked = create_key(keys, "gone", admin=False)
    revoke_key(keys, "gone")
    with pytest.raises(Unauthorized, match="not valid"):
        _from("10.0.0.3", keys, f"Bearer {revoked}")
    with pytest.raises(Unauthorized, match="not valid"):
        _from("10.0.0.4", keys, "Bearer gbk_" + "x" * MAX_KEY_CHARS)
    assert keys.lookups == 1  # the over-long key was refused without one
    with pytest.raises(Unauthorized, match="not valid"):
        _from("10.0.0.3", keys, "Bearer gbk_invented")
    with pytest.raises(Throttled) as throttled:  # the address's third unknown key within the window
        _from("10.0.0.3", keys, "Bearer gbk_another")
    assert throttled.value.retry_after > 0 and keys.lookups == 2  # refused before a look-up


def test_a_throttled_address_still_gets_in_with_a_key_seen_valid(limited: FailedKeyLimiter) -> None:
    keys = FakeKeys()
    key = create_key(keys, "alice", admin=False)
    _from("10.0.0.5", keys, f"Bearer {key}")
    for invented in ("gbk_a", "gbk_b"):
        with pytest.raises(Unauthorized):
            _from("10.0.0.5", keys, f"Bearer {invented}")
    assert limited.retry_after("10.0.0.5") is not None
    assert _from("10.0.0.5", keys, f"Bearer {key}").name == "alice"
    revoke_key(keys, "alice")  # a known key is still looked up: revoking it ends it at once
    with pytest.raises(Unauthorized, match="not valid"):
        _from("10.0.0.5", keys, f"Bearer {key}")
    # ... and forgets it: its holder, throttled, is refused before any look-up, like a guesser
    with pytest.raises(Throttled):
        _from("10.0.0.5", keys, f"Bearer {key}")


def test_without_an_address_nothing_is_throttled(limited: FailedKeyLimiter) -> None:
    keys = FakeKeys()
    for _ in range(5):
        with pytest.raises(Unauthorized) as refused:
            _from(None, keys, "Bearer gbk_invented")
        assert not isinstance(refused.value, Throttled)
    assert keys.lookups == 5

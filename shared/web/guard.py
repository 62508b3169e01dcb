"""Guards every HTTP service puts in front of its routes (plain ASGI, so streamed answers pass untouched).

* ``RequestId``: every answer carries an ``X-Request-ID`` (a well-formed incoming one is kept, so a
  client or proxy can follow its request; anything else is replaced), every log line written while
  the request runs names it (structlog contextvars), and an exception no route handled becomes a
  500 problem ``internal_error`` with an ``error_id`` (the detail is logged under it, never sent).
* ``AuthBeforeBody``: a request that carries a body is authenticated from its headers before one
  byte of the body is read, so a caller without a key cannot make the service receive, buffer or
  parse anything.
* ``json_too_deep``: whether a JSON text nests deeper than a limit, found in linear time without
  parsing it (Python's parser recurses, and what it builds from a deep text is costly to walk).
"""

from __future__ import annotations

import math
import re
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from contextvars import ContextVar

import anyio.to_thread
import structlog
from fastapi import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.domain.access import Caller, KeyStore, key_hash
from shared.domain.uploads import new_error_id
from shared.usecases import keys as key_cases
from shared.web.problems import problem_response

log = structlog.get_logger()

REQUEST_ID_HEADER = "X-Request-ID"
# What a client may name its request: short, and safe in a header and a log line.
_WELL_FORMED_ID = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:-]{7,127}")
# Where ``AuthBeforeBody`` leaves what ``authenticate`` returned (Starlette's ``request.state``).
CALLER_STATE = "authenticated_caller"


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return bytes(value)
    return None


def request_id_of(scope: Scope) -> str | None:
    """The id ``RequestId`` gave this request (None outside it)."""
    value = scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


class RequestId:
    """ASGI middleware, outermost: a request id in the answer's headers and on every log line."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        if incoming is not None and _WELL_FORMED_ID.fullmatch(incoming):
            request_id = incoming.decode("ascii")
        else:
            request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode("ascii"))]}
            await send(message)

        client = scope.get("client")
        client_token = CLIENT_ADDRESS.set(str(client[0]) if client else None)
        # bound for this request's task; route handlers on worker threads get a copy of the context
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self._app(scope, receive, sending)
            except Exception:  # no route handled it: a safe answer, the detail in the log
                error_id = new_error_id()
                log.exception("request failed", error_id=error_id, path=scope.get("path", "")[:200])
                if status == 0:  # nothing sent yet; else the client sees the body cut short
                    answer = problem_response(500, "internal_error", "the request failed", error_id=error_id)
                    await answer(scope, receive, sending)
            finally:
                CLIENT_ADDRESS.reset(client_token)
                log.debug(
                    "request",
                    method=str(scope.get("method", ""))[:16],
                    path=scope.get("path", "")[:200],
                    status=status,
                    seconds=round(time.perf_counter() - started, 4),
                )


class Unauthorized(Exception):
    """``authenticate`` refuses the request: 401 with this (safe) message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Throttled(Unauthorized):
    """Too many unknown keys from the request's address: 429, to try again after ``retry_after`` s."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many unknown API keys from this address; try again in {retry_after} s")
        self.retry_after = retry_after


# The address of the request being served (set by ``RequestId``); worker threads see a copy.
CLIENT_ADDRESS: ContextVar[str | None] = ContextVar("genobase_client_address", default=None)


class FailedKeyLimiter:
    """At most ``failures`` unknown or revoked keys per client address within ``window`` seconds.

    Each key look-up takes a pooled database connection: without a bound, a flood of invented keys
    would hold them all and keep every other request waiting. Past the bound an address's keys are
    looked up only if they were found valid before (``KNOWN_KEYS``); any other is refused (429)
    before a look-up until the address's oldest failure leaves the window. So a flood from an
    address that others share (every client of a stack on one host is 127.0.0.1) does not lock out
    the keys in use. The addresses kept are bounded too (the least recently failing go first).
    """

    def __init__(
        self,
        failures: int = 100,
        window: float = 10.0,
        addresses: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._failures, self._window, self._addresses, self._clock = failures, window, addresses, clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may try a key again; None if it may now."""
        with self._lock:
            times = self._seen.get(address)
            if times is None:
                return None
            while times and times[0] <= self._clock() - self._window:
                times.popleft()
            if len(times) < self._failures:
                return None
            return max(1, math.ceil(times[0] + self._window - self._clock()))

    def failed(self, address: str) -> None:
        with self._lock:
            times = self._seen.pop(address, None) or deque(maxlen=self._failures)
            times.append(self._clock())
            self._seen[address] = times  # the most recent last
            while len(self._seen) > self._addresses:
                self._seen.popitem(last=False)


FAILED_KEYS = FailedKeyLimiter()


class KnownKeys:
    """Hashes of keys found valid lately (bounded, the least recent forgotten first).

    Only a hint for ``FailedKeyLimiter``: a known key is still looked up every time, so revoking
    it ends it at once.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._hashes: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, key_hash: str) -> None:
        with self._lock:
            self._hashes.pop(key_hash, None)
            self._hashes[key_hash] = None
            while len(self._hashes) > self._size:
                self._hashes.popitem(last=False)

    def forget(self, key_hash: str) -> None:
        """A key no longer valid (revoked): its holder is limited like anyone guessing keys."""
        with self._lock:
            self._hashes.pop(key_hash, None)

    def __contains__(self, key_hash: object) -> bool:
        with self._lock:
            return key_hash in self._hashes


KNOWN_KEYS = KnownKeys()
# Key look-ups at once, whatever their address: half of a service's database pool (8) at most, so
# that invented keys from many addresses still leave the other half to the requests being served.
LOOKUPS = threading.BoundedSemaphore(4)


_CHALLENGE = 'Bearer realm="genobase"'


def refusal_error(refusal: Unauthorized) -> HTTPException:
    """A route's refusal of a key: 401, or 429 with Retry-After for an address that tried too many."""
    if isinstance(refusal, Throttled):
        return HTTPException(
            429,
            {"code": "too_many_failed_keys", "message": refusal.message},
            headers={"Retry-After": str(refusal.retry_after)},
        )
    detail = {"code": "unauthorized", "message": refusal.message}
    return HTTPException(401, detail, headers={"WWW-Authenticate": _CHALLENGE})


def unauthorized_response(refusal: Unauthorized) -> JSONResponse:
    """``refusal_error``'s answer, from the ASGI guard (no route and no exception handler yet)."""
    if isinstance(refusal, Throttled):
        return problem_response(
            429, "too_many_failed_keys", refusal.message, headers={"Retry-After": str(refusal.retry_after)}
        )
    return problem_response(401, "unauthorized", refusal.message, headers={"WWW-Authenticate": _CHALLENGE})


def carries_body(scope: Scope) -> bool:
    """Whether the request says a body follows (a Content-Length above zero, or a chunked body)."""
    length = _header(scope, b"content-length")
    chunked = _header(scope, b"transfer-encoding") is not None
    return chunked or (length is not None and length.strip() not in (b"", b"0"))


def authorization(scope: Scope) -> str | None:
    value = _header(scope, b"authorization")
    return None if value is None else value.decode("latin-1")


class AuthBeforeBody:
    """ASGI middleware: a request with a body is authenticated from its headers before the body is read.

    ``authenticate`` gets the ``Authorization`` header (or None), runs on a worker thread (it may
    look the key up in a database) and returns the caller, or raises ``Unauthorized``: the answer is
    then 401 and the body is never received (the server closes the connection after the answer).
    The caller is kept in the request's state: ``authenticated()`` hands it to the route without a
    second look-up. Put it outside every middleware that reads the body (``BodyLimit``).
    """

    def __init__(self, app: ASGIApp, authenticate: Callable[[str | None], object]) -> None:
        self._app = app
        self._authenticate = authenticate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not carries_body(scope):
            await self._app(scope, receive, send)
            return
        try:
            caller = await anyio.to_thread.run_sync(self._authenticate, authorization(scope))
        except Unauthorized as refusal:
            await unauthorized_response(refusal)(scope, receive, send)
            return
        scope.setdefault("state", {})[CALLER_STATE] = caller
        await self._app(scope, receive, send)


MAX_KEY_CHARS = 256  # longer than any key: refused without a look-up


def serve(app: ASGIApp, host: str, port: int) -> None:
    """Run an HTTP service under uvicorn. ``proxy_headers`` is off: the client's address is the
    connection's, never an X-Forwarded-For a client wrote (uvicorn believes one from 127.0.0.1 by
    default, and every client of a stack on one host is that), so ``FAILED_KEYS`` counts by it."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=False)


def api_key_caller(store: KeyStore, header: str | None, /) -> Caller:
    """The owner behind an ``Authorization: Bearer KEY`` header; ``Unauthorized`` for a missing,
    unknown or revoked key. The one key check of the intake and refget (``AuthBeforeBody``).

    ``store`` is where keys are looked up (the service's ``PostgresKeys`` on its request pool).
    """
    scheme, _, key = (header or "").strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized("an API key is required: Authorization: Bearer KEY")
    address = CLIENT_ADDRESS.get()
    hashed = key_hash(key)
    if address is not None and hashed not in KNOWN_KEYS and (wait := FAILED_KEYS.retry_after(address)) is not None:
        raise Throttled(wait)
    caller = None
    if len(key) <= MAX_KEY_CHARS:
        with LOOKUPS:
            caller = key_cases.authenticate(store, key)
    if caller is None:
        KNOWN_KEYS.forget(hashed)
        if address is not None:
            FAILED_KEYS.failed(address)
        raise Unauthorized("the API key is not valid")
    KNOWN_KEYS.add(hashed)
    return caller


def caller_or_refusal(request: Request, authenticate: Callable[[str | None], object]) -> object:
    """``authenticated``, for a route's dependency: a refused key becomes its 401 or 429."""
    try:
        return authenticated(request, authenticate)
    except Unauthorized as refusal:
        raise refusal_error(refusal) from None


def authenticated(request: Request, authenticate: Callable[[str | None], object]) -> object:
    """The caller ``AuthBeforeBody`` found for this request, or ``authenticate`` run now (a request
    without a body). Raises ``Unauthorized``."""
    state = request.scope.get("state", {})
    if CALLER_STATE in state:
        return state[CALLER_STATE]
    return authenticate(authorization(request.scope))


# Everything but quotes and brackets is dropped; braces count as brackets (a mismatched pair is
# invalid JSON, which the parser refuses afterwards: only the depth matters here).
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'"[]{}')
_SQUARE = bytes.maketrans(b"{}", b"[]")
_SLICE = 1024 * 1024  # the text is walked a slice at a time: no one call holds the interpreter long


def json_too_deep(text: bytes, max_depth: int) -> bool:
    """Whether ``text`` nests arrays and objects more than ``max_depth`` deep (or leaves some open).

    Linear, and never recursive: escapes go first (a backslash occurs only in strings, so every
    quote left opens or closes one), then all but quotes and brackets; brackets inside strings are
    dropped; then each of at most ``max_depth`` passes removes the innermost level. Each step is
    one C-speed bytes operation over the text, or over one slice of it.
    """
    unescaped = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    # a string without brackets leaves '""' (two strings that meet leave '""' too; joining them
    # moves no bracket in or out of a string)
    structure = unescaped.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    outside: list[bytes] = []
    in_string = False
    for at in range(0, len(structure), _SLICE):
        parts = structure[at : at + _SLICE].split(b'"')
        outside.extend(parts[1 if in_string else 0 :: 2])
        if len(parts) % 2 == 0:  # an odd number of quotes in this slice
            in_string = not in_string
    brackets = b"".join(outside).translate(_SQUARE)
    if b"[" * (max_depth + 1) in brackets:  # the commonest deep text, found at once
        return True
    for _ in range(max_depth):
        if not brackets:
            return False
        brackets = brackets.replace(b"[]", b"")
    return bool(brackets)

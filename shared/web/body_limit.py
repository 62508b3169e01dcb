"""A request body limit for the HTTP services (ASGI middleware), by bytes and by JSON nesting,
before any parsing."""

from __future__ import annotations

import anyio.to_thread
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.web.guard import json_too_deep
from shared.web.problems import problem_response


class BodyLimit:
    """Refuses a request body over ``max_bytes`` with 413, by its Content-Length or as it streams in.

    The body (small by design) is read here first and handed on whole, so that an oversized one is
    never parsed and the refusal does not depend on how the route reads it. With
    ``max_json_depth`` (the deepest nesting the service's schemas have), a body that nests deeper
    is refused 400 ``too_deep`` before anything parses it; the check runs on a worker thread, so a
    large body does not hold up the event loop. Authenticate first (``AuthBeforeBody``, outside
    this one): what is read here is then read for a caller with a key.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, max_json_depth: int | None = None) -> None:
        self._app = app
        self._max = max_bytes
        self._max_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        # digits compared by count first: int() of thousands of digits raises (a 500, not a 413)
        too_long = declared is not None and (not declared.isdigit() or len(declared) > 19 or int(declared) > self._max)
        if too_long:
            await _too_large(self._max)(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self._app(scope, receive, send)  # the client went away: let the app see it
                return
            body += message.get("body", b"")
            if len(body) > self._max:
                await _too_large(self._max)(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        if (
            self._max_depth is not None
            and body
            and await anyio.to_thread.run_sync(json_too_deep, bytes(body), self._max_depth)
        ):
            await _too_deep(self._max_depth)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self._app(scope, replay, send)


def _too_large(limit: int) -> JSONResponse:
    return problem_response(413, "request_too_large", f"request bodies are limited to {limit} bytes")


def _too_deep(limit: int) -> JSONResponse:
    return problem_response(400, "too_deep", f"request bodies nest at most {limit} arrays or objects deep")

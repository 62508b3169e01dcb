"""A request body limit for the HTTP services (ASGI middleware), by bytes, before any parsing."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """Refuses a request body over ``max_bytes`` with 413, by its Content-Length or as it streams in.

    The body (small by design) is read here first and handed on whole, so that an oversized one is
    never parsed and the refusal does not depend on how the route reads it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self._app = app
        self._max = max_bytes

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
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self._app(scope, replay, send)


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        {"detail": {"code": "request_too_large", "message": f"request bodies are limited to {limit} bytes"}},
        status_code=413,
    )

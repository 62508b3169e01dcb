"""Security headers on every answer of the HTTP services: a Content-Security-Policy first.

The intake's upload page (``services/intake/static/``) runs only its own scripts and styles, from
this origin, and talks to two places: the intake (its API) and the object store (the presigned PUTs
and parts). Its policy says exactly that, so an injected script or a script from elsewhere does not
run, and the page cannot be framed. refget serves no page at all: its policy lets nothing load but
from itself. JSON answers get the same headers: they cost nothing and a browser that renders one as
a page is held to the same policy.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def content_security_policy(store_origin: str = "") -> str:
    """The policy; ``store_origin`` is where a page's presigned URLs point (scheme://host[:port]), if any."""
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            f"connect-src 'self' {store_origin}".rstrip(),
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL (a CSP source names an origin, not a path)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class PageHeaders:
    """ASGI middleware: the headers below on every HTTP answer (a route's own are replaced)."""

    def __init__(self, app: ASGIApp, store_origin: str | None = None) -> None:
        self._app = app
        policy = content_security_policy(origin_of(store_origin) if store_origin else "")
        self._headers = [
            (b"content-security-policy", policy.encode("ascii")),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
        ]
        self._names = {name for name, _ in self._headers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in self._names]
                message = {**message, "headers": [*kept, *self._headers]}
            await send(message)

        await self._app(scope, receive, sending)

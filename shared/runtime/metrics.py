"""Prometheus metrics of every service (``prometheus-client``), each defined once, here.

Every service serves them on its own port (``GENOBASE_METRICS_PORT``; ``genobase up`` gives each
service one and prints it) at ``/metrics``. Names follow Prometheus's conventions: counters end
in ``_total`` (the client adds it), durations are histograms in seconds. Label values are bounded
sets (stages, outcomes, states, error codes, route templates), never ids.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram, start_http_server
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.runtime.settings import Settings

MESSAGES = Counter("genobase_messages", "Messages a stage handled, by how each was settled", ["stage", "outcome"])
STAGE_SECONDS = Histogram(
    "genobase_stage_seconds",
    "Time a stage took over one message (a whole parse, one batch, a whole assembly)",
    ["stage"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)
BYTES = Counter(
    "genobase_bytes", "Bytes through a stage: parse = source bytes read, assemble = result bytes written", ["stage"]
)
MESSAGE_BYTES = Counter("genobase_message_bytes", "Bytes of the messages a stage took in (batches: persist)", ["stage"])
RECORDS = Counter("genobase_records", "Records through a stage (parsed, stored, written)", ["stage"])
UPLOADS_ENDED = Counter("genobase_uploads_ended", "Generations that ended, by state and error code", ["state", "code"])
STALLS = Counter("genobase_stalls_picked_up", "Stalled uploads whose message the watchdog issued again")
# Uploads the reconciler started because their notification never came (registered: a ticket's
# object; unregistered: an object or etag no upload knew): above zero, notifications are being lost.
RECONCILER_STARTED = Counter(
    "genobase_reconciler_started", "Uploads the reconciler started without their notification", ["kind"]
)
# Its own cost: requests to the object store and queries to Postgres, by pass.
RECONCILER_REQUESTS = Counter(
    "genobase_reconciler_requests", "Object store requests and Postgres queries of the reconciler", ["target", "pass"]
)
DEAD_LETTERS = Counter("genobase_dead_letters", "Messages a stage sent to its dead-letter queue", ["stage"])
HTTP_REQUESTS = Counter(
    "genobase_http_requests", "HTTP requests, by route template and status", ["route", "method", "status"]
)
HTTP_SECONDS = Histogram("genobase_http_request_seconds", "HTTP request latency", ["route", "method"])
# The methods a label may name; any other (a client may send any token) is counted as "other".
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"  # every path no route matched, whatever it was


def method_label(method: str) -> str:
    """The request's method as a label: one of ``HTTP_METHODS``, or ``other``."""
    return method if method in HTTP_METHODS else "other"


def route_label(scope: Scope) -> str:
    """The template of the route that matched (the router sets it on the scope), or ``unmatched``."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


def serve(settings: Settings) -> None:
    """Serve ``/metrics`` on this process's metrics port (none configured: nothing is served)."""
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.metrics_host)


def ended(state: str, code: str | None = None) -> None:
    UPLOADS_ENDED.labels(state, code or "").inc()


class HttpMetrics:
    """ASGI middleware: count and time each request under its route's template (bounded labels: a
    known method or ``other``, a route template or ``unmatched``, a status the service answers).

    Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``, which would pipe every streamed
    response (a whole chromosome from refget) through an extra queue. The time is to the end of
    the response's body.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = "500"

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, sending)
        finally:
            route, method = route_label(scope), method_label(scope["method"])
            HTTP_REQUESTS.labels(route, method, status).inc()
            HTTP_SECONDS.labels(route, method).observe(time.perf_counter() - started)

"""The intake's wiring: the app with its middleware, its routes and its page, over real or given ports.

``create_app(settings)`` plugs in the real adapters (Postgres through a request pool, the object
store, the broker for the health check and for a retry's parse message); ``build_app`` takes them
ready-made, which is how the route tests run the same app over the fakes of ``tests/unit/fakes.py``.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pika
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from services.intake import records
from services.intake.api import IntakeDeps, health, router
from services.intake.listing import listing_router
from services.intake.schemas import MAX_JSON_DEPTH, MAX_REQUEST_BYTES
from shared.postgres.connection import request_pool
from shared.postgres.keys import PostgresKeys
from shared.postgres.records import PostgresRecords
from shared.postgres.uploads import PostgresUploads
from shared.rabbitmq.broker import RequestEventPublisher
from shared.rabbitmq.broker import connect as amqp_connect
from shared.runtime import metrics
from shared.runtime.settings import Settings
from shared.s3.store import ObjectStore
from shared.usecases.uploads import Intake
from shared.web import problems
from shared.web.body_limit import BodyLimit
from shared.web.guard import AuthBeforeBody, RequestId, api_key_caller
from shared.web.headers import PageHeaders

STATIC = Path(__file__).parent / "static"


class BrokerProbe:
    """One AMQP connection kept for health checks, opened again only when it was lost.

    A new connection per ``/healthz`` call costs the broker a login each time; pika connections
    are not thread-safe, and routes run on a thread pool, hence the lock. No heartbeats: it is
    only touched by checks, and a dead socket shows as an error on the next one. ``connect``
    opens one (the broker module's, but for tests).
    """

    def __init__(self, settings: Settings, connect: Callable[..., Any] = amqp_connect) -> None:
        self._settings = settings
        self._connect = connect
        self._lock = threading.Lock()
        self._connection: Any = None

    def ping(self) -> None:
        """Raise if the broker does not answer. A kept connection the broker dropped since (a restart)
        is replaced and tried once more: only a fresh connection's failure says the broker is away."""
        with self._lock:
            while True:
                fresh = self._connection is None or not self._connection.is_open
                try:
                    if self._connection is None or not self._connection.is_open:
                        self._connection = self._connect(self._settings, heartbeat=0)
                    self._connection.process_data_events(time_limit=0)
                    return
                except (pika.exceptions.AMQPError, OSError):
                    self._connection = None
                    if fresh:
                        raise

    def close(self) -> None:
        with self._lock:
            if self._connection is not None and self._connection.is_open:
                self._connection.close()
            self._connection = None


def create_app(settings: Settings) -> FastAPI:
    """The intake on its real adapters; the pool opens when the app starts and closes when it stops."""
    pool = request_pool(settings)
    store = ObjectStore(settings)
    broker = BrokerProbe(settings)
    # Its broker user may publish to the events exchange and nothing else (genobase/stack.py).
    events = RequestEventPublisher(settings)
    uploads = PostgresUploads(pool)
    deps = IntakeDeps(
        intake=Intake(settings, uploads, store, events),
        authenticate=functools.partial(api_key_caller, PostgresKeys.from_pool(pool)),
        probes={
            "postgres": uploads.ping,
            "rabbitmq": broker.ping,
            "s3": lambda: store.client.head_bucket(Bucket=settings.uploads_bucket),
        },
        records=PostgresRecords(pool),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool.open(wait=True, timeout=60)
        try:
            yield
        finally:
            broker.close()
            events.close()
            pool.close()

    return build_app(deps, lifespan)


def build_app(
    deps: IntakeDeps, lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None
) -> FastAPI:
    """The intake over ``deps``; ``lifespan`` opens and closes what they hold (the real app's pool)."""
    settings = deps.intake.settings
    # No Swagger UI or ReDoc: FastAPI's pages load their scripts and styles from a CDN, and these
    # pages load nothing from elsewhere. The OpenAPI document stays at /openapi.json.
    app = FastAPI(
        title="Genobase intake",
        version="0.1.0",
        description="Register genome sequence uploads and follow them through the pipeline.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=problems.operation_id,
    )
    app.state.deps = deps
    problems.install(app)  # every error answer an RFC 9457 problem, declared in /openapi.json
    app.add_middleware(BodyLimit, max_bytes=MAX_REQUEST_BYTES, max_json_depth=MAX_JSON_DEPTH)
    app.add_middleware(AuthBeforeBody, authenticate=deps.authenticate)
    app.add_middleware(metrics.HttpMetrics)
    app.add_middleware(PageHeaders, store_origin=settings.presign_endpoint)
    app.add_middleware(RequestId)  # outermost: every answer, refusals included, carries its id
    app.include_router(listing_router)  # first: /uploads/lookup before /uploads/{upload_id}
    app.include_router(router)
    app.include_router(health)
    app.include_router(records.router)
    # The upload page: static, public (it holds nothing; every call it makes needs the user's key).
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    return app

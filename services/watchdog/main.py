"""Entry point ``genobase-watchdog``: wires the adapters and sweeps for stalled uploads periodically."""

from __future__ import annotations

import signal
import threading

import structlog

from services.watchdog.handler import WatchdogDeps, sweep
from shared.postgres.connection import Database
from shared.postgres.uploads import PostgresUploads
from shared.rabbitmq.broker import Publisher
from shared.runtime import metrics
from shared.runtime.consumer_metrics import record_restarts
from shared.runtime.logs import configure_logging
from shared.runtime.settings import get_settings
from shared.s3.store import ObjectStore

log = structlog.get_logger()


def main() -> None:
    settings = get_settings()
    configure_logging("watchdog", settings.log_level, settings.log_json, settings.replica)
    metrics.serve(settings)
    record_restarts("watchdog")  # how often its supervisor has had to start it again
    uploads = PostgresUploads(Database(settings))
    publisher = Publisher(settings)
    deps = WatchdogDeps(settings, uploads, publisher, ObjectStore(settings))
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    log.info("watching", stall_after=settings.stall_after_seconds, interval=settings.watchdog_interval_seconds)
    while not stopping.is_set():
        try:
            sweep(deps)
        except Exception:
            # Postgres or RabbitMQ away: the adapters reconnect on the next pass.
            log.exception("sweep failed; retrying at the next interval")
            uploads.reset()
            publisher.close()
        stopping.wait(settings.watchdog_interval_seconds)
    publisher.close()
    uploads.reset()


if __name__ == "__main__":
    main()

"""Entry point ``genobase-watchdog``: wires the adapters, sweeps for stalled uploads periodically and
runs the reconciler's passes when each is due (services/watchdog/reconcile.py)."""

from __future__ import annotations

import signal
import threading
import time

import structlog

from services.watchdog.handler import WatchdogDeps, sweep
from services.watchdog.reconcile import ReconcileDeps, Reconciler
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
    store = ObjectStore(settings)
    deps = WatchdogDeps(settings, uploads, publisher, store)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    reconciler = Reconciler(ReconcileDeps(settings, uploads, store, publisher)) if settings.reconcile_enabled else None
    log.info(
        "watching",
        stall_after=settings.stall_after_seconds,
        interval=settings.watchdog_interval_seconds,
        reconcile=reconciler.schedule.describe() if reconciler else None,
    )
    next_sweep = 0.0
    while not stopping.is_set():
        if time.monotonic() >= next_sweep:
            next_sweep = time.monotonic() + settings.watchdog_interval_seconds
            try:
                sweep(deps)
            except Exception:
                # Postgres or RabbitMQ away: the adapters reconnect on the next pass.
                log.exception("sweep failed; retrying at the next interval")
                uploads.reset()
                publisher.close()
        due = [next_sweep]
        if reconciler is not None:
            try:
                due.append(reconciler.run_due())
            except Exception:
                log.exception("reconciler pass failed; retrying in a second")
                uploads.reset()
                publisher.close()
                due.append(time.monotonic() + 1)
        stopping.wait(max(min(due) - time.monotonic(), 0.05))
    publisher.close()
    uploads.reset()


if __name__ == "__main__":
    main()

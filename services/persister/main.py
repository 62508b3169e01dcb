"""Entry point ``genobase-persister``: wires the adapters and consumes the persist queue."""

from __future__ import annotations

import functools

from services.persister.handler import PersisterDeps, give_up, handle_persist
from shared.domain.stages import PERSIST
from shared.postgres.connection import Database
from shared.postgres.uploads import PostgresUploads
from shared.rabbitmq.broker import Consumer, Publisher
from shared.runtime import metrics
from shared.runtime.consumer_metrics import record_restarts
from shared.runtime.logs import configure_logging
from shared.runtime.settings import get_settings
from shared.runtime.tuning import keep_freed_buffers, relax_gc


def main() -> None:
    keep_freed_buffers()  # message-sized buffers reused, not faulted in again per batch
    settings = get_settings()
    configure_logging("persister", settings.log_level, settings.log_json, settings.replica)
    metrics.serve(settings)
    record_restarts("persister")  # how often its supervisor has had to start it again
    deps = PersisterDeps(PostgresUploads(Database(settings)), Publisher(settings))
    consumer = Consumer(
        settings,
        PERSIST,
        functools.partial(handle_persist, deps=deps),
        functools.partial(give_up, deps=deps),
    )
    relax_gc()  # wired: the records, rows and batches it allocates from now on hold no cycles
    consumer.run()


if __name__ == "__main__":
    main()

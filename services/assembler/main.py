"""Entry point ``genobase-assembler``: wires the adapters and consumes the assemble queue."""

from __future__ import annotations

import functools

from services.assembler.handler import AssemblerDeps, give_up, handle_assemble
from shared.domain.stages import ASSEMBLE
from shared.parsing.native import share_malloc_arena
from shared.postgres.connection import Database
from shared.postgres.uploads import PostgresUploads
from shared.rabbitmq.broker import Consumer
from shared.runtime import metrics
from shared.runtime.consumer_metrics import record_restarts
from shared.runtime.logs import configure_logging
from shared.runtime.settings import get_settings
from shared.runtime.tuning import keep_freed_buffers, relax_gc
from shared.s3.store import ObjectStore


def main() -> None:
    keep_freed_buffers()  # message-sized buffers reused, not faulted in again per batch
    share_malloc_arena()  # before any thread: the worker, part uploader and sorting threads share one
    settings = get_settings()
    configure_logging("assembler", settings.log_level, settings.log_json, settings.replica)
    metrics.serve(settings)
    record_restarts("assembler")  # how often its supervisor has had to start it again
    deps = AssemblerDeps(settings, PostgresUploads(Database(settings)), ObjectStore(settings))
    consumer = Consumer(
        settings,
        ASSEMBLE,
        functools.partial(handle_assemble, deps=deps),
        functools.partial(give_up, deps=deps),
    )
    relax_gc()  # wired: the records, rows and batches it allocates from now on hold no cycles
    consumer.run()


if __name__ == "__main__":
    main()

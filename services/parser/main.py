"""Entry point ``genobase-parser``: wires the adapters and consumes the parse queue."""

from __future__ import annotations

import functools

from services.parser.handler import ParserDeps, give_up, handle_parse
from shared.domain.stages import PARSE
from shared.parsing.native import share_malloc_arena
from shared.postgres.connection import Database
from shared.postgres.uploads import PostgresUploads
from shared.rabbitmq.broker import Consumer, PipelinedPublisher
from shared.runtime import metrics
from shared.runtime.consumer_metrics import record_restarts
from shared.runtime.logs import configure_logging
from shared.runtime.settings import get_settings
from shared.runtime.tuning import keep_freed_buffers, relax_gc
from shared.s3.store import ObjectStore


def main() -> None:
    keep_freed_buffers()  # message-sized buffers reused, not faulted in again per batch
    share_malloc_arena()  # before any thread: the prefetch, publisher and engine threads share one
    settings = get_settings()
    configure_logging("parser", settings.log_level, settings.log_json, settings.replica)
    metrics.serve(settings)
    record_restarts("parser")  # how often its supervisor has had to start it again
    deps = ParserDeps(
        settings, PostgresUploads(Database(settings)), ObjectStore(settings), PipelinedPublisher(settings)
    )
    consumer = Consumer(
        settings,
        PARSE,
        functools.partial(handle_parse, deps=deps),
        functools.partial(give_up, deps=deps),
    )
    relax_gc()  # wired: the records, rows and batches it allocates from now on hold no cycles
    consumer.run()


if __name__ == "__main__":
    main()

"""structlog set-up shared by every process, so every line is one JSON object with the same keys.

``service`` is added to every line by a processor, so lines logged on any thread carry it (a
contextvar bound on the main thread would not reach the consumer's worker thread). A handler binds
``upload_id`` and ``generation`` as contextvars on the thread it runs on; ``carry_context`` hands
them to work it starts on other threads.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import structlog

P = ParamSpec("P")
R = TypeVar("R")


def configure_logging(service: str, level: str = "INFO", json: bool = True, replica: int = 1) -> None:
    logging.basicConfig(stream=sys.stderr, level=level.upper(), format="%(message)s")
    for noisy in ("pika", "botocore", "urllib3", "boto3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )

    def add_service(_: object, __: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
        event.setdefault("service", service)
        event.setdefault("replica", replica)
        return event

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_service,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def bind_upload(upload_id: object, generation: int) -> None:
    """Every later line of this thread's handler names the upload and generation it works on."""
    structlog.contextvars.bind_contextvars(upload_id=str(upload_id), generation=generation)


def carry_context(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` run with this thread's log context (upload id, generation), on whichever thread calls it."""
    context = contextvars.copy_context()

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return context.copy().run(fn, *args, **kwargs)

    return run

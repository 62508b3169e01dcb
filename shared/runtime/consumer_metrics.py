"""Metrics of the queue consumers' own defences and of the supervisor that restarts services.

Kept apart from ``shared/runtime/metrics.py`` (the pipeline's work) because these count what went wrong
around the work: messages refused before any handler saw them, and processes that died.
Label values are bounded sets: stage names and the ``Refusal`` reasons below.
"""

from __future__ import annotations

import os
from enum import StrEnum

import structlog
from prometheus_client import Counter, Gauge

log = structlog.get_logger()

# The supervisor (``genobase/stack.py``) passes each process it starts how many times it has
# restarted that service so far: a counter cannot survive its process, the supervisor can.
RESTARTS_SETTING = "GENOBASE_PROCESS_RESTARTS"


class Refusal(StrEnum):
    """Why a consumer refused a message on arrival (the label of ``REFUSED``)."""

    BAD_HEADER = "bad_header"  # a broker header of the wrong type, or one only the broker may set
    TOO_LARGE = "too_large"  # above the stage's body limit: never decoded
    INVALID = "invalid"  # not a message of the queue: not JSON, wrong fields, wrong origin
    INTERNAL = "internal"  # the consumer itself failed around the handler: settled, not lost


REFUSED = Counter(
    "genobase_messages_refused",
    "Messages a consumer refused before (or around) its handler and dead-lettered at once, by reason",
    ["stage", "reason"],
)
PROCESS_RESTARTS = Gauge(
    "genobase_process_restarts",
    "Times the supervisor restarted this service after it died (0 for its first process)",
    ["service"],
)


def refused(stage: str, reason: Refusal) -> None:
    REFUSED.labels(stage, reason.value).inc()


def record_restarts(service: str) -> int:
    """Publish the restart count the supervisor gave this process; returns it (0 when none was given)."""
    text = os.environ.get(RESTARTS_SETTING, "0")
    count = int(text) if text.isdigit() else 0
    PROCESS_RESTARTS.labels(service).set(count)
    if count:
        log.warning("restarted by the supervisor", restarts=count)
    return count

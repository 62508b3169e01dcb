"""Stuck work is visible and picked up: an upload whose message was lost is reported as stalled,
and the watchdog issues the message again.

The loss is made real: the parser is SIGKILLed in the middle of a file and the notification it
held, returned to the queue by the broker, is purged before a parser can take it again. Nothing in
the pipeline would ever touch that upload again but the watchdog (stopped here until the status
has shown the stall, so that the test can see both halves).
"""

from __future__ import annotations

import signal

import pytest

from shared.rabbitmq.broker import connect
from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings
from tests.conftest import STALL_AFTER_SECONDS, Pipeline
from tests.faults.conftest import FaultLedger
from tests.helpers import assert_exact_result, many_records, record_count, wait_until

pytestmark = pytest.mark.e2e


def purge_returned_message(settings: Settings, queue: str, timeout: float = 30) -> None:
    """Purge ``queue`` once the broker has put the dead consumer's message back in it."""
    connection = connect(settings)
    try:
        channel = connection.channel()
        poll_until(
            lambda: channel.queue_purge(queue).method.message_count > 0,
            timeout=timeout,
            interval=0.05,
            what=f"the killed consumer's message back in {queue} (and purged)",
        )
    finally:
        connection.close()


def test_lost_message_is_reported_stalled_and_picked_up(
    pipeline: Pipeline, settings: Settings, ledger: FaultLedger
) -> None:
    pipeline.processes.stop("watchdog", sig=signal.SIGKILL)
    try:
        data = many_records(30, seed=31)
        ticket = ledger.upload(pipeline, "stalled.fasta", data, "done", record_count(data))
        wait_until(pipeline, ticket["id"], lambda s: s["state"] == "parsing" and s["progress"]["records_done"] > 0)
        fault = "parser SIGKILLed and its message lost"
        ledger.inject(fault)
        pipeline.processes.stop("parser", sig=signal.SIGKILL)
        purge_returned_message(settings, settings.queue("parse"))
        pipeline.processes.start("parser")

        status = pipeline.status(ticket["id"])
        assert status["stall"]["stalled"] is False
        stalled = wait_until(pipeline, ticket["id"], lambda s: s["stall"]["stalled"], timeout=STALL_AFTER_SECONDS * 3)
        assert stalled["state"] == "parsing"
        assert stalled["stall"]["idle_seconds"] >= STALL_AFTER_SECONDS
        assert stalled["stall"]["pickups"] == 0
    finally:
        pipeline.processes.start("watchdog")
    assert_exact_result(pipeline, settings, ticket["id"], data)
    done = pipeline.status(ticket["id"])
    assert done["stall"]["pickups"] >= 1
    assert done["stall"]["stalled"] is False
    ledger.survive(fault)

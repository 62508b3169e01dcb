"""The RabbitMQ adapter against the run's real broker, on a topology of its own."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator

import pika
import pytest

from shared.domain.messages import AssembleRequested, ParseCompleted, RecordColumns, SequenceBatch, ShardRequested
from shared.domain.stages import ASSEMBLE, PARSE, PERSIST, STAGE_NAMES, GiveUp, PermanentFailure
from shared.domain.uploads import ObjectCreated
from shared.rabbitmq.broker import RECV_BYTES, Consumer, Publisher, connect, declare_topology
from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings
from tests.builders import record, sequence_batch

pytestmark = pytest.mark.integration


@pytest.fixture
def isolated(settings: Settings) -> Iterator[Settings]:
    """Same broker and vhost, but exchanges and queues no service consumes from."""
    token = uuid.uuid4().hex[:8]
    own = settings.model_copy(
        update={
            "queue_prefix": f"itest-{token}",
            "events_exchange": f"itest-{token}.events",
            "pipeline_exchange": f"itest-{token}.pipeline",
            "dead_letter_exchange": f"itest-{token}.dead",
            "max_deliveries": 2,
        }
    )
    connection = connect(own)
    declare_topology(connection.channel(), own)
    connection.close()
    yield own
    connection = connect(own)
    channel = connection.channel()
    for stage in STAGE_NAMES:
        channel.queue_delete(own.queue(stage))
        channel.queue_delete(own.queue(stage) + ".dead")
    for exchange in (own.events_exchange, own.pipeline_exchange, own.dead_letter_exchange):
        channel.exchange_delete(exchange)
    connection.close()


def _depth(settings: Settings, queue: str) -> int:
    connection = connect(settings)
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def _wait(predicate: object, timeout: float = 30) -> None:
    poll_until(lambda: bool(predicate()), timeout=timeout, interval=0.1, what="the condition")  # type: ignore[operator]


def _serve_until(consumer: Consumer, predicate: object, timeout: float = 30) -> None:
    """Run the consumer on a thread until ``predicate`` holds, then stop it and wait for it."""
    thread = threading.Thread(target=consumer.serve, daemon=True)
    thread.start()
    try:
        _wait(predicate, timeout)
    finally:
        consumer.stop()
        thread.join(10)


def test_publish_confirmed_consume_and_ack(isolated: Settings) -> None:
    seen: list[AssembleRequested] = []
    consumer = Consumer(isolated, ASSEMBLE, seen.append, lambda message, reason: None)
    publisher = Publisher(isolated)
    message = AssembleRequested(upload_id=uuid.uuid4(), generation=1)
    publisher.publish(message)
    _serve_until(consumer, lambda: seen)
    assert seen == [message]  # decoded once, by the stage, before the handler saw it
    assert _depth(isolated, isolated.queue("assemble")) == 0  # acknowledged, not requeued
    publisher.close()


def test_unroutable_message_is_an_error(isolated: Settings) -> None:
    publisher = Publisher(isolated)
    with pytest.raises(pika.exceptions.UnroutableError):
        publisher.publish(AssembleRequested(upload_id=uuid.uuid4(), generation=1), routing_key="nowhere")
    publisher.close()


def test_failing_message_is_retried_then_dead_lettered(isolated: Settings) -> None:
    attempts: list[SequenceBatch | ParseCompleted] = []
    gave_up: list[GiveUp] = []
    done = ParseCompleted(
        upload_id=uuid.uuid4(), generation=1, batch_count=0, record_count=0, source_bytes=0, format="x"
    )

    def handler(message: SequenceBatch | ParseCompleted) -> None:
        attempts.append(message)
        raise RuntimeError("database on fire")

    consumer = Consumer(isolated, PERSIST, handler, lambda message, reason: gave_up.append(reason))
    Publisher(isolated).publish(done)
    _serve_until(consumer, lambda: gave_up, timeout=60)
    assert attempts == [done] * isolated.max_deliveries
    # the upload is told a safe reason and an error id; the exception's text stays in the log
    assert "database on fire" not in gave_up[0].reason and len(gave_up[0].error_id) == 16
    _wait(lambda: _depth(isolated, isolated.queue("persist") + ".dead") == 1)
    assert _depth(isolated, isolated.queue("persist")) == 0


def test_permanent_failure_is_dead_lettered_at_once(isolated: Settings) -> None:
    attempts: list[list[ObjectCreated]] = []
    gave_up: list[GiveUp] = []

    def handler(events: list[ObjectCreated]) -> None:
        attempts.append(events)
        raise PermanentFailure("cannot be helped")

    consumer = Consumer(isolated, PARSE, handler, lambda events, reason: gave_up.append(reason))
    Publisher(isolated).publish_raw(isolated.events_exchange, isolated.events_routing_key, b'{"Records": []}')
    _serve_until(consumer, lambda: _depth(isolated, isolated.queue("parse") + ".dead") == 1)
    assert attempts == [[]] and len(gave_up) == 1 and "cannot be helped" not in gave_up[0].reason


def test_body_that_does_not_decode_is_dead_lettered_without_reaching_the_handler(isolated: Settings) -> None:
    attempts: list[list[ObjectCreated]] = []
    gave_up: list[GiveUp] = []
    consumer = Consumer(isolated, PARSE, attempts.append, lambda events, reason: gave_up.append(reason))
    Publisher(isolated).publish_raw(isolated.events_exchange, isolated.events_routing_key, b"garbage")
    _serve_until(consumer, lambda: _depth(isolated, isolated.queue("parse") + ".dead") == 1)
    assert attempts == [] and gave_up == []


def test_a_shard_request_is_taken_from_the_pipeline_exchange_only(isolated: Settings) -> None:
    """The parse queue is reached from the events exchange too, where the object store's AMQP user
    may publish: a shard request arriving that way is dead-lettered unread; the parsers' own is taken."""
    handled: list[object] = []
    consumer = Consumer(isolated, PARSE, handled.append, lambda message, reason: None)
    request = ShardRequested(upload_id=uuid.uuid4(), generation=1, shard=1)
    publisher = Publisher(isolated)
    publisher.publish_raw(isolated.events_exchange, isolated.events_routing_key, request.to_bytes())
    publisher.publish(request)  # on the pipeline exchange, as a parser sends it
    publisher.close()
    _serve_until(consumer, lambda: _depth(isolated, isolated.queue("parse") + ".dead") == 1 and handled == [request])
    assert handled == [request] and _depth(isolated, isolated.queue("parse")) == 0


def test_a_batch_whose_record_ordinals_skip_is_dead_lettered_unread(isolated: Settings) -> None:
    """A batch claiming records far past the ones before it (a hostile or broken publisher on the
    pipeline exchange) never reaches the persister's handler: its ``[records_from, records_through)``
    would not name its own records, which the assembler relies on to read a window at once."""
    handled: list[object] = []
    consumer = Consumer(isolated, PERSIST, handled.append, lambda message, reason: None)
    upload = uuid.uuid4()
    good = sequence_batch(upload, 1, 0, [record(0, residues="AC", length=2), record(1, residues="GT", length=2)])
    hostile = good.model_copy(
        update={
            "batch_no": 1,
            "records": RecordColumns.from_rows(
                [record(2, residues="AC", length=2), record(10**9, residues="GT", length=2)]
            ),
        }
    )
    publisher = Publisher(isolated)
    publisher.publish(hostile)
    publisher.publish(good)
    publisher.close()
    _serve_until(consumer, lambda: _depth(isolated, isolated.queue("persist") + ".dead") == 1 and handled == [good])
    assert handled == [good] and _depth(isolated, isolated.queue("persist")) == 0


def test_a_large_body_arrives_whole_in_frame_sized_reads(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connections of ``connect`` read a frame's worth at a time (``RECV_BYTES``), not pika's
    4 KiB: a 4 MiB batch in a few dozen reads, and byte for byte the body that was sent."""
    from pika.adapters.utils.io_services_utils import _AsyncTransportBase

    reads: list[int] = []
    recv = _AsyncTransportBase._sigint_safe_recv

    def counting(sock: object, max_bytes: int) -> bytes:
        reads.append(max_bytes)
        return recv(sock, max_bytes)  # type: ignore[no-any-return]

    monkeypatch.setattr(_AsyncTransportBase, "_sigint_safe_recv", staticmethod(counting))
    body = random.Random(7).randbytes(4 * 1024 * 1024)
    connection = connect(settings)
    try:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue, body)
        reads.clear()
        method, _, received = channel.basic_get(queue, auto_ack=True)
        while method is None:
            connection.sleep(0.05)
            method, _, received = channel.basic_get(queue, auto_ack=True)
    finally:
        connection.close()
    assert received == body
    assert set(reads) == {RECV_BYTES}
    # 32 frames of 128 KiB; at 4 KiB a read it took over a thousand.
    assert len(reads) < 4 * len(body) // RECV_BYTES

"""The broker's publishing ports (``Publisher``, ``PipelinedPublisher``): the unit tests'
``FakePublisher`` and the RabbitMQ adapters pass the same tests: every message published arrives,
whole and in order, and ``flush`` returns once they all have.

The adapters publish to an exchange of the test's own on the run's broker (bound to a queue of
its own), so the running pipeline never sees these messages.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from shared.domain.messages import AssembleRequested, Message, ShardRequested
from shared.domain.ports import PipelinedPublisher, Publisher
from shared.rabbitmq import broker
from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings
from tests.unit.fakes import FakePublisher

ROUTING_KEYS = ("parse", "persist", "assemble")
KINDS: dict[str, type[Message]] = {"parse": ShardRequested, "assemble": AssembleRequested}


@dataclass
class PublisherSide:
    publisher: Publisher
    pipelined: PipelinedPublisher
    arrived: Callable[[int], list[Message]]  # the messages that arrived, once there are this many


@pytest.fixture(params=["fake", "rabbitmq"])
def side(request: pytest.FixtureRequest) -> Iterator[PublisherSide]:
    if request.param == "fake":
        fake = FakePublisher()
        yield PublisherSide(fake, fake, lambda count: list(fake.messages))
        return
    settings: Settings = request.getfixturevalue("settings")
    exchange = f"contract-{uuid.uuid4().hex[:12]}"
    own = settings.model_copy(update={"pipeline_exchange": exchange})
    connection = broker.connect(own)
    channel = connection.channel()
    channel.exchange_declare(exchange, exchange_type="direct", auto_delete=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    for routing_key in ROUTING_KEYS:
        channel.queue_bind(queue, exchange, routing_key=routing_key)
    received: list[Message] = []

    def arrived(count: int) -> list[Message]:
        def drained() -> bool:
            while (got := channel.basic_get(queue, auto_ack=True))[0] is not None:
                method, _properties, body = got
                received.append(KINDS[method.routing_key].model_validate_json(body))
            return len(received) >= count

        poll_until(drained, timeout=30, interval=0.05, what=f"{count} messages on {queue}")
        return list(received)

    publisher, pipelined = broker.Publisher(own), broker.PipelinedPublisher(own, depth=4)
    try:
        yield PublisherSide(publisher, pipelined, arrived)
    finally:
        pipelined.close()
        publisher.close()
        channel.exchange_delete(exchange)
        connection.close()


def _messages(count: int) -> list[Message]:
    upload = uuid.uuid4()
    return [
        ShardRequested(upload_id=upload, generation=1, shard=n)
        if n % 2
        else AssembleRequested(upload_id=upload, generation=n)
        for n in range(count)
    ]


def test_a_confirmed_publish_arrives_whole(side: PublisherSide) -> None:
    message = AssembleRequested(upload_id=uuid.uuid4(), generation=3)
    side.publisher.publish(message)
    assert side.arrived(1) == [message]


def test_pipelined_messages_arrive_in_order_once_flushed(side: PublisherSide) -> None:
    messages = _messages(12)
    for message in messages:
        side.pipelined.publish(message)
    side.pipelined.flush()
    assert side.arrived(len(messages)) == messages

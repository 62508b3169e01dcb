"""The consumer against forged deliveries, with a stand-in channel: every one is settled, none stops it.

The same attacks against the real broker and services are in tests/security/test_forged_messages.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import orjson
import pika
import pytest
from prometheus_client import REGISTRY

from shared.domain.messages import AssembleRequested, ShardRequested
from shared.domain.stages import ASSEMBLE, PARSE, Stage
from shared.rabbitmq import broker
from shared.runtime.settings import Settings

SETTINGS = Settings(max_deliveries=3)


class FakeChannel:
    def __init__(self) -> None:
        self.is_open = True
        self.acks: list[int] = []
        self.nacks: list[tuple[int, bool]] = []
        self.published: list[dict[str, Any]] = []

    def basic_ack(self, tag: int) -> None:
        self.acks.append(tag)

    def basic_nack(self, tag: int, requeue: bool) -> None:
        self.nacks.append((tag, requeue))

    def basic_publish(self, exchange: str, routing_key: str, body: bytes, properties: pika.BasicProperties) -> None:
        self.published.append(
            {"exchange": exchange, "routing_key": routing_key, "body": body, "headers": properties.headers}
        )


class FakeConnection:
    """Runs what the worker hands back at once, as pika's loop would on its next turn."""

    def add_callback_threadsafe(self, callback: Callable[[], None]) -> None:
        callback()


def refused_count(stage: str, reason: str) -> float:
    return REGISTRY.get_sample_value("genobase_messages_refused_total", {"stage": stage, "reason": reason}) or 0.0


def deliver(
    stage: Stage[Any],
    body: bytes,
    headers: object = None,
    *,
    exchange: str = SETTINGS.events_exchange,
    redelivered: bool = False,
    handler: Callable[[Any], None] | None = None,
    consumer_hook: Callable[[broker.Consumer[Any]], None] | None = None,
) -> tuple[FakeChannel, list[Any]]:
    """Hand one delivery to a consumer's callback and wait for its worker; returns the channel and
    what the handler saw."""
    handled: list[Any] = []
    consumer: broker.Consumer[Any] = broker.Consumer(
        SETTINGS, stage, handler or handled.append, lambda message, why: None
    )
    if consumer_hook is not None:
        consumer_hook(consumer)
    channel = FakeChannel()
    method = SimpleNamespace(delivery_tag=7, exchange=exchange, redelivered=redelivered)
    properties = pika.BasicProperties(headers=headers)
    consumer._on_message(FakeConnection(), channel, method, properties, body)
    consumer._worker.shutdown(wait=True)
    return channel, handled


def event(**object_fields: Any) -> bytes:
    obj = {"key": "a/b.fa", "size": 4, "eTag": "e"} | object_fields
    record = {
        "eventSource": "ceph:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "b"}, "object": obj},
    }
    return orjson.dumps({"Records": [record]})


def assert_refused(channel: FakeChannel, reason: str) -> dict[str, Any]:
    """Acknowledged once, and published to the dead-letter exchange with clean headers naming ``reason``."""
    assert channel.acks == [7] and channel.nacks == []
    (letter,) = channel.published
    assert letter["exchange"] == SETTINGS.dead_letter_exchange and letter["routing_key"] == SETTINGS.queue("parse")
    assert letter["headers"][broker.REFUSED_HEADER] == reason
    assert set(letter["headers"]) == {broker.REFUSED_HEADER, broker.REFUSED_DETAIL_HEADER, broker.ORIGIN_HEADER}
    return letter


@pytest.mark.parametrize("count", ["abc", b"3", 1.5, True, [1], {"n": 1}])
def test_a_delivery_count_that_is_not_a_number_is_refused_not_raised(count: object) -> None:
    before = refused_count("parse", "bad_header")
    channel, handled = deliver(PARSE, event(), {"x-delivery-count": count})
    assert handled == []
    assert_refused(channel, "bad_header")
    assert refused_count("parse", "bad_header") == before + 1


@pytest.mark.parametrize(
    "body",
    [
        event(size="twelve"),
        event(size="12"),
        event(size=-1),
        event(size=True),
        event(size=1.5),
        event(size={"n": 1}),
        event(key=12),
        event(key=["a"]),
        event(key=None),
        event(eTag=5),
        event(sequencer=[1]),
        event(key="k" * 5000),
        b"not json",
        b"\xff\xfe",
        b"[" * 5000,
        orjson.dumps({"Records": [{"eventName": 7}]}),
        orjson.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": []}]}),
        orjson.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": 3}, "object": {}}}]}),
    ],
)
def test_a_malformed_notification_is_refused_and_settled(body: bytes) -> None:
    before = refused_count("parse", "invalid")
    channel, handled = deliver(PARSE, body)
    assert handled == []
    assert_refused(channel, "invalid")
    assert refused_count("parse", "invalid") == before + 1


def test_an_enormous_body_is_refused_before_it_is_decoded() -> None:
    body = b'{"Records": [' + b" " * (PARSE.max_body_bytes(SETTINGS) + 1) + b"]}"
    channel, handled = deliver(PARSE, body)
    letter = assert_refused(channel, "too_large")
    assert handled == [] and len(letter["body"]) == broker.REFUSED_BODY_KEPT_BYTES  # not stored again whole


@pytest.mark.parametrize(
    "headers",
    [
        {"x-death": "zz"},
        {"x-death": [{"exchange": SETTINGS.pipeline_exchange, "queue": "genobase.parse", "reason": "rejected"}]},
        {"x-first-death-exchange": SETTINGS.pipeline_exchange},
        {broker.REFUSED_HEADER: "nothing"},
        {broker.ORIGIN_HEADER: SETTINGS.pipeline_exchange},
    ],
)
def test_headers_only_the_broker_writes_are_refused_on_arrival(headers: dict[str, object]) -> None:
    """A forged x-death would be kept by the broker when it dead-letters the message, and could
    then pass for the pipeline's own: such a message never gets that far."""
    channel, handled = deliver(PARSE, event(), headers)
    assert handled == []
    assert_refused(channel, "bad_header")


def test_a_forged_count_on_a_first_delivery_counts_for_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Claiming to be the last allowed delivery must not make one failure fail the upload."""
    gave_up: list[object] = []

    def failing(message: object) -> None:
        raise RuntimeError("transient")

    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # the retry backoff
    consumer: broker.Consumer[Any] = broker.Consumer(SETTINGS, PARSE, failing, lambda m, why: gave_up.append(why))
    channel = FakeChannel()
    method = SimpleNamespace(delivery_tag=7, exchange=SETTINGS.events_exchange, redelivered=False)
    properties = pika.BasicProperties(headers={"x-delivery-count": 99})
    consumer._on_message(FakeConnection(), channel, method, properties, event())
    consumer._worker.shutdown(wait=True)
    assert channel.nacks == [(7, True)] and gave_up == []  # retried, not given up
    assert broker.delivery_count({"x-delivery-count": 99}, redelivered=True, max_deliveries=3) == 3


def test_a_shard_request_from_the_events_exchange_is_refused_with_its_origin() -> None:
    request = ShardRequested(upload_id=uuid.uuid4(), generation=1, shard=0).to_bytes()
    channel, handled = deliver(PARSE, request, exchange=SETTINGS.events_exchange)
    letter = assert_refused(channel, "invalid")
    assert handled == [] and letter["headers"][broker.ORIGIN_HEADER] == SETTINGS.events_exchange
    channel, handled = deliver(PARSE, request, exchange=SETTINGS.pipeline_exchange)
    assert channel.acks == [7] and channel.published == [] and len(handled) == 1


def test_a_failure_around_the_handler_still_settles_the_message() -> None:
    """Whatever goes wrong in the worker, the message is settled: no prefetch slot is lost."""

    def broken(consumer: broker.Consumer[Any]) -> None:
        def explode(body: bytes, previous: int, from_pipeline: bool) -> broker.Outcome:
            raise ValueError("a bug")

        consumer._handle = explode  # type: ignore[method-assign]

    before = refused_count("assemble", "internal")
    body = AssembleRequested(upload_id=uuid.uuid4(), generation=1).to_bytes()
    channel, _ = deliver(ASSEMBLE, body, exchange=SETTINGS.pipeline_exchange, consumer_hook=broken)
    assert channel.acks == [7] and channel.published[0]["headers"][broker.REFUSED_HEADER] == "internal"
    assert refused_count("assemble", "internal") == before + 1


class Escaping(BaseException):
    """Not an Exception: gets past ``_work``'s own guard, as nothing should."""


def test_the_futures_done_callback_settles_what_escapes_the_worker() -> None:
    def escaping(consumer: broker.Consumer[Any]) -> None:
        def explode(body: bytes, previous: int, from_pipeline: bool) -> broker.Outcome:
            raise Escaping

        consumer._handle = explode  # type: ignore[method-assign]

    body = AssembleRequested(upload_id=uuid.uuid4(), generation=1).to_bytes()
    channel, _ = deliver(ASSEMBLE, body, exchange=SETTINGS.pipeline_exchange, consumer_hook=escaping)
    assert channel.acks == [7] and channel.published[0]["headers"][broker.REFUSED_HEADER] == "internal"


def test_settling_on_a_closed_channel_raises_nothing() -> None:
    channel = FakeChannel()
    channel.is_open = False
    consumer: broker.Consumer[Any] = broker.Consumer(SETTINGS, PARSE, lambda m: None, lambda m, w: None)
    consumer._settle(channel, 1, "ack", b"", "")
    assert channel.acks == []


@pytest.mark.parametrize(
    "headers",
    [None, {"x-death": "zz"}, {"x-death": ["zz"]}, {"x-death": []}, {"x-death": [{"count": [1]}]}, {"x-death": 3}],
)
def test_reading_a_dead_letter_never_fails(headers: object) -> None:
    letter = broker.read_dead_letter("parse", pika.BasicProperties(headers=headers), b"{}")
    assert letter.refused is None and isinstance(letter.reason, str)


def test_a_refused_dead_letter_says_why_and_where_from() -> None:
    headers = {broker.REFUSED_HEADER: "too_large", broker.REFUSED_DETAIL_HEADER: "big", broker.ORIGIN_HEADER: "ev"}
    letter = broker.read_dead_letter("parse", pika.BasicProperties(headers=headers), b"")
    assert (letter.refused, letter.origin) == ("too_large", "ev") and "too_large" in letter.reason

"""Forged messages on the queues, against the running stack: none stops a consumer.

The attacker holds the object store's broker user (``genobase-rgw``: it may publish to the events
exchange and nothing else) and publishes what a store never sends: sizes and keys of the wrong
type, headers only the broker may set, bodies that are not JSON or far too large. Each is refused
and dead-lettered with its reason, counted, and a genuine upload still completes; a forged dead
letter gains nothing by ``genobase dead-letters --replay``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import pika
import pytest

from genobase import dead_letters, stack
from shared.domain.messages import ShardRequested
from shared.domain.stages import STAGE_NAMES
from shared.rabbitmq.broker import list_dead_letters, take_dead_letters
from shared.runtime.settings import Settings
from tests.conftest import Pipeline
from tests.e2e.test_metrics import Samples, scrape, value
from tests.e2e.test_pipeline import generated_fasta, rgw_style_event, upload_via_intake
from tests.stack import NativeProvider, StackProvider

pytestmark = pytest.mark.e2e


class RgwPublisher:
    """A broker user with exactly the object store's permissions, publishing with confirms."""

    def __init__(self, settings: Settings, user: str, password: str) -> None:
        url = urlsplit(settings.amqp_url.get_secret_value())
        parameters = pika.ConnectionParameters(
            host=url.hostname or "127.0.0.1",
            port=url.port or 5672,
            virtual_host=unquote(url.path.lstrip("/")),
            credentials=pika.PlainCredentials(user, password),
            connection_attempts=1,
            heartbeat=0,  # idle for minutes between a test's publishing and the fixture's end
        )
        self.settings = settings
        self.connection = pika.BlockingConnection(parameters)
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()

    def publish(self, body: bytes, headers: dict[str, Any] | None = None) -> None:
        self.channel.basic_publish(
            self.settings.events_exchange,
            self.settings.events_routing_key,
            body,
            pika.BasicProperties(headers=headers, delivery_mode=pika.DeliveryMode.Persistent),
            mandatory=True,
        )

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()


@pytest.fixture(scope="module")
def rgw_publisher(stack_provider: StackProvider, settings: Settings) -> Iterator[RgwPublisher]:
    """The store's broker user as ``genobase up`` makes it (``stack.rgw_publisher_permissions``)."""
    if not isinstance(stack_provider, NativeProvider):
        pytest.skip("the object store's own broker user is made by the native stack")
    user, password = f"forger-{uuid.uuid4().hex[:8]}", stack.new_secret()
    vhost = unquote(urlsplit(settings.amqp_url.get_secret_value()).path.lstrip("/"))
    stack.ensure_rabbitmq_user(user, password, vhost, *stack.rgw_publisher_permissions(settings.events_exchange))
    publisher = RgwPublisher(settings, user, password)
    try:
        yield publisher
    finally:
        publisher.close()
        stack.delete_rabbitmq_user(user)


def creation_event(**object_fields: Any) -> bytes:
    body = orjson.loads(rgw_style_event("forged-bucket", "forged/key.fa", 10, "etag"))
    body["Records"][0]["s3"]["object"].update(object_fields)
    return orjson.dumps(body)


def clear_dead_letters(settings: Settings) -> list[Any]:
    """Take every dead letter off (so the other tests find the queues empty); returns them."""
    taken: list[Any] = []
    for stage in STAGE_NAMES:
        take_dead_letters(settings, stage, taken.append)
    return taken


def genuine_upload_completes(pipeline: Pipeline, name: str, timeout: float = 90) -> None:
    data = generated_fasta(5, seed=len(name))
    ticket = upload_via_intake(pipeline, name, data)
    status = pipeline.wait_for(ticket["id"], timeout=timeout)
    assert status["state"] == "done", (status, pipeline.logs())


def refused_since(pipeline: Pipeline, before: Samples) -> dict[str, float]:
    """The parser's refusals by reason since ``before`` (x-delivery-count's counted with bad_header,
    at most once: RabbitMQ 3.10's quorum queues overwrite it; a broker that passes it on refuses it too)."""
    after, name = scrape(pipeline, "parser"), "genobase_messages_refused_total"
    moved = {
        reason: value(after, name, stage="parse", reason=reason) - value(before, name, stage="parse", reason=reason)
        for reason in ("invalid", "too_large", "bad_header")
    }
    moved["bad_header"] = min(moved["bad_header"], 1)
    return moved


FORGED_SIZES = ["twelve", "12", "", -5, 1.5, True, [1], {"bytes": 1}, "NaN", "1e3", " 7", "0x10"]


def test_forged_events_are_refused_and_the_parser_keeps_working(
    pipeline: Pipeline, settings: Settings, rgw_publisher: RgwPublisher
) -> None:
    clear_dead_letters(settings)
    before_pids = pipeline.pids()
    before = scrape(pipeline, "parser")
    # A dozen sizes that are not a number: three times the parser's prefetch.
    for size in FORGED_SIZES:
        rgw_publisher.publish(creation_event(size=size))
    rgw_publisher.publish(creation_event(key=12))  # a key that is not a string
    rgw_publisher.publish(creation_event(key={"a": "b"}))
    rgw_publisher.publish(b"\x00\xffnot json at all")
    rgw_publisher.publish(b'{"Records": [' + b" " * (1024 * 1024) + b"]}")  # enormous
    rgw_publisher.publish(creation_event(), headers={"x-delivery-count": "not-a-number"})
    rgw_publisher.publish(creation_event(), headers={"x-death": [{"exchange": settings.pipeline_exchange}]})
    forged_shard = ShardRequested(upload_id=uuid.uuid4(), generation=1, shard=0).to_bytes()
    rgw_publisher.publish(forged_shard)
    invalid = len(FORGED_SIZES) + 3 + 1  # sizes, two keys, the body, the shard request

    genuine_upload_completes(pipeline, "after-forged-events.fa")
    deadline = time.monotonic() + 30
    while (counts := refused_since(pipeline, before)) != {"invalid": invalid, "too_large": 1, "bad_header": 1}:
        # (x-delivery-count: RabbitMQ 3.10's quorum queues overwrite it; refused where a broker passes it on.)
        assert time.monotonic() < deadline, counts
        time.sleep(0.5)
    assert pipeline.pids() == before_pids  # no consumer died (nor was restarted)
    letters = [letter for letter in list_dead_letters(settings, "parse") if letter.refused]
    assert {letter.refused for letter in letters} >= {"invalid", "too_large", "bad_header"}
    assert all(len(letter.body) <= 64 * 1024 for letter in letters)  # the giant is not stored whole
    clear_dead_letters(settings)


def test_a_forged_dead_letter_gains_nothing_by_replay(
    pipeline: Pipeline, settings: Settings, rgw_publisher: RgwPublisher
) -> None:
    """A shard request naming a failed upload, sent on the events exchange with a forged x-death
    that says the pipeline published it: replay refuses it and restarts nothing."""
    clear_dead_letters(settings)
    ticket = upload_via_intake(pipeline, "failed-then-forged.fa", b">a\nAC!T\n")
    assert pipeline.wait_for(ticket["id"])["state"] == "failed"
    forged = ShardRequested(upload_id=uuid.UUID(ticket["id"]), generation=1, shard=0).to_bytes()
    death = {"exchange": settings.pipeline_exchange, "queue": settings.queue("parse"), "reason": "rejected"}
    rgw_publisher.publish(forged, headers={"x-death": [death]})
    rgw_publisher.publish(forged)
    deadline = time.monotonic() + 30
    while len(list_dead_letters(settings, "parse")) < 2:
        assert time.monotonic() < deadline, "the forged shard requests were never dead-lettered"
        time.sleep(0.2)
    listed = dead_letters.show(settings)
    assert [uploads for _, uploads in listed] == [[], []]  # neither names an upload
    done = dead_letters.replay_all(settings)
    assert (done.taken, done.restarted, len(done.refused)) == (2, [], 2)
    time.sleep(2)
    assert pipeline.status(ticket["id"])["state"] == "failed"  # not restarted
    assert list_dead_letters(settings, "parse") == []

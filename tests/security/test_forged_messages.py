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
from typing import Any

import orjson
import pytest

from genobase import dead_letters
from shared.domain.messages import ShardRequested
from shared.rabbitmq.broker import list_dead_letters
from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings
from tests.conftest import Pipeline
from tests.helpers import Samples, rgw_style_event, scrape, upload_via_intake, value
from tests.security.helpers import RgwPublisher, clear_dead_letters, genuine_upload_completes

pytestmark = pytest.mark.e2e


def creation_event(**object_fields: Any) -> bytes:
    body = orjson.loads(rgw_style_event("forged-bucket", "forged/key.fa", 10, "etag"))
    body["Records"][0]["s3"]["object"].update(object_fields)
    return orjson.dumps(body)


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
    # (x-delivery-count: RabbitMQ 3.10's quorum queues overwrite it; refused where a broker passes it on.)
    expected = {"invalid": invalid, "too_large": 1, "bad_header": 1}
    poll_until(
        lambda: refused_since(pipeline, before) == expected,
        timeout=30,
        interval=0.5,
        what=f"the parser's refusals {expected}",
        describe=lambda: f"refused: {refused_since(pipeline, before)}",
    )
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
    poll_until(
        lambda: [letter.body for letter in list_dead_letters(settings, "parse")].count(forged) == 2,
        timeout=30,
        interval=0.2,
        what="the forged shard requests dead-lettered",
    )
    # Only this test's letters are judged: a genuine dead letter another suite left behind may
    # land on any stage's queue meanwhile, and replay treats it on its own merits.
    listed = dead_letters.show(settings)
    mine = [uploads for letter, uploads in listed if letter.body == forged]
    others = [(letter.stage, letter.reason, uploads) for letter, uploads in listed if letter.body != forged]
    assert mine == [[], []], others  # neither names an upload
    assert all(uuid.UUID(ticket["id"]) not in uploads for _, _, uploads in others), others
    done = dead_letters.replay_all(settings)
    assert uuid.UUID(ticket["id"]) not in done.restarted
    assert [letter.body for letter in done.refused].count(forged) == 2
    time.sleep(2)
    assert pipeline.status(ticket["id"])["state"] == "failed"  # not restarted
    assert [letter for letter in list_dead_letters(settings, "parse") if letter.body == forged] == []

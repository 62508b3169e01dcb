"""Notifications that must change nothing: repeated, replayed later, forged, for another bucket or
an object deleted since; and one dated far ahead, which must not make later genuine events stale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest

from shared.rabbitmq.broker import Publisher
from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings
from shared.s3.store import UPLOAD_CONTENT_TYPE, ObjectStore
from tests import http
from tests.conftest import Pipeline
from tests.faults.conftest import FaultLedger
from tests.helpers import many_records, record_count, rgw_style_event, settled, wait_until_consumed

pytestmark = pytest.mark.e2e


def test_duplicate_and_late_notifications_give_one_result(
    pipeline: Pipeline, settings: Settings, ledger: FaultLedger
) -> None:
    data = many_records(2, seed=41)
    ticket = ledger.upload(pipeline, "replayed.fasta", data, "done", record_count(data))
    first = pipeline.wait_for(ticket["id"])
    assert first["state"] == "done"
    etag = ObjectStore(settings).head(ticket["bucket"], ticket["key"])["ETag"].strip('"')
    event = rgw_style_event(ticket["bucket"], ticket["key"], len(data), etag)
    late = orjson.loads(event)
    late["Records"][0]["eventTime"] = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    before = settled(pipeline, "parser", "parse")
    publisher = Publisher(settings)
    for body in (event, event, orjson.dumps(late)):
        publisher.publish_raw(settings.events_exchange, settings.events_routing_key, body)
    publisher.close()
    for kind in ("notification delivered twice", "notification delivered twice", "notification replayed an hour later"):
        ledger.inject(kind)
    wait_until_consumed(pipeline, settings, "parse", before, published=3)
    again = pipeline.wait_for(ticket["id"])
    assert (again["generation"], again["result"]["key"], again["times"]) == (
        first["generation"],
        first["result"]["key"],
        first["times"],
    )
    with psycopg.connect(settings.pg_dsn.get_secret_value()) as conn:
        rows = conn.execute("SELECT count(*) FROM sequence_records WHERE upload_id = %s", (ticket["id"],)).fetchone()
    assert rows == (record_count(data),)
    for kind in ("notification delivered twice", "notification delivered twice", "notification replayed an hour later"):
        ledger.survive(kind)


def _publish_event(settings: Settings, bucket: str, key: str, size: int, etag: str, when: datetime) -> None:
    event = orjson.loads(rgw_style_event(bucket, key, size, etag))
    event["Records"][0]["eventTime"] = when.isoformat()
    publisher = Publisher(settings)
    publisher.publish_raw(settings.events_exchange, settings.events_routing_key, orjson.dumps(event))
    publisher.close()


def _unchanged(
    pipeline: Pipeline, settings: Settings, before: dict[str, Any], records: int, settled_before: float
) -> None:
    """Once the parser has taken and settled the event (``settled_before``: its count before the
    event was published): the same generation, result and stage times, and rows."""
    wait_until_consumed(pipeline, settings, "parse", settled_before, published=1)
    after = pipeline.status(before["id"])
    fields = ("state", "generation", "times", "error")
    assert {k: after[k] for k in fields} == {k: before[k] for k in fields}
    assert after["result"]["key"] == before["result"]["key"]
    assert after["stall"]["pickups"] == 0  # the watchdog has nothing to re-issue
    with psycopg.connect(settings.pg_dsn.get_secret_value()) as conn:
        rows = conn.execute("SELECT count(*) FROM sequence_records WHERE upload_id = %s", (before["id"],)).fetchone()
    assert rows == (records,)


def test_forged_and_outdated_notifications_change_nothing(
    pipeline: Pipeline, settings: Settings, ledger: FaultLedger
) -> None:
    """Events the store does not confirm: a new etag for a finished upload (forged), the same for an
    object deleted since, an event for another bucket. None starts a generation or deletes a row."""
    data = many_records(1, seed=42)
    ticket = ledger.upload(pipeline, "forged.fasta", data, "done", record_count(data))
    done = pipeline.wait_for(ticket["id"])
    assert done["state"] == "done"
    soon = datetime.now(UTC) + timedelta(seconds=30)
    before = settled(pipeline, "parser", "parse")
    _publish_event(settings, ticket["bucket"], ticket["key"], len(data), "0123456789abcdef", soon)
    ledger.inject("forged notification (etag not in the store)")
    _unchanged(pipeline, settings, done, record_count(data), before)
    ledger.survive("forged notification (etag not in the store)")

    before = settled(pipeline, "parser", "parse")
    _publish_event(settings, f"{settings.uploads_bucket}-other", ticket["key"], len(data), "0badc0de", soon)
    ledger.inject("notification for another bucket")
    _unchanged(pipeline, settings, done, record_count(data), before)
    assert (
        pipeline.http.get(
            "/uploads/lookup", params={"bucket": f"{settings.uploads_bucket}-other", "key": ticket["key"]}
        ).status_code
        == 404
    )
    ledger.survive("notification for another bucket")

    ObjectStore(settings).client.delete_object(Bucket=ticket["bucket"], Key=ticket["key"])
    before = settled(pipeline, "parser", "parse")
    _publish_event(settings, ticket["bucket"], ticket["key"], len(data), "fedcba9876543210", soon)
    ledger.inject("notification for a deleted object")
    _unchanged(pipeline, settings, done, record_count(data), before)
    ledger.survive("notification for a deleted object")


def test_an_event_time_in_the_future_does_not_make_later_events_stale(
    pipeline: Pipeline, settings: Settings, ledger: FaultLedger
) -> None:
    first, second = many_records(1, seed=43), many_records(1, seed=44)
    ticket = ledger.upload(pipeline, "future.fasta", first, "done", record_count(second))
    assert pipeline.wait_for(ticket["id"])["state"] == "done"
    store = ObjectStore(settings)
    stat = store.stat(ticket["bucket"], ticket["key"])
    assert stat is not None
    etag = stat.etag
    # The same object announced again, dated a year ahead: it must not be kept as "the newest time".
    before = settled(pipeline, "parser", "parse")
    _publish_event(settings, ticket["bucket"], ticket["key"], len(first), etag, datetime.now(UTC) + timedelta(days=365))
    ledger.inject("notification dated a year ahead")
    wait_until_consumed(pipeline, settings, "parse", before, published=1)  # taken before the overwrite below
    url = store.presign_put(ticket["bucket"], ticket["key"], 60, len(second))
    put = http.put(url, content=second, headers={"Content-Type": UPLOAD_CONTENT_TYPE})
    assert put.status_code == 200

    def second_generation_finished() -> dict[str, Any] | None:
        status = pipeline.status(ticket["id"])
        return status if status["generation"] >= 2 and status["state"] in ("done", "failed") else None

    status = poll_until(
        second_generation_finished,
        timeout=180,  # RGW persistent topics occasionally hold an event back for a minute
        interval=0.2,
        what="the overwritten object's second generation finished",
        describe=lambda: f"{pipeline.status(ticket['id'])}\n{pipeline.logs()}",
    )
    assert status["state"] == "done" and status["result"]["records"] == record_count(second)
    ledger.survive("notification dated a year ahead")

"""The same notification twice, and once more "an hour later": one result, one generation."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest

from shared.broker import Publisher
from shared.settings import Settings
from shared.storage import ObjectStore
from tests.conftest import Pipeline
from tests.e2e.test_pipeline import rgw_style_event
from tests.faults.conftest import FaultLedger
from tests.faults.test_kills import many_records, record_count

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
    publisher = Publisher(settings)
    for body in (event, event, orjson.dumps(late)):
        publisher.publish_raw(settings.events_exchange, settings.events_routing_key, body)
    publisher.close()
    for kind in ("notification delivered twice", "notification delivered twice", "notification replayed an hour later"):
        ledger.inject(kind)
    time.sleep(5)  # the parser has long taken all three: a duplicate is acknowledged in milliseconds
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


def test_notification_for_a_deleted_object_fails_the_upload(
    pipeline: Pipeline, settings: Settings, ledger: FaultLedger
) -> None:
    """A newer generation whose object is gone by the time it is read: failed, not parsing forever."""
    data = many_records(1, seed=42)
    ticket = ledger.upload(pipeline, "deleted.fasta", data, "failed")
    assert pipeline.wait_for(ticket["id"])["state"] == "done"
    ObjectStore(settings).client.delete_object(Bucket=ticket["bucket"], Key=ticket["key"])
    event = orjson.loads(rgw_style_event(ticket["bucket"], ticket["key"], len(data), "0123456789abcdef"))
    event["Records"][0]["eventTime"] = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    publisher = Publisher(settings)
    publisher.publish_raw(settings.events_exchange, settings.events_routing_key, orjson.dumps(event))
    publisher.close()
    ledger.inject("notification for a deleted object")
    deadline = time.monotonic() + 60
    while (status := pipeline.status(ticket["id"]))["generation"] < 2 or status["state"] != "failed":
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    assert status["error"]["code"] == "object_deleted", status["error"]
    ledger.survive("notification for a deleted object")

"""A retry racing a late event: after a failed upload is retried (a new generation of the same
object), copies of the object's original event arrive -- as a notification the store redelivers,
or one held up in its persistent topic, would. They carry the same etag, so they resume the new
generation instead of starting another, and its rows are those of one parse."""

from __future__ import annotations

import uuid

import orjson
import psycopg
import pytest

from shared.domain.uploads import Failure, PipelineErrorCode
from shared.postgres.connection import Database
from shared.postgres.uploads import PostgresUploads
from shared.rabbitmq.broker import Publisher
from shared.runtime.settings import Settings
from shared.s3.store import ObjectStore
from tests.conftest import Pipeline
from tests.faults.conftest import FaultLedger
from tests.helpers import (
    assert_exact_result,
    many_records,
    record_count,
    rgw_style_event,
    settled,
    wait_until,
    wait_until_consumed,
)

pytestmark = pytest.mark.e2e

KIND = "a retry racing a late event"


def test_a_late_event_after_a_retry_starts_no_second_generation(
    pipeline: Pipeline, settings: Settings, ledger: FaultLedger
) -> None:
    data = many_records(3, seed=77)
    # Counted from before the upload: its own event, the retry's and the two late copies make four.
    before = settled(pipeline, "parser", "parse")
    ticket = ledger.upload(pipeline, "retry-race.fasta", data, "done", record_count(data))
    etag = ObjectStore(settings).head(ticket["bucket"], ticket["key"])["ETag"].strip('"')
    original = orjson.loads(rgw_style_event(ticket["bucket"], ticket["key"], len(data), etag))
    # The first generation fails while it is parsing, as when a stage gives up on it.
    live = wait_until(pipeline, ticket["id"], lambda s: s["state"] == "parsing")
    original["Records"][0]["eventTime"] = live["created_at"]  # older than anything since
    store = PostgresUploads(Database(settings))
    try:
        failure = Failure(PipelineErrorCode.PROCESSING_FAILED, "the parse stage gave up (fault test)")
        assert store.fail(uuid.UUID(ticket["id"]), 1, failure)
    finally:
        store.reset()
    assert pipeline.wait_for(ticket["id"])["state"] == "failed"

    retried = pipeline.http.post(f"/uploads/{ticket['id']}/retry")
    assert retried.status_code == 202, retried.text
    assert retried.json()["generation"] == 2
    # Right behind the retry's own message: two copies of the failed generation's event.
    publisher = Publisher(settings)
    try:
        for _ in range(2):
            publisher.publish_raw(settings.events_exchange, settings.events_routing_key, orjson.dumps(original))
    finally:
        publisher.close()
    ledger.inject(KIND)
    wait_until_consumed(pipeline, settings, "parse", before, published=4, timeout=180)
    assert_exact_result(pipeline, settings, ticket["id"], data)  # every record once, in order
    done = pipeline.status(ticket["id"])
    assert (done["state"], done["generation"]) == ("done", 2), done
    with psycopg.connect(settings.pg_dsn.get_secret_value()) as conn:
        batches = conn.execute(
            "SELECT generation, count(*), count(DISTINCT (shard, batch_no)) FROM upload_batches "
            "WHERE upload_id = %s GROUP BY generation",
            (ticket["id"],),
        ).fetchall()
    assert len(batches) == 1 and batches[0][0] == 2 and batches[0][1] == batches[0][2]  # one parse's batches
    ledger.survive(KIND)

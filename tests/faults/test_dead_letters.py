"""Dead-lettered messages can be listed, and replaying them processes their uploads again."""

from __future__ import annotations

import time

import psycopg
import pytest

from genobase import dead_letters
from shared.broker import Publisher, list_dead_letters, take_dead_letters
from shared.postgres import uploads as db
from shared.postgres.connection import connect
from shared.settings import Settings
from shared.storage import ObjectStore
from shared.uploads import Failure, PipelineErrorCode
from tests.conftest import Pipeline
from tests.e2e.test_pipeline import assert_same_records, download, rgw_style_event
from tests.faults.conftest import FaultLedger
from tests.reference import fasta_records

pytestmark = pytest.mark.e2e


def test_dead_letter_is_listed_and_replayed(pipeline: Pipeline, settings: Settings, ledger: FaultLedger) -> None:
    data = b">a poisoned once\nACGT\n>b\nGGCCNN\n"
    ticket = ledger.upload(pipeline, "poison.fasta", data, "done", 2)
    assert pipeline.wait_for(ticket["id"])["state"] == "done"
    # What a poison message leaves behind: its upload failed with the reason, the message dead-lettered.
    etag = ObjectStore(settings).head(ticket["bucket"], ticket["key"])["ETag"].strip('"')
    with connect(settings, autocommit=True) as conn:
        upload = db.get_upload(conn, ticket["id"])
        assert upload is not None
        conn.execute("UPDATE uploads SET state = 'parsing' WHERE id = %s", (upload.id,))
        failure = Failure(PipelineErrorCode.PROCESSING_FAILED, "failed 5 times: boom")
        assert db.fail_upload(conn, upload.id, upload.generation, failure)
    publisher = Publisher(settings)
    publisher.publish_raw(
        "", settings.queue("parse") + ".dead", rgw_style_event(ticket["bucket"], ticket["key"], len(data), etag)
    )
    publisher.close()
    assert pipeline.wait_for(ticket["id"])["error"]["code"] == "processing_failed"

    listed = dead_letters.show(settings)
    assert [(letter.stage, [str(u) for u in uploads]) for letter, uploads in listed] == [("parse", [ticket["id"]])]

    taken, restarted = dead_letters.replay(settings)
    assert (taken, [str(u) for u in restarted]) == (1, [ticket["id"]])
    assert list_dead_letters(settings, "parse") == []
    status = pipeline.wait_for(ticket["id"])
    assert status["state"] == "done", (status, pipeline.logs())
    assert status["error"] is None
    assert_same_records(download(status), fasta_records(data))
    with psycopg.connect(settings.pg_dsn.get_secret_value()) as conn:
        rows = conn.execute("SELECT count(*) FROM sequence_records WHERE upload_id = %s", (ticket["id"],)).fetchone()
    assert rows == (2,)


def test_poison_notification_is_dead_lettered_while_others_are_served(
    pipeline: Pipeline, settings: Settings, ledger: FaultLedger
) -> None:
    """A notification that fails the same way every time (its bucket does not exist)."""
    before = pipeline.processes.pid("parser")
    bucket, key = f"{settings.uploads_bucket}-gone", "ghost.fasta"
    publisher = Publisher(settings)
    publisher.publish_raw(
        settings.events_exchange, settings.events_routing_key, rgw_style_event(bucket, key, 4096, "0badc0de")
    )
    publisher.close()
    ledger.inject("poison notification")
    data = b">beside\nACGT\n>the poison\nGGCC\n"
    other = ledger.upload(pipeline, "beside-poison.fasta", data, "done", 2)
    assert pipeline.wait_for(other["id"])["state"] == "done"

    deadline = time.monotonic() + 180  # max_deliveries attempts with their backoff
    while True:
        found = pipeline.http.get("/uploads", params={"bucket": bucket, "key": key})
        if found.status_code == 200 and found.json()["state"] == "failed":
            break
        assert time.monotonic() < deadline, found.text
        time.sleep(0.5)
    status = found.json()
    ledger.attempt(status["id"], "failed")
    assert status["error"]["code"] == "processing_failed"
    assert f"failed {settings.max_deliveries} times" in status["error"]["message"]
    assert "NoSuchBucket" in status["error"]["message"]
    listed = dead_letters.show(settings)
    assert [(letter.stage, [str(u) for u in uploads]) for letter, uploads in listed] == [("parse", [status["id"]])]
    assert pipeline.processes.pid("parser") == before  # the consumer kept serving
    # Leave the dead-letter queue empty for the other tests.
    assert take_dead_letters(settings, "parse", lambda letter: None) == 1
    ledger.survive("poison notification")

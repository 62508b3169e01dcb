"""Dead-lettered messages can be listed, and replaying them processes their uploads again."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from genobase import dead_letters
from shared.domain.uploads import Failure, ObjectCreated, PipelineErrorCode
from shared.postgres.connection import Database, connect
from shared.postgres.uploads import PostgresUploads
from shared.rabbitmq.broker import Publisher, list_dead_letters, take_dead_letters
from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings
from shared.s3.store import ObjectStore
from tests.builders import record, sequence_batch
from tests.conftest import Pipeline
from tests.faults.conftest import FaultLedger
from tests.helpers import assert_same_records, download, rgw_style_event
from tests.reference import fasta_records

pytestmark = pytest.mark.e2e


def test_dead_letter_is_listed_and_replayed(pipeline: Pipeline, settings: Settings, ledger: FaultLedger) -> None:
    data = b">a poisoned once\nACGT\n>b\nGGCCNN\n"
    ticket = ledger.upload(pipeline, "poison.fasta", data, "done", 2)
    assert pipeline.wait_for(ticket["id"])["state"] == "done"
    # What a poison message leaves behind: its upload failed with the reason, the message dead-lettered.
    etag = ObjectStore(settings).head(ticket["bucket"], ticket["key"])["ETag"].strip('"')
    store = PostgresUploads(Database(settings))
    try:
        upload = store.get(ticket["id"])
        assert upload is not None
        with connect(settings, autocommit=True) as conn:
            conn.execute("UPDATE uploads SET state = 'parsing' WHERE id = %s", (upload.id,))
        failure = Failure(PipelineErrorCode.PROCESSING_FAILED, "failed 5 times: boom")
        assert store.fail(upload.id, upload.generation, failure)
    finally:
        store.reset()
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


def test_poison_message_is_dead_lettered_while_others_are_served(
    pipeline: Pipeline, settings: Settings, ledger: FaultLedger
) -> None:
    """A message that fails the same way every time: a batch whose COPY Postgres always refuses
    (a NUL in a name, which the parser never lets through), for a live upload."""
    before = pipeline.processes.pid("persister")
    store = PostgresUploads(Database(settings))
    try:
        claim = store.claim(
            ObjectCreated(bucket=settings.uploads_bucket, key=f"poison/{time.time_ns()}.fa", size=1, etag="p1"),
            confirmed=True,  # an upload made directly, with no object behind it
        )
    finally:
        store.reset()
    with connect(settings, autocommit=True) as conn:
        # Being parsed, as far as anyone can tell, for the next hour: the watchdog must not take this
        # object-less upload back to the parser while the poison batch is being retried.
        conn.execute(
            "UPDATE uploads SET state = 'parsing', updated_at = now() + interval '1 hour' WHERE id = %s",
            (claim.upload.id,),
        )
    upload = claim.upload
    poison = sequence_batch(upload.id, upload.generation, 0, [record(0, gene_name="a\x00b", seq_id="a")])
    publisher = Publisher(settings)
    publisher.publish(poison)
    publisher.close()
    ledger.attempt(str(upload.id), "failed")
    ledger.inject("poison message")
    data = b">beside\nACGT\n>the poison\nGGCC\n"
    other = ledger.upload(pipeline, "beside-poison.fasta", data, "done", 2)
    assert pipeline.wait_for(other["id"])["state"] == "done"

    def failed() -> dict[str, Any] | None:
        status = pipeline.status(str(upload.id))
        return status if status["state"] == "failed" else None

    status = poll_until(
        failed,
        timeout=180,  # max_deliveries attempts with their backoff
        interval=0.5,
        what="the poisoned upload failed",
        describe=lambda: str(pipeline.status(str(upload.id))),
    )
    assert status["error"]["code"] == "persist_failed"
    # A safe message and an error id: the exception's text (Postgres's words) is in the log only.
    assert f"failed {settings.max_deliveries} times" in status["error"]["message"]
    assert "NUL" not in status["error"]["message"] and "0x00" not in status["error"]["message"]
    error_id = status["error"]["error_id"]
    assert error_id and error_id in pipeline.processes.log_file("persister").read_text()
    listed = dead_letters.show(settings)
    assert [(letter.stage, [str(u) for u in uploads]) for letter, uploads in listed] == [("persist", [str(upload.id)])]
    assert pipeline.processes.pid("persister") == before  # the consumer kept serving
    # Leave the dead-letter queue empty for the other tests.
    assert take_dead_letters(settings, "persist", lambda letter: None) == 1
    ledger.survive("poison message")

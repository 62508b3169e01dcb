"""Validating a file without storing it, and retrying a failed upload, against the running stack.

A validation is registered with ``"mode": "validate"``: the pipeline parses it, reports what it
found (or the first error with its position), stores no row and no result, and the watchdog
removes the object. A retry drives a failed upload again from its object as a new generation.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from refget.utils import fasta_to_seqcol_dict, seqcol_digest

from shared.domain.uploads import Failure, PipelineErrorCode
from shared.postgres.connection import Database
from shared.postgres.keys import PostgresKeys
from shared.postgres.uploads import PostgresUploads
from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings
from shared.s3.store import ObjectStore
from shared.usecases.keys import create_key
from tests.conftest import Pipeline
from tests.helpers import assert_exact_result, many_records, upload_via_intake, wait_until
from tests.problems import problem

pytestmark = pytest.mark.e2e

FASTA = b">chr1 first\nACGTACGTNN\nacgt\n>chr2\nGGCCTTAA\n>empty\n>chr3 third one\n" + b"ACGT" * 500 + b"\n"


def rows_of(settings: Settings, upload_id: str) -> int:
    with psycopg.connect(settings.pg_dsn.get_secret_value()) as conn:
        found = conn.execute("SELECT count(*) FROM sequence_records WHERE upload_id = %s", (upload_id,)).fetchone()
    assert found is not None
    return int(found[0])


def results_of(settings: Settings, upload_id: str) -> list[str]:
    listing = ObjectStore(settings).client.list_objects_v2(Bucket=settings.results_bucket, Prefix=f"{upload_id}/")
    return [entry["Key"] for entry in listing.get("Contents", [])]


def wait_until_removed(settings: Settings, ticket: dict[str, Any]) -> None:
    """The watchdog (every second here) removes a validated object once its parse ended."""
    store = ObjectStore(settings)
    poll_until(
        lambda: not store.exists(ticket["bucket"], ticket["key"]),
        timeout=60,
        what=f"the validated object s3://{ticket['bucket']}/{ticket['key']} removed",
    )


def test_a_valid_file_is_reported_and_nothing_is_stored(pipeline: Pipeline, tmp_path: Path) -> None:
    settings = pipeline.settings
    ticket = upload_via_intake(pipeline, "checked.fa", FASTA, mode="validate")
    status = pipeline.wait_for(ticket["id"])
    assert status["state"] == "done", (status, pipeline.logs())
    reference = tmp_path / "checked.fa"
    reference.write_bytes(FASTA)
    assert status["mode"] == "validate" and status["result"] is None and status["error"] is None
    assert status["validation"] == {
        "records": 4,
        "format": "fasta",
        "bytes": len(FASTA),
        "source_md5": hashlib.md5(FASTA).hexdigest(),
        "source_sha256": hashlib.sha256(FASTA).hexdigest(),
        "collection_digest": seqcol_digest(fasta_to_seqcol_dict(str(reference))),  # the refget package's
    }
    assert status["collection_digest"] is None  # no collection was stored
    wait_until_removed(settings, ticket)
    assert rows_of(settings, ticket["id"]) == 0 and results_of(settings, ticket["id"]) == []
    assert pipeline.status(ticket["id"])["state"] == "done"  # the report stays after the object went


def test_an_invalid_file_reports_its_first_error_and_is_removed(pipeline: Pipeline) -> None:
    settings = pipeline.settings
    data = b">a\nACGT\n>b\nACGT\nAC!T\n>c\nGG\n"
    ticket = upload_via_intake(pipeline, "broken.fa", data, mode="validate")
    status = pipeline.wait_for(ticket["id"])
    assert status["state"] == "failed" and status["mode"] == "validate" and status["validation"] is None
    error = status["error"]
    assert (error["code"], error["line"], error["column"]) == ("invalid_character", 5, 3), error
    wait_until_removed(settings, ticket)
    assert rows_of(settings, ticket["id"]) == 0 and results_of(settings, ticket["id"]) == []


def test_a_failed_upload_is_retried_as_a_new_generation(pipeline: Pipeline) -> None:
    """The failure is one a stage gives up with (``processing_failed``, as a dead-lettered message
    leaves it), recorded while the upload is parsing: its batches still in flight are dropped, and
    after the retry, as messages of a generation that no longer exists."""
    settings = pipeline.settings
    data = many_records(4, seed=321)
    ticket = upload_via_intake(pipeline, "retried.fa", data)
    live = wait_until(pipeline, ticket["id"], lambda s: s["state"] == "parsing")
    store = PostgresUploads(Database(settings))
    try:
        gave_up = Failure(PipelineErrorCode.PROCESSING_FAILED, "the parse stage gave up (test)")
        assert store.fail(uuid.UUID(ticket["id"]), live["generation"], gave_up)
    finally:
        store.reset()
    failed = pipeline.wait_for(ticket["id"])
    assert (failed["state"], failed["error"]["code"], failed["generation"]) == ("failed", "processing_failed", 1)

    answer = pipeline.http.post(f"/uploads/{ticket['id']}/retry")
    assert answer.status_code == 202, answer.text
    assert (answer.json()["state"], answer.json()["generation"]) == ("queued", 2)
    assert_exact_result(pipeline, settings, ticket["id"], data)  # every record once: no row doubled
    done = pipeline.status(ticket["id"])
    assert (done["generation"], done["error"], done["result"]["key"]) == (2, None, f"{ticket['id']}/generation-2.json")

    again = pipeline.http.post(f"/uploads/{ticket['id']}/retry")  # done: nothing to retry
    assert again.status_code == 409
    assert (problem(again)["code"], again.json()["state"]) == ("not_failed", "done")
    assert pipeline.status(ticket["id"])["generation"] == 2


def test_a_retry_needs_the_object_and_the_owner(pipeline: Pipeline) -> None:
    settings = pipeline.settings
    ticket = upload_via_intake(pipeline, "gone.fa", b">a\nAC!T\n")
    assert pipeline.wait_for(ticket["id"])["state"] == "failed"
    token = uuid.uuid4().hex[:6]
    other = create_key(PostgresKeys.from_settings(settings), f"rv-{token}", admin=False)
    as_other = httpx.Client(base_url=settings.status_base_url, headers={"Authorization": f"Bearer {other}"})
    assert as_other.post(f"/uploads/{ticket['id']}/retry").status_code == 404  # another owner's: as if none
    ObjectStore(settings).client.delete_object(Bucket=ticket["bucket"], Key=ticket["key"])
    answer = pipeline.http.post(f"/uploads/{ticket['id']}/retry")
    assert answer.status_code == 409
    assert (problem(answer)["code"], answer.json()["state"]) == ("object_gone", "failed")
    status = pipeline.status(ticket["id"])
    assert (status["state"], status["generation"]) == ("failed", 1)

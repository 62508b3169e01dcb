"""Revoking an owner's key against the running stack: its outstanding tickets stop.

A presigned URL cannot be called back: the store accepts a PUT through it until its lifetime ends.
What the revocation stops is everything after: the object is not processed (the upload ends
``revoked`` with the code ``owner_revoked``), a waiting ticket ends ``revoked`` (the watchdog), and
its multipart upload is aborted, so that no part can be added or completed.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.postgres.connection import connect
from shared.postgres.keys import PostgresKeys
from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings
from shared.s3.store import ObjectStore
from shared.usecases.keys import create_key, revoke_key
from tests import http
from tests.conftest import Pipeline, another_process

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024
FASTA = b">a\nACGT\n"
OTHER = b">b\nGGCC\n"  # the same size: the same presigned PUT takes it


def new_owner(pipeline: Pipeline) -> tuple[str, httpx.Client]:
    """A fresh owner's key (not an admin), and a client of the session's intake with it."""
    settings = pipeline.settings
    name = f"rev-{uuid.uuid4().hex[:10]}"
    key = create_key(PostgresKeys.from_settings(settings), name, admin=False)
    return name, httpx.Client(base_url=settings.status_base_url, timeout=30, headers={"Authorization": f"Bearer {key}"})


def revoke(settings: Settings, name: str) -> None:
    assert revoke_key(PostgresKeys.from_settings(settings), name)


def wait_until(pipeline: Pipeline, upload_id: str, done: Any, timeout: float = 240) -> dict[str, Any]:
    """Poll the upload's status (as the admin) until ``done(status)``."""

    def reached() -> dict[str, Any] | None:
        status = pipeline.status(upload_id)
        return status if done(status) else None

    return poll_until(
        reached,
        timeout=timeout,
        what=f"upload {upload_id} as awaited",
        describe=lambda: str(pipeline.status(upload_id)),
    )


def records_of(settings: Settings, upload_id: str) -> int:
    with connect(settings, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) AS n FROM sequence_records WHERE upload_id = %s", (upload_id,)).fetchone()
    assert row is not None
    return int(row["n"])


def assert_revoked(status: dict[str, Any]) -> None:
    assert status["state"] == "revoked", status
    assert status["error"]["code"] == "owner_revoked" and status["error"]["error_id"], status
    assert status["result"] is None and status["progress"]["records_done"] == 0


def test_an_object_put_through_a_ticket_after_its_owners_revocation_is_not_processed(
    pipeline: Pipeline, settings: Settings
) -> None:
    name, owner = new_owner(pipeline)
    ticket = owner.post("/uploads", json={"filename": "late.fa", "size": len(FASTA)}).json()
    revoke(settings, name)
    assert (
        http.put(ticket["upload_url"], content=FASTA, headers=ticket.get("upload_headers") or {}).status_code == 200
    )  # the store still takes it
    status = wait_until(pipeline, ticket["id"], lambda s: s["source"]["etag"] is not None)
    assert_revoked(status)
    assert records_of(settings, ticket["id"]) == 0


def test_a_live_ticket_reused_after_the_revocation_does_not_replace_a_finished_upload(
    pipeline: Pipeline, settings: Settings
) -> None:
    """Done before the revocation: its result stays. The same URL written again after it: not processed."""
    name, owner = new_owner(pipeline)
    ticket = owner.post("/uploads", json={"filename": "twice.fa", "size": len(FASTA)}).json()
    assert http.put(ticket["upload_url"], content=FASTA, headers=ticket.get("upload_headers") or {}).status_code == 200
    first = pipeline.wait_for(ticket["id"])
    assert first["state"] == "done"
    revoke(settings, name)
    time.sleep(2)  # a watchdog sweep or two: a finished upload is not a waiting ticket
    assert pipeline.status(ticket["id"])["state"] == "done"
    assert http.put(ticket["upload_url"], content=OTHER, headers=ticket.get("upload_headers") or {}).status_code == 200
    status = wait_until(pipeline, ticket["id"], lambda s: s["generation"] > first["generation"])
    assert_revoked(status)
    assert records_of(settings, ticket["id"]) == 0


def test_a_waiting_ticket_ends_revoked(pipeline: Pipeline, settings: Settings) -> None:
    name, owner = new_owner(pipeline)
    ticket = owner.post("/uploads", json={"filename": "never.fa", "size": len(FASTA)}).json()
    revoke(settings, name)
    status = wait_until(pipeline, ticket["id"], lambda s: s["state"] != "awaiting_upload", timeout=30)
    assert_revoked(status)


def test_an_object_written_under_a_revoked_owners_prefix_is_not_processed(
    pipeline: Pipeline, settings: Settings
) -> None:
    name, _ = new_owner(pipeline)
    revoke(settings, name)
    key = f"{name}/direct/{uuid.uuid4()}.fa"
    ObjectStore(settings).client.put_object(Bucket=settings.uploads_bucket, Key=key, Body=FASTA)

    def registered() -> httpx.Response | None:
        found = pipeline.http.get("/uploads/lookup", params={"bucket": settings.uploads_bucket, "key": key})
        return None if found.status_code == 404 else found

    assert_revoked(poll_until(registered, timeout=240, what="an upload made by the object's event").json())


@pytest.fixture(scope="module")
def multipart_intake(pipeline: Pipeline) -> Iterator[str]:
    low = {"GENOBASE_MULTIPART_THRESHOLD_BYTES": str(1 * MiB), "GENOBASE_MULTIPART_MIN_PART_BYTES": str(5 * MiB)}
    with another_process(pipeline, "intake", "GENOBASE_INTAKE_PORT", low) as url:
        yield url


def test_revocation_aborts_the_owners_multipart_upload(
    pipeline: Pipeline, settings: Settings, multipart_intake: str
) -> None:
    """A part sent before the revocation, then none can be added, listed or completed."""
    name, owner = new_owner(pipeline)
    owner.base_url = httpx.URL(multipart_intake)
    part = FASTA * (MiB // len(FASTA) * 2)  # 2 MiB: one part (the last part may be below 5 MiB)
    ticket = owner.post("/uploads", json={"filename": "parts.fa", "size": len(part)}).json()
    plan = ticket["multipart"]
    assert ticket["upload_method"] == "multipart" and plan["part_count"] == 1
    md5 = base64.b64encode(hashlib.md5(part).digest()).decode()
    url = owner.post(plan["parts_url"], json={"parts": [{"number": 1, "md5": md5}]}).json()["parts"][0]["url"]
    assert http.put(url, content=part, headers={"Content-MD5": md5}).status_code == 200
    store = ObjectStore(settings)
    assert len(store.multipart_uploads(ticket["bucket"], ticket["key"])) == 1
    revoke(settings, name)
    assert_revoked(wait_until(pipeline, ticket["id"], lambda s: s["state"] != "awaiting_upload", timeout=30))
    assert store.multipart_uploads(ticket["bucket"], ticket["key"]) == []
    again = http.put(url, content=part, headers={"Content-MD5": md5})
    assert again.status_code == 404 and b"NoSuchUpload" in again.content
    etag = hashlib.md5(part).hexdigest()
    xml = (
        f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
    )
    completed = httpx.post(plan["complete_url"], content=xml, timeout=30)
    assert completed.status_code >= 400, completed.text  # RGW answers 404 NoSuchUpload or a 500
    assert ObjectStore(settings).client.list_objects_v2(Bucket=ticket["bucket"], Prefix=ticket["key"])["KeyCount"] == 0

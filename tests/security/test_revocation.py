"""Revoking an owner's key against the running stack: its outstanding tickets stop.

A presigned URL cannot be called back: the store accepts a PUT through it until its lifetime ends.
What the revocation stops is everything after: the object is not processed (the upload ends
``revoked`` with the code ``owner_revoked``), a waiting ticket ends ``revoked`` (the watchdog), and
its multipart upload is aborted, so that no part can be added or completed. An owner reinstated
(another key) finds its finished uploads again, and uploads anew.
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
from botocore.exceptions import ClientError

from shared.postgres.connection import connect
from shared.postgres.keys import PostgresKeys
from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings
from shared.s3.store import ObjectStore
from shared.usecases.keys import create_key, revoke_key
from tests import http
from tests.conftest import Pipeline, another_process
from tests.helpers import download
from tests.security.helpers import client, keys_cli, make_s3_owner, s3_as

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024
FASTA = b">a\nACGT\n"
OTHER = b">b\nGGCC\n"  # the same size: the same presigned PUT takes it


def refused(call: Any) -> bool:
    """Whether the store refuses ``call`` for its credentials (unknown, or not allowed)."""
    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"] in ("AccessDenied", "InvalidAccessKeyId", "403", "SignatureDoesNotMatch")
    return False


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


def test_a_revoked_owner_is_reinstated_with_its_uploads(pipeline: Pipeline, settings: Settings) -> None:
    """An owner with an upload done and a ticket waiting, revoked: the ticket ends, its keys and its
    S3 user stop. Reinstated by another key (and S3 user): its done upload reads back with the new
    key, and new uploads, through the intake and with its new S3 credentials, are processed."""
    owner = make_s3_owner(settings, f"rei-{uuid.uuid4().hex[:8]}")
    name, old = owner["name"], client(pipeline, owner["key"])
    ticket = old.post("/uploads", json={"filename": "kept.fa", "size": len(FASTA)}).raise_for_status().json()
    assert http.put(ticket["upload_url"], content=FASTA, headers=ticket.get("upload_headers") or {}).status_code == 200
    done = pipeline.wait_for(ticket["id"])
    assert done["state"] == "done"
    waiting = old.post("/uploads", json={"filename": "never.fa", "size": len(FASTA)}).raise_for_status().json()
    old_s3 = s3_as(settings, owner["access"], owner["secret"])

    revoked = keys_cli(settings, "revoke", name)
    assert revoked.returncode == 0 and "S3 user" in revoked.stdout, revoked.stderr
    assert_revoked(wait_until(pipeline, waiting["id"], lambda s: s["state"] != "awaiting_upload", timeout=30))
    assert old.get(f"/uploads/{ticket['id']}").status_code == 401
    poll_until(
        lambda: refused(lambda: old_s3.put_object(Bucket=settings.uploads_bucket, Key=f"{name}/x.fa", Body=FASTA)),
        timeout=10,  # RGW caches users for a moment
        interval=0.5,
        what="the revoked S3 credentials refused",
    )

    again = keys_cli(settings, "create", name, "--another", "--s3")
    assert again.returncode == 0, again.stderr
    lines = again.stdout.strip().splitlines()
    assert f"owner {name!r} reinstated: its uploads are this key's" in lines
    fields = {line[:15].strip(): line[16:].strip() for line in lines[:-1] if line.startswith("S3 ")}
    new = client(pipeline, lines[-1])
    assert old.get(f"/uploads/{ticket['id']}").status_code == 401  # the revoked key stays revoked

    kept = new.get(f"/uploads/{ticket['id']}")
    assert kept.status_code == 200 and kept.json()["state"] == "done", kept.text
    assert download(kept.json())["records"] == download(done)["records"]
    assert records_of(settings, ticket["id"]) == 1
    assert new.get(f"/uploads/{waiting['id']}").json()["state"] == "revoked"  # what ended stays ended

    fresh = new.post("/uploads", json={"filename": "fresh.fa", "size": len(OTHER)}).raise_for_status().json()
    assert http.put(fresh["upload_url"], content=OTHER, headers=fresh.get("upload_headers") or {}).status_code == 200
    assert pipeline.wait_for(fresh["id"])["state"] == "done"
    new_s3 = s3_as(settings, fields["S3 access key"], fields["S3 secret key"])
    direct = f"{name}/direct/{uuid.uuid4()}.fa"
    poll_until(  # RGW caches users (and their absence) for a moment
        lambda: not refused(lambda: new_s3.put_object(Bucket=settings.uploads_bucket, Key=direct, Body=FASTA)),
        timeout=30,
        interval=1,
        what="the reinstated owner's new S3 credentials taken",
    )
    assert pipeline.wait_for_object(settings.uploads_bucket, direct)["state"] == "done"
    seen = new.get("/uploads/lookup", params={"bucket": settings.uploads_bucket, "key": direct})
    assert seen.status_code == 200 and seen.json()["state"] == "done"

"""The S3 adapter against the run's real object store."""

from __future__ import annotations

import os
import uuid
from itertools import pairwise

import pytest

from shared.runtime.settings import Settings
from shared.s3.store import UPLOAD_CONTENT_TYPE, ObjectChanged, ObjectStore
from tests import http

pytestmark = pytest.mark.integration
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def store(settings: Settings) -> ObjectStore:
    return ObjectStore(settings)


def _key() -> str:
    return f"itest/{uuid.uuid4().hex}"


def test_ranged_reads_reassemble_the_object(store: ObjectStore, settings: Settings) -> None:
    data = os.urandom(3 * MiB + 123)
    key = _key()
    etag = store.client.put_object(Bucket=settings.results_bucket, Key=key, Body=data)["ETag"].strip('"')
    pieces = list(store.iter_ranges(settings.results_bucket, key, len(data), etag, MiB))
    assert [len(p) for p in pieces] == [MiB, MiB, MiB, 123]
    assert b"".join(pieces) == data
    tail = b"".join(store.iter_ranges(settings.results_bucket, key, len(data), etag, MiB, start=2 * MiB + 5))
    assert tail == data[2 * MiB + 5 :]


def test_reads_are_pinned_to_the_etag(store: ObjectStore, settings: Settings) -> None:
    key = _key()
    old = store.client.put_object(Bucket=settings.results_bucket, Key=key, Body=b"one")["ETag"].strip('"')
    store.client.put_object(Bucket=settings.results_bucket, Key=key, Body=b"two!")
    with pytest.raises(ObjectChanged):
        list(store.iter_ranges(settings.results_bucket, key, 3, old, MiB))


def test_multipart_writer_streams_parts(store: ObjectStore, settings: Settings) -> None:
    key = _key()
    data = os.urandom(23 * MiB + 17)
    # Writes that straddle parts, an empty one, and one that holds more than two whole parts.
    cuts = [*range(0, 3 * MiB, 777_777), 3 * MiB, 3 * MiB, 15 * MiB, *range(16 * MiB, len(data), MiB), len(data)]
    with store.multipart_writer(settings.results_bucket, key, 5 * MiB, "application/octet-stream") as out:
        for start, end in pairwise(cuts):
            out.write(data[start:end])
    assert out.size == len(data)
    response = store.client.get_object(Bucket=settings.results_bucket, Key=key)
    assert response["Body"].read() == data
    assert response["ETag"].strip('"').endswith("-5")  # four parts of 5 MiB and the rest


def test_multipart_writer_aborts_on_error(store: ObjectStore, settings: Settings) -> None:
    key = _key()
    with (
        pytest.raises(RuntimeError),
        store.multipart_writer(settings.results_bucket, key, 5 * MiB, "application/json") as out,
    ):
        out.write(os.urandom(6 * MiB))
        raise RuntimeError("producer died")
    listing = store.client.list_objects_v2(Bucket=settings.results_bucket, Prefix=key)
    assert listing.get("KeyCount", 0) == 0
    assert store.multipart_uploads(settings.results_bucket, key) == []


def test_stale_multipart_uploads_are_aborted(store: ObjectStore, settings: Settings) -> None:
    key = _key()
    store.client.create_multipart_upload(Bucket=settings.results_bucket, Key=key)
    store.client.create_multipart_upload(Bucket=settings.results_bucket, Key=key + "-other")
    assert [u["Key"] for u in store.multipart_uploads(settings.results_bucket, key)] == [key]
    assert store.abort_stale_multipart(settings.results_bucket, key) == 1
    assert store.multipart_uploads(settings.results_bucket, key) == []
    # the other key's upload is untouched (listed by its own exact key, as on MinIO)
    assert [u["Key"] for u in store.multipart_uploads(settings.results_bucket, key + "-other")] == [key + "-other"]


def test_presigned_put_is_scoped_to_one_key(store: ObjectStore, settings: Settings) -> None:
    key = _key()
    url = store.presign_put(settings.results_bucket, key, 60, len(b">a\nAC\n"))
    assert http.put(url, content=b">a\nAC\n", headers={"Content-Type": UPLOAD_CONTENT_TYPE}).status_code == 200
    other = url.replace(key, key + "x")
    assert http.put(other, content=b">a\nAC\n", headers={"Content-Type": UPLOAD_CONTENT_TYPE}).status_code == 403
    get = store.presign_get(settings.results_bucket, key, 60)
    assert http.get(get).content == b">a\nAC\n"

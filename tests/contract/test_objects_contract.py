"""The object store's ports (``ObjectReader``, ``ResultWriter``, ``UploadTickets``): the unit tests'
``FakeObjects`` and ``FakeResults`` and the ``ObjectStore`` adapter on the run's real store pass the
same tests, so a handler tested on the fakes meets the same store in production.

Each side also says how a test arranges what the ports do not write themselves: an object put by a
client, and the unfinished multipart upload a crashed writer leaves behind.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shared.domain.ports import ObjectChanged, ObjectLister, ObjectReader, ObjectRemover, ResultWriter, UploadTickets
from shared.runtime.settings import Settings
from shared.s3.store import UPLOAD_CONTENT_TYPE, ObjectStore
from tests.unit.fakes import FakeObjects, FakeResults

MiB = 1024 * 1024


@dataclass
class ObjectsSide:
    reader: ObjectReader
    results: ResultWriter
    tickets: UploadTickets
    remover: ObjectRemover
    bucket: str
    _fake_objects: FakeObjects | None = None
    _fake_results: FakeResults | None = None
    _store: ObjectStore | None = None

    def put(self, key: str, data: bytes) -> str:
        """An object written by a client (through a ticket: the ticket's content type); its etag."""
        if self._fake_objects is not None:
            etag = hashlib.md5(data).hexdigest()
            self._fake_objects.put(self.bucket, key, data, etag)
            return etag
        assert self._store is not None
        response = self._store.client.put_object(
            Bucket=self.bucket, Key=key, Body=data, ContentType=UPLOAD_CONTENT_TYPE
        )
        return str(response["ETag"]).strip('"')

    def document(self, key: str) -> bytes | None:
        """The finished result document at ``key``, or None."""
        if self._fake_results is not None:
            return self._fake_results.documents.get((self.bucket, key))
        assert self._store is not None
        try:
            body: Any = self._store.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise
        return bytes(body.read())

    def crashed_writer(self, key: str) -> None:
        """What a writer killed in the middle leaves: an unfinished multipart upload of ``key``."""
        if self._fake_results is not None:
            self._fake_results.open.add((self.bucket, key))
            return
        assert self._store is not None
        self._store.client.create_multipart_upload(Bucket=self.bucket, Key=key)


@pytest.fixture(params=["fake", "s3"])
def side(request: pytest.FixtureRequest) -> Iterator[ObjectsSide]:
    if request.param == "fake":
        objects, results = FakeObjects(), FakeResults()
        yield ObjectsSide(objects, results, objects, objects, "results", _fake_objects=objects, _fake_results=results)
        return
    settings: Settings = request.getfixturevalue("settings")
    store = ObjectStore(settings)
    yield ObjectsSide(store, store, store, store, settings.results_bucket, _store=store)


def _key() -> str:
    return f"contract/{uuid.uuid4().hex}"


def test_an_object_absent_is_none_and_one_put_is_shown_with_its_etag_and_size(side: ObjectsSide) -> None:
    key = _key()
    assert side.reader.stat(side.bucket, key) is None
    assert not side.reader.exists(side.bucket, key)
    etag = side.put(key, b">a\nACGT\n")
    stat = side.reader.stat(side.bucket, key)
    assert stat is not None and (stat.etag, stat.size, stat.unsigned_attributes) == (etag, 8, ())
    assert side.reader.exists(side.bucket, key)


def test_a_listing_shows_an_object_by_its_exact_key_and_a_removal_removes_it(side: ObjectsSide) -> None:
    key = _key()
    assert side.tickets.listed(side.bucket, key) is None
    longer = side.put(key + "-longer", b">b\nAC\n")  # a key the first one is a prefix of
    assert side.tickets.listed(side.bucket, key) is None
    etag = side.put(key, b">a\nACGT\n")
    listed = side.tickets.listed(side.bucket, key)
    assert listed is not None and (listed.etag, listed.size) == (etag, 8)
    assert side.reader.stat(side.bucket, key) == listed  # the same etag as a HEAD
    side.remover.remove(side.bucket, [key])
    assert side.tickets.listed(side.bucket, key) is None and not side.reader.exists(side.bucket, key)
    side.remover.remove(side.bucket, [key])  # nothing there: nothing happens
    assert side.tickets.listed(side.bucket, key + "-longer") is not None and longer


def test_ranges_give_the_object_back_in_order_from_any_start(side: ObjectsSide) -> None:
    key, data = _key(), os.urandom(3 * MiB + 123)
    etag = side.put(key, data)
    pieces = list(side.reader.iter_ranges(side.bucket, key, len(data), etag, MiB))
    assert [len(piece) for piece in pieces] == [MiB, MiB, MiB, 123]
    assert b"".join(pieces) == data
    start = 2 * MiB + 5
    assert b"".join(side.reader.iter_ranges(side.bucket, key, len(data), etag, MiB, start=start)) == data[start:]
    assert list(side.reader.iter_ranges(side.bucket, key, len(data), etag, MiB, start=len(data))) == []


def test_ranges_are_pinned_to_the_etag_they_were_asked_for(side: ObjectsSide) -> None:
    key = _key()
    old = side.put(key, b"one")
    side.put(key, b"two!")
    with pytest.raises(ObjectChanged):
        list(side.reader.iter_ranges(side.bucket, key, 3, old, MiB))


def test_a_result_written_in_pieces_is_one_document_of_their_bytes(side: ObjectsSide) -> None:
    key, data = _key(), os.urandom(11 * MiB + 7)
    with side.results.multipart_writer(side.bucket, key, 5 * MiB, "application/json") as out:
        for offset in range(0, len(data), 3 * MiB):
            out.write(data[offset : offset + 3 * MiB])
        out.write(b"")
    assert out.size == len(data)
    assert side.document(key) == data
    assert side.results.abort_stale_multipart(side.bucket, key) == 0


def test_a_result_whose_writer_fails_leaves_no_document_and_nothing_unfinished(side: ObjectsSide) -> None:
    key = _key()
    writer = side.results.multipart_writer(side.bucket, key, 5 * MiB, "application/json")
    with pytest.raises(RuntimeError, match="the assembler failed"), writer as out:
        out.write(b"x" * (6 * MiB))
        raise RuntimeError("the assembler failed")
    assert side.document(key) is None
    assert side.results.abort_stale_multipart(side.bucket, key) == 0


def test_parts_smaller_than_the_stores_minimum_are_refused(side: ObjectsSide) -> None:
    with pytest.raises(ValueError, match="5 MiB"):
        side.results.multipart_writer(side.bucket, _key(), 5 * MiB - 1, "application/json")


def test_what_a_crashed_writer_left_is_aborted_once(side: ObjectsSide) -> None:
    key = _key()
    side.crashed_writer(key)
    assert side.results.abort_stale_multipart(side.bucket, key) == 1
    assert side.results.abort_stale_multipart(side.bucket, key) == 0


def test_a_clients_multipart_upload_starts_empty_and_is_aborted_once(side: ObjectsSide) -> None:
    key = _key()
    upload_id = side.tickets.start_multipart(side.bucket, key)
    assert upload_id
    assert side.tickets.parts(side.bucket, key, upload_id) == []
    assert side.tickets.abort_multipart(side.bucket, key, upload_id) is True
    assert side.tickets.abort_multipart(side.bucket, key, upload_id) is False


def test_removed_objects_are_gone_and_removing_again_or_a_missing_one_is_no_error(side: ObjectsSide) -> None:
    kept, gone = _key(), _key()
    side.put(kept, b"kept")
    side.put(gone, b"gone")
    side.remover.remove(side.bucket, [gone, _key()])
    assert side.reader.stat(side.bucket, gone) is None
    assert side.reader.stat(side.bucket, kept) is not None
    side.remover.remove(side.bucket, [gone])
    side.remover.remove(side.bucket, [])
    side.remover.remove(side.bucket, [kept])
    assert not side.reader.exists(side.bucket, kept)


def test_every_unfinished_multipart_upload_of_a_key_is_aborted_by_the_remover(side: ObjectsSide) -> None:
    key = _key()
    upload_id = side.tickets.start_multipart(side.bucket, key)
    assert side.remover.abort_stale_multipart(side.bucket, key) == 1
    assert side.remover.abort_stale_multipart(side.bucket, key) == 0
    assert side.tickets.abort_multipart(side.bucket, key, upload_id) is False


def test_signed_urls_name_the_object_they_sign_for(side: ObjectsSide) -> None:
    key = _key()
    upload_id = side.tickets.start_multipart(side.bucket, key)
    try:
        urls = [
            side.tickets.presign_put(side.bucket, key, 60, 10),
            side.tickets.presign_get(side.bucket, key, 60),
            side.tickets.presign_part(side.bucket, key, upload_id, 1, "1B2M2Y8AsgTpgAmY7PhCfg==", 0, 60),
            side.tickets.presign_multipart("complete_multipart_upload", side.bucket, key, upload_id, 60),
        ]
    finally:
        side.tickets.abort_multipart(side.bucket, key, upload_id)
    assert all(f"/{side.bucket}/{key}?" in url for url in urls), urls
    assert all(upload_id in url for url in urls[2:]), urls


def test_a_listing_walks_the_bucket_in_key_order_from_any_key(side: ObjectsSide) -> None:
    """The reconciler's ``ObjectLister``: pages after a key, and one key's entry with its write time."""
    prefix = _key()
    etags = {f"{prefix}/{n}": side.put(f"{prefix}/{n}", b">a\nAC\n" * (n + 1)) for n in range(5)}
    lister: ObjectLister = side._fake_objects or side._store  # type: ignore[assignment]
    start = f"{prefix}/"
    seen = []
    while True:
        page, more = lister.list_page(side.bucket, start, 2)
        assert len(page) <= 2
        seen += [entry for entry in page if entry.key.startswith(prefix)]
        if not more or not page or not page[-1].key.startswith(prefix):
            break
        start = page[-1].key
    assert [(e.key, e.etag, e.size) for e in seen] == [(k, etags[k], 6 * (n + 1)) for n, k in enumerate(etags)]
    one = lister.listed_object(side.bucket, f"{prefix}/3")
    assert one is not None and (one.key, one.etag) == (f"{prefix}/3", etags[f"{prefix}/3"])
    assert abs((datetime.now(UTC) - one.last_modified).total_seconds()) < 120
    assert lister.listed_object(side.bucket, f"{prefix}/") is None  # a prefix of keys, no object

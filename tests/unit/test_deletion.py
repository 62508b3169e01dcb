"""Deleting an upload: the decisions, the use case and each stage's answer to a deleted upload, on fakes."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from services.assembler.handler import AssemblerDeps, handle_assemble
from services.intake.api import IntakeDeps
from services.intake.app import build_app
from services.parser.handler import ParserDeps, handle_parse
from services.watchdog.handler import WatchdogDeps, sweep
from shared.domain.access import Caller
from shared.domain.messages import AssembleRequested, ParseCompleted, SequenceBatch
from shared.domain.seqcol import Collection
from shared.domain.uploads import (
    ClaimAction,
    ClaimDecision,
    NameCounts,
    ObjectCreated,
    ResultLocation,
    State,
    decide_claim,
    needs_object_check,
    result_keys,
)
from shared.runtime.settings import Settings
from shared.usecases.uploads import Intake, NoSuchUpload, delete_upload
from shared.web.guard import Unauthorized
from tests.builders import record, sequence_batch
from tests.unit.fakes import FakeObjects, FakePublisher, FakeResults, FakeUploads, make_upload
from tests.unit.fakes_records import FakeRecords

SETTINGS = Settings(read_range_bytes=4096, part_bytes=1024, batch_bytes=4096)
BUCKET = SETTINGS.uploads_bucket
RESULTS = SETTINGS.results_bucket
ALICE = Caller("alice", admin=False)
CONTENT = b"".join(b">r%d\n" % i + b"ACGT" * 500 + b"\n" for i in range(50))  # 100 KB, many batches


def _deleted(uploads: FakeUploads, **changes: object) -> uuid.UUID:
    upload = uploads.add(make_upload(id=uuid.uuid4(), bucket=BUCKET, key="alice/1/a.fa", owner="alice", **changes))
    assert uploads.delete(upload.id) is not None
    return upload.id


def _holding(content: bytes) -> FakeObjects:
    objects = FakeObjects()
    objects.put(BUCKET, "x.fa", content, "e")
    return objects


def test_an_event_at_a_deleted_uploads_key_changes_nothing_but_asks_for_a_purge() -> None:
    deleted = make_upload(state=State.DELETED, etag="e1")
    for etag in ("e1", "e2"):  # the late event of its object, or an object written again
        event = ObjectCreated(bucket="b", key="k", size=1, etag=etag)
        assert decide_claim(deleted, event) is ClaimDecision.DELETED
    assert not needs_object_check(ClaimDecision.DELETED)
    uploads = FakeUploads()
    upload_id = _deleted(uploads, etag="e1")
    uploads.mark_purged(upload_id, uploads.uploads[upload_id].purge_requested_at)  # type: ignore[arg-type]
    claim = uploads.claim(ObjectCreated(bucket=BUCKET, key="alice/1/a.fa", size=1, etag="e2"), confirmed=True)
    assert claim.action is ClaimAction.DELETED
    after = uploads.uploads[upload_id]
    assert after.state is State.DELETED and after.generation == 1 and after.purged_at is None


def test_the_owner_or_an_admin_deletes_another_owner_cannot_and_twice_answers_the_same() -> None:
    uploads, objects = FakeUploads(), FakeObjects()
    upload = uploads.add(make_upload(id=uuid.uuid4(), owner="alice", state=State.DONE, result_key="r", records_done=9))
    uploads.records[upload.id] = [record(0)]
    intake = Intake(SETTINGS, uploads, objects)
    with pytest.raises(NoSuchUpload):
        delete_upload(intake, Caller("bob", admin=False), upload.id)
    assert uploads.uploads[upload.id].state is State.DONE
    first = delete_upload(intake, ALICE, upload.id)
    assert first.upload.state is State.DELETED and first.result is None and first.collection_digest is None
    assert first.upload.records_done == 0 and first.upload.result_key is None and upload.id not in uploads.records
    again = delete_upload(Intake(SETTINGS, uploads, objects), Caller("root", admin=True), upload.id)
    assert again.upload == first.upload
    with pytest.raises(NoSuchUpload):
        delete_upload(intake, ALICE, uuid.uuid4())


def test_a_late_batch_or_parse_end_of_a_deleted_upload_stores_nothing() -> None:
    uploads = FakeUploads()
    upload_id = _deleted(uploads, state=State.PERSISTING)
    batch = sequence_batch(upload_id, 1, 0, [record(0)])
    assert not uploads.store_batch(batch).stored
    done = ParseCompleted(
        upload_id=upload_id, generation=1, batch_count=1, record_count=1, source_bytes=1, format="fasta"
    )
    assert not uploads.record_parse_completed(done).stored
    assert upload_id not in uploads.records and uploads.uploads[upload_id].state is State.DELETED


def test_a_parse_stops_at_the_next_batch_once_its_upload_is_deleted() -> None:
    uploads, objects, publisher = FakeUploads(), FakeObjects(), FakePublisher()
    event = objects.put(BUCKET, "alice/direct.fa", CONTENT, "e1")
    uploads.owners.add("alice")

    def delete_midway(number: int) -> None:
        if number == 3:
            upload = uploads.find(BUCKET, "alice/direct.fa")
            assert upload is not None and uploads.delete(upload.id) is not None

    undisturbed = FakePublisher()
    handle_parse(
        [FakeObjects().put(BUCKET, "x.fa", CONTENT, "e")],
        ParserDeps(SETTINGS, FakeUploads(), _holding(CONTENT), undisturbed),
    )
    objects.on_read = delete_midway
    handle_parse([event], ParserDeps(SETTINGS, uploads, objects, publisher))
    batches = [m for m in publisher.messages if isinstance(m, SequenceBatch)]
    assert 0 < len(batches) < len([m for m in undisturbed.messages if isinstance(m, SequenceBatch)])
    assert not any(isinstance(m, ParseCompleted) for m in publisher.messages)


def test_a_result_finished_after_the_delete_is_left_to_a_new_purge() -> None:
    uploads, results = FakeUploads(), FakeResults()
    upload = uploads.add(make_upload(id=uuid.uuid4(), state=State.ASSEMBLING))
    uploads.delete(upload.id)
    uploads.mark_purged(upload.id, uploads.uploads[upload.id].purge_requested_at)  # type: ignore[arg-type]
    collection = Collection("d", "n", "l", "s", "p", "sp", "so", 0)
    location = ResultLocation(RESULTS, "k", 1, 0)
    assert not uploads.finish_assembly(upload.id, 1, location, NameCounts(0, 0), collection)
    assert uploads.uploads[upload.id].purged_at is None and uploads.purges_owed() == [uploads.uploads[upload.id]]
    uploads.mark_purged(upload.id, uploads.uploads[upload.id].purge_requested_at)  # type: ignore[arg-type]
    # a redelivered request (its first delivery died between its document and its finish)
    handle_assemble(AssembleRequested(upload_id=upload.id, generation=1), AssemblerDeps(SETTINGS, uploads, results))
    assert results.documents == {}  # nothing assembled for a deleted upload
    assert uploads.purges_owed() == [uploads.uploads[upload.id]]  # and what it may have left is purged


def test_the_watchdog_purges_the_object_the_multipart_upload_and_every_result_once() -> None:
    uploads, objects = FakeUploads(), FakeObjects()
    upload_id = _deleted(uploads, generation=2, multipart_upload_id="m1", state=State.ASSEMBLING)
    upload = uploads.uploads[upload_id]
    objects.put(BUCKET, upload.key, b"x", "e1")
    objects.multipart |= {(BUCKET, upload.key, "m1"), (RESULTS, f"{upload_id}/generation-2.json", "r1")}
    for key in result_keys(upload):
        objects.put(RESULTS, key, b"{}", key)
    objects.put(RESULTS, "other/generation-1.json", b"{}", "o")
    deps = WatchdogDeps(SETTINGS, uploads, FakePublisher(), objects)
    sweep(deps)
    assert set(objects.objects) == {(RESULTS, "other/generation-1.json")} and objects.multipart == set()
    assert uploads.uploads[upload_id].purged_at is not None and uploads.purges_owed() == []
    # an object written at its key again (through a ticket's URL still valid): its event asks again
    handle_parse(
        [objects.put(BUCKET, upload.key, b">a\nAC\n", "e2")], ParserDeps(SETTINGS, uploads, objects, FakePublisher())
    )
    assert uploads.uploads[upload_id].state is State.DELETED and uploads.purges_owed() != []
    sweep(deps)
    assert not objects.exists(BUCKET, upload.key) and uploads.purges_owed() == []


def test_a_purge_asked_for_again_meanwhile_is_not_marked_done() -> None:
    uploads = FakeUploads()
    upload_id = _deleted(uploads)
    requested = uploads.uploads[upload_id].purge_requested_at
    assert requested is not None
    assert uploads.reopen_purge(upload_id)
    assert not uploads.mark_purged(upload_id, requested)  # the sweep that read the first request
    assert uploads.purges_owed() == [uploads.uploads[upload_id]]


def test_the_route_answers_202_with_the_tombstone_again_and_404_for_another_owner() -> None:
    uploads, objects = FakeUploads(), FakeObjects()
    upload = uploads.add(make_upload(id=uuid.uuid4(), owner="alice", state=State.PARSING))

    def client(caller: Caller) -> TestClient:
        def authenticate(header: str | None) -> Caller:
            if header is None:
                raise Unauthorized("no key")
            return caller

        deps = IntakeDeps(Intake(SETTINGS, uploads, objects), authenticate, {}, FakeRecords(uploads))
        return TestClient(build_app(deps), headers={"Authorization": "Bearer k"})

    assert client(Caller("bob", admin=False)).delete(f"/uploads/{upload.id}").status_code == 404
    alice = client(ALICE)
    first = alice.delete(f"/uploads/{upload.id}")
    assert first.status_code == 202, first.text
    body = first.json()
    assert body["state"] == "deleted" and body["deletion"]["purged"] is False and body["result"] is None
    again = alice.delete(f"/uploads/{upload.id}")
    assert again.status_code == 202 and again.json()["deletion"] == body["deletion"]
    assert alice.get(f"/uploads/{upload.id}").json()["state"] == "deleted"
    missing = alice.delete(f"/uploads/{uuid.uuid4()}")
    assert missing.status_code == 404

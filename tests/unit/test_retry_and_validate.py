"""Retrying a failed upload and validating a file without storing it: the domain's moves, the use
case over fakes, the routes, the parser in validate mode and the watchdog's removal of validated
objects."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from fastapi.testclient import TestClient

from services.intake.api import IntakeDeps
from services.intake.app import build_app
from services.parser.handler import ParserDeps, handle_parse
from services.persister.handler import PersisterDeps, handle_persist
from services.watchdog.handler import WatchdogDeps, sweep
from shared.domain.access import Caller
from shared.domain.events import normalise_event
from shared.domain.messages import SequenceBatch
from shared.domain.seqcol import CollectionDigester
from shared.domain.uploads import (
    RETRY,
    ClaimAction,
    Failure,
    Mode,
    OwnerUsage,
    PipelineErrorCode,
    QuotaCode,
    QuotaExceeded,
    Quotas,
    RetryRefusal,
    State,
    Upload,
    Validation,
    decide_claim,
    next_states,
    retry_quota_refusal,
    retry_refusal,
)
from shared.parsing.errors import ParseErrorCode
from shared.runtime.settings import Settings
from shared.usecases.uploads import (
    CannotRetry,
    Intake,
    NoSuchUpload,
    RetryNotPublished,
    UploadWanted,
    register_upload,
    retry_upload,
)
from tests.builders import record, sequence_batch
from tests.problems import problem
from tests.reference import fasta_records
from tests.unit.fakes import FakeObjects, FakePublisher, FakeUploads, make_upload
from tests.unit.fakes_records import FakeRecords

SETTINGS = Settings(read_range_bytes=64, part_bytes=1024, batch_bytes=4096)
BUCKET = SETTINGS.uploads_bucket
FASTA = b">a first\nACGT\n>b\nGGCC\n>a again\n\n>long\n" + b"ACGT" * 3000 + b"\n"
ALICE = Caller("alice", admin=False)


def failed_upload(uploads: FakeUploads, objects: FakeObjects, *, owner: str = "alice", key: str = "k.fa") -> Upload:
    """A stored upload whose generation 1 failed for a reason that is not the file's (a stage gave up)."""
    objects.put(BUCKET, key, FASTA, "e1")
    return uploads.add(
        make_upload(
            id=uuid.uuid4(), bucket=BUCKET, key=key, owner=owner, state=State.FAILED, generation=1, etag="e1",
            bytes_total=len(FASTA), error_code=PipelineErrorCode.PERSIST_FAILED.value, error_message="gave up",
            error_id="x1", finished_at=datetime.now(UTC),
        )
    )  # fmt: skip


# --- the domain -----------------------------------------------------------------------------------


def test_a_retry_moves_only_a_failed_upload_back_to_queued() -> None:
    assert RETRY.sources == {State.FAILED} and RETRY.target is State.QUEUED
    assert State.QUEUED in next_states(State.FAILED)


@pytest.mark.parametrize(
    ("state", "stored", "refusal"),
    [
        (State.FAILED, "e", None),
        (State.FAILED, None, RetryRefusal.OBJECT_GONE),
        (State.FAILED, "other", RetryRefusal.OBJECT_CHANGED),
        (State.DONE, "e", RetryRefusal.NOT_FAILED),
        (State.PARSING, "e", RetryRefusal.NOT_FAILED),
        (State.AWAITING_UPLOAD, None, RetryRefusal.NOT_FAILED),
        (State.REVOKED, "e", RetryRefusal.NOT_FAILED),
    ],
)
def test_what_a_retry_is_refused_for(state: State, stored: str | None, refusal: RetryRefusal | None) -> None:
    assert retry_refusal(make_upload(state=state, etag="e"), stored) is refusal


def test_a_failed_upload_without_an_object_is_not_retried() -> None:
    assert retry_refusal(make_upload(state=State.FAILED, etag=None), None) is RetryRefusal.NOT_FAILED


def test_a_retry_is_held_to_the_uploads_in_flight_only() -> None:
    quotas = Quotas(stored_bytes=10, uploads_in_flight=2, open_multipart_uploads=1, registrations_per_minute=1)
    room = OwnerUsage(
        stored_bytes=10**9, in_flight=1, open_multipart_uploads=5, registrations=50, oldest_registration_age=None
    )
    assert retry_quota_refusal(room, quotas) is None  # over the bytes and the rate: not what a retry adds
    full = OwnerUsage(
        stored_bytes=0, in_flight=2, open_multipart_uploads=0, registrations=0, oldest_registration_age=None
    )
    refusal = retry_quota_refusal(full, quotas)
    assert refusal is not None and refusal.code is QuotaCode.IN_FLIGHT and refusal.retry_after is not None


def test_the_new_generation_takes_the_objects_event_as_its_own() -> None:
    """After a retry the object's event (the retry's, a late copy of the failed one's, a watchdog
    re-issue) resumes the new generation: the etag is the same, so no further generation starts."""
    retried = make_upload(state=State.QUEUED, generation=2, etag="e")
    late = normalise_event(_event_body("e"))[0]
    assert decide_claim(retried, late).action is ClaimAction.PARSE  # the same generation 2, resumed
    assert decide_claim(make_upload(state=State.PERSISTING, generation=2, etag="e"), late).action is (
        ClaimAction.DUPLICATE
    )


def test_a_validation_report_round_trips_through_json() -> None:
    report = Validation(4, "fasta", 10, "m", "s", "d")
    assert Validation.from_json(orjson.loads(orjson.dumps(report.to_json()))) == report


def test_the_collection_digest_alone_is_the_full_collections() -> None:
    digester = CollectionDigester()
    digester.add_many(["a", "b"], [4, 2], ["SQ.x", "SQ.y"])
    full = digester.finish(["p1", "p2"], ["SQ.x", "SQ.y"])
    assert digester.digest() == full.digest


def _event_body(etag: str, key: str = "k.fa", size: int = len(FASTA)) -> bytes:
    record = {
        "eventName": "ObjectCreated:Put",
        "eventTime": datetime.now(UTC).isoformat(),
        "s3": {"bucket": {"name": BUCKET}, "object": {"key": key, "size": size, "eTag": etag}},
    }
    return orjson.dumps({"Records": [record]})


# --- the use case ---------------------------------------------------------------------------------


@pytest.fixture
def events() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def intake(uploads: FakeUploads, objects: FakeObjects, events: FakePublisher) -> Intake:
    return Intake(SETTINGS, uploads, objects, events)


def test_a_retry_starts_a_new_generation_and_publishes_its_event(
    intake: Intake, uploads: FakeUploads, objects: FakeObjects, events: FakePublisher
) -> None:
    failed = failed_upload(uploads, objects)
    retried = retry_upload(intake, ALICE, failed.id)
    assert (retried.state, retried.generation, retried.etag) == (State.QUEUED, 2, "e1")
    assert retried.failure is None and retried.error_code is None and retried.finished_at is None
    (event,) = [normalise_event(body) for body in events.events]
    assert [(e.bucket, e.key, e.etag, e.size) for e in event] == [(BUCKET, "k.fa", "e1", len(FASTA))]


def test_a_second_retry_finds_the_upload_no_longer_failed(
    intake: Intake, uploads: FakeUploads, objects: FakeObjects, events: FakePublisher
) -> None:
    failed = failed_upload(uploads, objects)
    retry_upload(intake, ALICE, failed.id)
    with pytest.raises(CannotRetry) as refused:
        retry_upload(intake, ALICE, failed.id)
    assert (refused.value.code, refused.value.state) == ("not_failed", State.QUEUED)
    assert uploads.uploads[failed.id].generation == 2 and len(events.events) == 1


def test_two_retries_at_once_make_one_generation(uploads: FakeUploads, objects: FakeObjects) -> None:
    """Both looked before either wrote: the store's ``WHERE state = 'failed'`` lets one through."""
    failed = failed_upload(uploads, objects)
    assert uploads.retry(failed.id, "e1") is not None
    assert uploads.retry(failed.id, "e1") is None
    assert uploads.uploads[failed.id].generation == 2


def test_a_retry_is_refused_when_the_object_is_gone_or_changed(
    intake: Intake, uploads: FakeUploads, objects: FakeObjects, events: FakePublisher
) -> None:
    failed = failed_upload(uploads, objects)
    objects.put(BUCKET, "k.fa", b">x\nAC\n", "e2")
    with pytest.raises(CannotRetry) as changed:
        retry_upload(intake, ALICE, failed.id)
    assert changed.value.code == "object_changed"
    objects.remove(BUCKET, ["k.fa"])
    with pytest.raises(CannotRetry) as gone:
        retry_upload(intake, ALICE, failed.id)
    assert (gone.value.code, gone.value.state) == ("object_gone", State.FAILED)
    assert uploads.uploads[failed.id].generation == 1 and events.events == []


@pytest.mark.parametrize("state", [State.DONE, State.PARSING, State.AWAITING_UPLOAD, State.EXPIRED])
def test_only_a_failed_upload_is_retried(
    intake: Intake, uploads: FakeUploads, objects: FakeObjects, events: FakePublisher, state: State
) -> None:
    upload = uploads.add(make_upload(id=uuid.uuid4(), bucket=BUCKET, key="k.fa", owner="alice", state=state))
    with pytest.raises(CannotRetry) as refused:
        retry_upload(intake, ALICE, upload.id)
    assert (refused.value.code, refused.value.state) == ("not_failed", state) and events.events == []


def test_another_owners_upload_is_no_such_upload(intake: Intake, uploads: FakeUploads, objects: FakeObjects) -> None:
    failed = failed_upload(uploads, objects, owner="bob")
    with pytest.raises(NoSuchUpload):
        retry_upload(intake, ALICE, failed.id)
    assert uploads.uploads[failed.id].state is State.FAILED


def test_a_retry_whose_publish_fails_stays_queued_for_the_watchdog(
    intake: Intake, uploads: FakeUploads, objects: FakeObjects, events: FakePublisher
) -> None:
    failed = failed_upload(uploads, objects)
    events.fail_with = ConnectionError("broker away")
    with pytest.raises(RetryNotPublished) as unpublished:
        retry_upload(intake, ALICE, failed.id)
    assert unpublished.value.upload.state is State.QUEUED and unpublished.value.upload.generation == 2
    # the watchdog's stall pick-up covers queued: it re-issues the parse message
    queued = uploads.uploads[failed.id]
    uploads.uploads[failed.id] = dataclasses.replace(queued, updated_at=datetime.now(UTC) - timedelta(hours=1))
    watchdog = FakePublisher()
    (picked,) = sweep(WatchdogDeps(Settings(stall_after_seconds=60), uploads, watchdog, objects))
    assert picked.id == failed.id and [e.etag for e in normalise_event(watchdog.events[0])] == ["e1"]


def test_a_retry_is_held_to_the_owners_uploads_in_flight(
    uploads: FakeUploads, objects: FakeObjects, events: FakePublisher
) -> None:
    intake = Intake(Settings(quota_uploads_in_flight=1), uploads, objects, events)
    failed = failed_upload(uploads, objects)
    uploads.add(make_upload(id=uuid.uuid4(), key="busy.fa", owner="alice", state=State.PARSING))
    with pytest.raises(QuotaExceeded):
        retry_upload(intake, ALICE, failed.id)
    assert uploads.uploads[failed.id].state is State.FAILED
    assert retry_upload(intake, Caller("root", admin=True), failed.id).generation == 2  # admins: no quotas


def test_a_validation_counts_in_flight_and_its_bytes_until_its_object_is_removed(
    uploads: FakeUploads, objects: FakeObjects
) -> None:
    intake = Intake(Settings(quota_stored_bytes=100, quota_uploads_in_flight=2), uploads, objects)
    big = UploadWanted("big.fa", 1000, None, "nucleotide", mode=Mode.VALIDATE)
    with pytest.raises(QuotaExceeded) as refused:  # its object would hold the store's space meanwhile
        register_upload(intake, ALICE, big)
    assert refused.value.refusal.code is QuotaCode.STORAGE
    small = UploadWanted("small.fa", 40, None, "nucleotide", mode=Mode.VALIDATE)
    first = register_upload(intake, ALICE, small)
    assert uploads.uploads[first.upload_id].mode == "validate"
    register_upload(intake, ALICE, small)
    with pytest.raises(QuotaExceeded) as refused:
        register_upload(intake, ALICE, small)
    assert refused.value.refusal.code is QuotaCode.IN_FLIGHT
    # ended and its object removed by the watchdog: neither its bytes nor its place count any more
    removed = datetime.now(UTC)
    uploads.uploads[first.upload_id] = dataclasses.replace(
        uploads.uploads[first.upload_id], state=State.DONE, etag="e", object_removed_at=removed
    )
    register_upload(intake, ALICE, small)


# --- the routes -----------------------------------------------------------------------------------


def served(uploads: FakeUploads, objects: FakeObjects, events: FakePublisher) -> TestClient:
    deps = IntakeDeps(Intake(SETTINGS, uploads, objects, events), lambda header: ALICE, {}, FakeRecords(uploads))
    return TestClient(build_app(deps), raise_server_exceptions=False)


def test_the_retry_route(uploads: FakeUploads, objects: FakeObjects, events: FakePublisher) -> None:
    client = served(uploads, objects, events)
    failed = failed_upload(uploads, objects)
    answer = client.post(f"/uploads/{failed.id}/retry")
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert (body["state"], body["generation"], body["error"], body["mode"]) == ("queued", 2, None, "store")
    again = client.post(f"/uploads/{failed.id}/retry")
    assert again.status_code == 409
    assert problem(again) == {
        "code": "not_failed",
        "detail": "only a failed upload can be retried; this one is queued",
        "state": "queued",
    }
    assert client.post(f"/uploads/{uuid.uuid4()}/retry").status_code == 404
    bobs = failed_upload(uploads, objects, owner="bob", key="bob.fa")
    assert client.post(f"/uploads/{bobs.id}/retry").status_code == 404


def test_the_retry_route_answers_202_when_only_the_publish_failed(
    uploads: FakeUploads, objects: FakeObjects, events: FakePublisher
) -> None:
    client = served(uploads, objects, events)
    failed = failed_upload(uploads, objects)
    events.fail_with = ConnectionError("broker away")
    answer = client.post(f"/uploads/{failed.id}/retry")
    assert answer.status_code == 202 and answer.json()["state"] == "queued"


def test_registration_takes_a_mode_and_the_status_shows_it(
    uploads: FakeUploads, objects: FakeObjects, events: FakePublisher
) -> None:
    client = served(uploads, objects, events)
    ticket = client.post("/uploads", json={"filename": "x.fa", "size": 10, "mode": "validate"}).json()
    status = client.get(f"/uploads/{ticket['id']}").json()
    assert (status["mode"], status["validation"], status["result"]) == ("validate", None, None)
    plain = client.post("/uploads", json={"filename": "y.fa", "size": 10}).json()
    assert client.get(f"/uploads/{plain['id']}").json()["mode"] == "store"
    assert client.post("/uploads", json={"filename": "z.fa", "size": 1, "mode": "check"}).status_code == 422


def test_a_validated_uploads_status_holds_its_report(
    uploads: FakeUploads, objects: FakeObjects, events: FakePublisher
) -> None:
    report = Validation(4, "fasta", 100, "m" * 32, "s" * 64, "digest")
    upload = uploads.add(
        make_upload(id=uuid.uuid4(), owner="alice", state=State.DONE, mode="validate", validation=report.to_json())
    )
    status = served(uploads, objects, events).get(f"/uploads/{upload.id}").json()
    assert status["validation"] == report.to_json() and status["result"] is None and status["state"] == "done"


# --- the parser in validate mode --------------------------------------------------------------------


def registered(uploads: FakeUploads, mode: Mode, key: str = "v/a.fa") -> Upload:
    return uploads.add(
        make_upload(
            id=uuid.uuid4(), bucket=BUCKET, key=key, state=State.AWAITING_UPLOAD, generation=0, etag=None,
            bytes_total=None, bytes_done=0, mode=mode.value,
        )
    )  # fmt: skip


def test_a_validation_publishes_nothing_and_reports_what_it_found(
    uploads: FakeUploads, objects: FakeObjects, events: FakePublisher
) -> None:
    upload = registered(uploads, Mode.VALIDATE)
    handle_parse([objects.put(BUCKET, upload.key, FASTA, "e1")], ParserDeps(SETTINGS, uploads, objects, events))
    assert events.messages == [] and uploads.records == {}
    done = uploads.uploads[upload.id]
    assert (done.state, done.result_key, done.format, done.records_total) == (State.DONE, None, "fasta", 4)
    digester = CollectionDigester()
    expected = fasta_records(FASTA)
    digester.add_many([r["id"] for r in expected], [r["length"] for r in expected], [r["refget"] for r in expected])
    assert done.report == Validation(
        records=4,
        format="fasta",
        bytes=len(FASTA),
        source_md5=hashlib.md5(FASTA).hexdigest(),
        source_sha256=hashlib.sha256(FASTA).hexdigest(),
        collection_digest=digester.digest(),
    )


def test_a_validation_reports_the_first_error_with_its_position(
    uploads: FakeUploads, objects: FakeObjects, events: FakePublisher
) -> None:
    upload = registered(uploads, Mode.VALIDATE)
    data = b">a\nACGT\n>b\nAC!T\n"
    handle_parse([objects.put(BUCKET, upload.key, data, "e1")], ParserDeps(SETTINGS, uploads, objects, events))
    failed = uploads.uploads[upload.id]
    assert events.messages == [] and failed.state is State.FAILED and failed.validation is None
    assert (failed.error_code, failed.error_line, failed.error_column) == (
        ParseErrorCode.INVALID_CHARACTER.value,
        4,
        3,
    )


def test_a_large_validation_is_parsed_whole(uploads: FakeUploads, objects: FakeObjects, events: FakePublisher) -> None:
    upload = registered(uploads, Mode.VALIDATE)
    settings = Settings(read_range_bytes=64, part_bytes=1024, batch_bytes=4096, shard_bytes=100)
    handle_parse([objects.put(BUCKET, upload.key, FASTA, "e1")], ParserDeps(settings, uploads, objects, events))
    assert events.messages == [] and uploads.shards == {}
    assert uploads.uploads[upload.id].state is State.DONE


def test_an_unregistered_object_is_stored_never_validated(
    uploads: FakeUploads, objects: FakeObjects, events: FakePublisher
) -> None:
    handle_parse([objects.put(BUCKET, "direct/a.fa", FASTA, "e1")], ParserDeps(SETTINGS, uploads, objects, events))
    (upload,) = uploads.uploads.values()
    assert upload.mode == "store" and any(isinstance(m, SequenceBatch) for m in events.messages)


def test_a_late_batch_of_the_failed_generation_is_ignored_after_a_retry(
    uploads: FakeUploads, objects: FakeObjects
) -> None:
    failed = failed_upload(uploads, objects)
    uploads.retry(failed.id, "e1")
    late = sequence_batch(failed.id, 1, 0, [record(0)])
    handle_persist(late, PersisterDeps(uploads, FakePublisher()))
    assert uploads.records == {} and uploads.uploads[failed.id].batches_done == 0


# --- the watchdog removes validated objects ---------------------------------------------------------


def test_the_watchdog_removes_the_objects_of_ended_validations_once(
    uploads: FakeUploads, objects: FakeObjects, events: FakePublisher
) -> None:
    for name, mode, state in (
        ("done.fa", "validate", State.DONE),
        ("failed.fa", "validate", State.FAILED),
        ("busy.fa", "validate", State.PARSING),
        ("stored.fa", "store", State.DONE),
    ):
        objects.put(BUCKET, name, b">a\nAC\n", "e")
        uploads.add(make_upload(id=uuid.uuid4(), bucket=BUCKET, key=name, mode=mode, state=state, etag="e"))
    deps = WatchdogDeps(Settings(), uploads, FakePublisher(), objects)
    sweep(deps)
    assert sorted(key for _, key in objects.objects) == ["busy.fa", "stored.fa"]
    removed = [u for u in uploads.uploads.values() if u.object_removed_at is not None]
    assert sorted(u.key for u in removed) == ["done.fa", "failed.fa"]
    objects.put(BUCKET, "done.fa", b">a\nAC\n", "e")  # removed once: a sweep later does not look again
    sweep(deps)
    assert (BUCKET, "done.fa") in objects.objects


def test_a_removal_that_fails_is_tried_again(uploads: FakeUploads, objects: FakeObjects) -> None:
    objects.put(BUCKET, "v.fa", b">a\nAC\n", "e")
    upload = uploads.add(make_upload(id=uuid.uuid4(), bucket=BUCKET, key="v.fa", mode="validate", state=State.DONE))

    def broken(upload: Upload) -> None:
        raise ConnectionError("store away")

    with pytest.raises(ConnectionError):
        uploads.remove_validated_objects(broken)
    assert uploads.uploads[upload.id].object_removed_at is None
    assert [u.id for u in uploads.remove_validated_objects(lambda u: None)] == [upload.id]


def test_a_failure_keeps_a_validations_report_empty(uploads: FakeUploads) -> None:
    upload = uploads.add(make_upload(id=uuid.uuid4(), mode="validate", state=State.PARSING))
    uploads.fail(upload.id, upload.generation, Failure(PipelineErrorCode.PARSE_STALLED, "stalled"))
    assert not uploads.finish_validation(upload.id, upload.generation, Validation(1, "fasta", 1, "m", "s", "d"))
    store_mode = uploads.add(make_upload(id=uuid.uuid4(), mode="store", state=State.PARSING))
    assert not uploads.finish_validation(store_mode.id, 1, Validation(1, "fasta", 1, "m", "s", "d"))

"""The upload store's contract: ``FakeUploads`` and ``PostgresUploads`` answer every call of the
ports (``shared/domain/ports.py``) alike, so that what the unit tests prove on the fake holds for
the adapter. Each test runs on both (``side``, tests/contract/conftest.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.messages import ParseCompleted, SequenceBatch
from shared.domain.record_schema import Part
from shared.domain.seqcol import CollectionDigester, pair_digest, sorted_arrays
from shared.domain.uploads import (
    ClaimAction,
    CommittedBatch,
    Failure,
    Mode,
    NameCounts,
    ObjectCreated,
    ParseErrorCode,
    PersistOutcome,
    PipelineErrorCode,
    QuotaCode,
    QuotaExceeded,
    Quotas,
    Registration,
    ResultLocation,
    Shard,
    State,
    Upload,
    Validation,
)
from tests.builders import record, sequence_batch
from tests.contract.conftest import Side

BUCKET = "contract-uploads"
HOUR = timedelta(hours=1)


def event(key: str, etag: str = "e1", when: datetime | None = None, size: int = 10) -> ObjectCreated:
    return ObjectCreated(
        bucket=BUCKET, key=key, size=size, etag=etag, sequencer="01", event_time=when or datetime.now(UTC)
    )


def new_key(prefix: str = "contract") -> str:
    return f"{prefix}/{uuid.uuid4()}.fa"


def new_owner() -> str:
    return f"o-{uuid.uuid4().hex[:20]}"


def created(side: Side, key: str | None = None) -> Upload:
    """An upload of an object nobody registered, claimed from its (confirmed) event."""
    claim = side.uploads.claim(event(key or new_key()), confirmed=True)
    assert claim.action is ClaimAction.PARSE
    return claim.upload


def parsing(side: Side, key: str | None = None) -> Upload:
    upload = created(side, key)
    assert side.uploads.start_parsing(upload.id, upload.generation)
    found = side.uploads.get(upload.id)
    assert found is not None and found.state is State.PARSING and found.parsing_started_at is not None
    return found


def batch(upload: Upload, batch_no: int, ordinals: list[int], shard: int = 0) -> SequenceBatch:
    """Even ordinals are short records (residues inline), odd ones long records of two parts."""
    records = [
        record(o, seq_id=f"s{o}", gene_name=f"s{o}", length=4, part_count=2 if o % 2 else 0,
               residues=None if o % 2 else "ACGT")
        for o in ordinals
    ]  # fmt: skip
    parts = [Part(ordinal=o, part_no=n, residues=r) for o in ordinals if o % 2 for n, r in enumerate(("AC", "GT"))]
    made = sequence_batch(upload.id, upload.generation, batch_no, records, parts, source_offset=5 * (batch_no + 1))
    return made.model_copy(update={"shard": shard}) if shard else made


def registration(owner: str | None, size: int = 10, **changes: object) -> Registration:
    upload_id = uuid.uuid4()
    values: dict[str, object] = dict(
        upload_id=upload_id, bucket=BUCKET, key=f"{owner or 'none'}/{upload_id}/x.fa", filename="x.fa",
        declared_format=None, alphabet="nucleotide", size=size, owner=owner,
        ticket_expires_at=datetime.now(UTC) + HOUR,
    )  # fmt: skip
    values.update(changes)
    return Registration(**values)  # type: ignore[arg-type]


# --- the intake's calls -------------------------------------------------------------------------


def test_a_registration_is_found_by_id_and_by_object(side: Side) -> None:
    wanted = registration("alice", size=12, declared_format="fasta", circular=True, multipart_upload_id="m-1")
    upload = side.uploads.register(wanted)
    assert (upload.id, upload.bucket, upload.key, upload.filename) == (
        wanted.upload_id, BUCKET, wanted.key, "x.fa"
    )  # fmt: skip
    assert (upload.state, upload.generation, upload.registered, upload.etag) == (State.AWAITING_UPLOAD, 0, True, None)
    assert (upload.owner, upload.bytes_total, upload.bytes_done, upload.declared_format) == ("alice", 12, 0, "fasta")
    assert upload.circular and upload.multipart_upload_id == "m-1" and upload.alphabet == "nucleotide"
    assert upload.ticket_expires_at == wanted.ticket_expires_at
    assert side.uploads.get(wanted.upload_id) == upload
    assert side.uploads.find(BUCKET, wanted.key) == upload
    assert side.uploads.get(uuid.uuid4()) is None and side.uploads.find(BUCKET, wanted.key + "x") is None


def test_an_unregistered_object_is_shown_under_a_printable_name(side: Side) -> None:
    """The key stays as the store has it; the file name people read loses what a terminal obeys."""
    key = f"contract/{uuid.uuid4()}/x\x1b]0;title\x07\u202egnp.fa"
    upload = created(side, key)
    assert upload.key == key
    assert upload.filename == "x\ufffd]0;title\ufffd\ufffdgnp.fa"


def test_owner_usage_counts_what_the_quotas_limit(side: Side) -> None:
    owner = new_owner()
    side.add_owner(owner)
    empty = side.uploads.owner_usage(owner)
    assert empty is not None
    assert (empty.stored_bytes, empty.in_flight, empty.open_multipart_uploads, empty.registrations) == (0, 0, 0, 0)
    assert empty.oldest_registration_age is None
    side.uploads.register(registration(owner, size=100))
    side.uploads.register(registration(owner, size=50, multipart_upload_id="m-1"))
    expired = side.uploads.register(registration(owner, size=7))
    side.set(expired.id, state=State.EXPIRED)  # no object: its size no longer counts
    usage = side.uploads.owner_usage(owner)
    assert usage is not None
    assert (usage.stored_bytes, usage.in_flight, usage.open_multipart_uploads, usage.registrations) == (150, 2, 1, 3)
    assert usage.oldest_registration_age is not None and timedelta(0) <= usage.oldest_registration_age < HOUR
    admin = new_owner()
    side.add_owner(admin, admin=True)
    assert side.uploads.owner_usage(admin) is None


def test_a_registration_beyond_a_quota_is_refused_and_writes_nothing(side: Side) -> None:
    owner = new_owner()
    side.add_owner(owner)
    quotas = Quotas(stored_bytes=100, uploads_in_flight=2, open_multipart_uploads=1, registrations_per_minute=10)
    side.uploads.register(registration(owner, size=60), quotas)
    too_big = registration(owner, size=41)
    with pytest.raises(QuotaExceeded) as refused:
        side.uploads.register(too_big, quotas)
    assert refused.value.refusal.code is QuotaCode.STORAGE and refused.value.refusal.retry_after is None
    assert side.uploads.get(too_big.upload_id) is None
    side.uploads.register(registration(owner, size=10, multipart_upload_id="m-1"), quotas)
    with pytest.raises(QuotaExceeded) as busy:
        side.uploads.register(registration(owner, size=1), quotas)
    assert busy.value.refusal.code is QuotaCode.IN_FLIGHT
    # Without quotas (an admin's registration) nothing is counted.
    assert side.uploads.register(registration(owner, size=1000)).state is State.AWAITING_UPLOAD


def test_the_registration_rate_is_counted_over_a_minute(side: Side) -> None:
    owner = new_owner()
    quotas = Quotas(stored_bytes=10**9, uploads_in_flight=100, open_multipart_uploads=10, registrations_per_minute=2)
    first = side.uploads.register(registration(owner), quotas)
    side.uploads.register(registration(owner), quotas)
    with pytest.raises(QuotaExceeded) as rate:
        side.uploads.register(registration(owner), quotas)
    assert rate.value.refusal.code is QuotaCode.RATE and rate.value.refusal.retry_after is not None
    side.set(first.id, created_at=datetime.now(UTC) - timedelta(minutes=2))  # out of the window
    side.uploads.register(registration(owner), quotas)


def test_in_flight_counts_the_uploads_a_stage_owes_work(side: Side) -> None:
    before, stalled_before = side.uploads.in_flight(HOUR)
    queued = created(side)
    working = parsing(side)
    side.set(working.id, updated_at=datetime.now(UTC) - 2 * HOUR)
    side.uploads.register(registration("alice"))  # waits for its object: no stage owes it anything
    states, stalled = side.uploads.in_flight(HOUR)
    assert states.get("queued", 0) == before.get("queued", 0) + 1
    assert states.get("parsing", 0) == before.get("parsing", 0) + 1
    assert "awaiting_upload" not in states and stalled == stalled_before + 1
    assert queued.state is State.QUEUED


# --- claims and generations ---------------------------------------------------------------------


def test_claims_tell_new_duplicate_stale_and_overwritten(side: Side) -> None:
    key = new_key()
    now = datetime.now(UTC)
    first = side.uploads.claim(event(key, "e1", now), confirmed=True)
    assert first.action is ClaimAction.PARSE
    assert (first.upload.registered, first.upload.generation, first.upload.state) == (False, 1, State.QUEUED)
    assert (first.upload.etag, first.upload.bytes_total, first.upload.filename) == ("e1", 10, key.rsplit("/")[-1])
    # a redelivery while still queued/parsing must be parsed (the first parser may have died)
    assert side.uploads.claim(event(key, "e1", now), confirmed=True).action is ClaimAction.PARSE
    side.set(first.upload.id, state=State.DONE)
    assert side.uploads.claim(event(key, "e1", now), confirmed=True).action is ClaimAction.DUPLICATE
    older = event(key, "e0", now - HOUR)
    assert side.uploads.claim(older, confirmed=True).action is ClaimAction.STALE
    later = event(key, "e2", now + timedelta(seconds=1))
    assert side.uploads.claim(later, confirmed=False).action is ClaimAction.UNCONFIRMED
    assert side.uploads.get(first.upload.id).etag == "e1"  # type: ignore[union-attr]
    newer = side.uploads.claim(later, confirmed=True)
    assert newer.action is ClaimAction.PARSE
    assert (newer.upload.id, newer.upload.generation, newer.upload.state, newer.upload.etag) == (
        first.upload.id, 2, State.QUEUED, "e2"
    )  # fmt: skip


def test_an_object_under_a_key_name_s_prefix_is_that_owner_s(side: Side) -> None:
    owner = new_owner()
    side.add_owner(owner)
    assert created(side, f"{owner}/{uuid.uuid4()}.fa").owner == owner
    assert created(side, f"{new_owner()}/{uuid.uuid4()}.fa").owner is None  # no such key name


def test_the_objects_of_a_revoked_owner_are_refused(side: Side) -> None:
    owner = new_owner()
    side.add_owner(owner)
    side.revoke_owner(owner)
    claim = side.uploads.claim(event(f"{owner}/{uuid.uuid4()}.fa"), confirmed=True)
    assert claim.action is ClaimAction.REVOKED
    upload = claim.upload
    assert (upload.state, upload.owner, upload.error_code) == (State.REVOKED, owner, PipelineErrorCode.OWNER_REVOKED)
    assert upload.error_message and upload.error_id and upload.finished_at is not None


def test_a_new_generation_resets_every_per_generation_field_and_drops_the_rows(side: Side) -> None:
    first = parsing(side)
    plan = [Shard(0, 0, 10, 0, 1, 1)]
    assert side.uploads.save_shard_plan(first.id, 1, plan, "m", "s") == plan
    assert side.uploads.store_batch(batch(first, 0, [0, 1])).stored
    side.uploads.fail(first.id, first.generation, Failure(ParseErrorCode.EMPTY_FILE, "x", 1, 1))
    side.set(first.id, pickups=3, picked_up_at=datetime.now(UTC), format="fasta")
    second = side.uploads.claim(event(first.key, "e2", datetime.now(UTC) + timedelta(seconds=5)), confirmed=True)
    fresh = second.upload
    assert fresh == Upload(
        id=first.id, bucket=BUCKET, key=first.key, filename=first.filename, registered=False, declared_format=None,
        alphabet="nucleotide", state=State.QUEUED, generation=2, etag="e2", created_at=fresh.created_at,
        updated_at=fresh.updated_at, sequencer="01", event_time=fresh.event_time, bytes_total=10,
    )  # fmt: skip
    assert side.uploads.shard_plan(first.id, 1) == [] and side.uploads.shard_plan(first.id, 2) == []


# --- parsing, shard plans, batches and completion -------------------------------------------------


def test_parsing_starts_once_per_generation(side: Side) -> None:
    upload = created(side)
    assert not side.uploads.start_parsing(upload.id, upload.generation + 1)  # no such generation
    assert side.uploads.start_parsing(upload.id, upload.generation)
    assert not side.uploads.start_parsing(uuid.uuid4(), 1)


def test_a_shard_plan_is_saved_once_and_each_shard_found(side: Side) -> None:
    upload = created(side)
    plan = [Shard(0, 0, 10, 0, 1, 2), Shard(1, 10, 20, 2, 5, 1)]
    assert side.uploads.save_shard_plan(upload.id, 1, plan, "m", "s") is None  # not parsing yet
    assert side.uploads.shard_to_parse(upload.id, 1, 0) is None
    assert side.uploads.start_parsing(upload.id, 1)
    assert side.uploads.save_shard_plan(upload.id, 1, plan, "m", "s") == plan
    assert side.uploads.save_shard_plan(upload.id, 1, [Shard(0, 0, 20, 0, 1, 3)], "x", "y") == plan  # it stands
    assert side.uploads.shard_plan(upload.id, 1) == plan
    found = side.uploads.shard_to_parse(upload.id, 1, 1)
    assert found is not None and found.shard == plan[1] and found.shard_count == 2
    assert (found.upload.id, found.upload.source_md5, found.upload.source_sha256) == (upload.id, "m", "s")
    assert side.uploads.shard_to_parse(upload.id, 1, 2) is None and side.uploads.shard_to_parse(upload.id, 2, 0) is None


def test_batches_are_stored_exactly_once_and_complete_the_upload(side: Side) -> None:
    upload = parsing(side)
    assert side.uploads.store_batch(batch(upload, 0, [0, 1])) == PersistOutcome(True, False, first_batch=True)
    assert side.uploads.store_batch(batch(upload, 0, [0, 1])) == PersistOutcome(False, False)  # a replay
    following, committed = side.uploads.committed_batches(upload.id, 1, 0, 0)
    assert following is not None and following.state is State.PARSING
    assert committed == [CommittedBatch(0, 0, 0, 2)]
    done = ParseCompleted(
        upload_id=upload.id, generation=1, batch_count=2, record_count=3, source_bytes=10, format="fasta",
        source_md5="md5", source_sha256="sha",
    )  # fmt: skip
    assert side.uploads.record_parse_completed(done) == PersistOutcome(True, False)
    persisting = side.uploads.get(upload.id)
    assert persisting is not None and persisting.state is State.PERSISTING and persisting.batches_total == 2
    assert (persisting.source_md5, persisting.format, persisting.parsed_at is not None) == ("md5", "fasta", True)
    assert side.uploads.store_batch(batch(upload, 1, [2])) == PersistOutcome(True, True)
    assert side.uploads.store_batch(batch(upload, 1, [2])) == PersistOutcome(False, True)  # a replay re-announces
    current = side.uploads.get(upload.id)
    assert current is not None
    assert (current.state, current.records_done, current.batches_done, current.bytes_done, current.records_total) == (
        State.ASSEMBLING, 3, 2, 10, 3
    )  # fmt: skip
    assert current.assembly_started_at is not None
    assert side.uploads.committed_batches(upload.id, 1, 0, 1)[1] == [CommittedBatch(0, 1, 2, 3)]
    assert side.uploads.committed_batches(upload.id, 2, 0, 0) == (None, [])


def test_batches_of_a_replaced_or_ended_generation_are_ignored(side: Side) -> None:
    old = parsing(side)
    new = side.uploads.claim(event(old.key, "e2", datetime.now(UTC) + timedelta(seconds=5)), confirmed=True).upload
    assert side.uploads.store_batch(batch(old, 0, [0])) == PersistOutcome(False, False)
    late = ParseCompleted(upload_id=old.id, generation=1, batch_count=1, record_count=1, source_bytes=1, format="x")
    assert side.uploads.record_parse_completed(late) == PersistOutcome(False, False)
    assert side.uploads.store_batch(batch(new, 0, [0])).stored


def test_a_parse_in_shards_ends_when_every_shard_has(side: Side) -> None:
    upload = parsing(side)
    plan = [Shard(0, 0, 10, 0, 1, 2), Shard(1, 10, 20, 2, 5, 1)]
    assert side.uploads.save_shard_plan(upload.id, 1, plan, "m", "s") == plan

    def shard_batch(shard: int, batch_no: int, ordinals: list[int]) -> SequenceBatch:
        return batch(upload, batch_no, ordinals, shard).model_copy(update={"source_bytes": 4})

    def shard_done(shard: int, batches: int, shard_count: int = 2) -> ParseCompleted:
        return ParseCompleted(
            upload_id=upload.id, generation=1, shard=shard, shard_count=shard_count, batch_count=batches,
            record_count=plan[shard].records, source_bytes=10, format="fasta",
        )  # fmt: skip

    assert side.uploads.store_batch(shard_batch(1, 0, [2])) == PersistOutcome(True, False)  # not the first batch
    assert side.uploads.get(upload.id).bytes_done == 4  # type: ignore[union-attr]  # its own bytes, added
    assert side.uploads.record_parse_completed(shard_done(1, 1)) == PersistOutcome(True, False)
    with pytest.raises(RuntimeError, match="the plan has 2 shards"):
        side.uploads.record_parse_completed(shard_done(1, 1, shard_count=3))
    assert side.uploads.store_batch(shard_batch(0, 0, [0])) == PersistOutcome(True, False, first_batch=True)
    assert side.uploads.record_parse_completed(shard_done(0, 2)) == PersistOutcome(True, False)
    current = side.uploads.get(upload.id)
    assert current is not None
    assert (current.state, current.batches_total, current.records_total, current.bytes_done) == (
        State.PERSISTING, 3, 3, 10
    )  # fmt: skip
    assert side.uploads.store_batch(shard_batch(0, 1, [1])) == PersistOutcome(True, True)
    assert side.uploads.get(upload.id).bytes_done == 10  # type: ignore[union-attr]  # at most the object
    committed = side.uploads.committed_batches(upload.id, 1, 0, 0)[1]
    assert [(b.shard, b.batch_no) for b in committed] == [(0, 0), (0, 1), (1, 0)]


# --- failures -------------------------------------------------------------------------------------


def test_a_failure_keeps_the_reason_drops_the_rows_and_can_be_requeued(side: Side) -> None:
    upload = parsing(side)
    assert side.uploads.store_batch(batch(upload, 0, [0, 1])).stored
    failure = Failure(ParseErrorCode.INVALID_CHARACTER, "bad 'X'", 5, 3, "e-1")
    assert not side.uploads.fail(upload.id, upload.generation + 1, failure)  # another generation: no-op
    assert side.uploads.fail(upload.id, upload.generation, failure)
    assert not side.uploads.fail(upload.id, None, failure)  # already failed
    failed = side.uploads.get(upload.id)
    assert failed is not None and failed.failure == failure and failed.finished_at is not None
    assert failed.state is State.FAILED
    assert side.uploads.store_batch(batch(upload, 1, [2])) == PersistOutcome(False, False)
    again = side.uploads.requeue_failed(upload.id)
    assert again is not None and (again.state, again.generation, again.error_code) == (State.QUEUED, 1, None)
    assert again.finished_at is None and side.uploads.requeue_failed(upload.id) is None  # not failed now
    assert side.uploads.start_parsing(upload.id, 1)
    assert side.uploads.committed_batches(upload.id, 1, 0, 0)[1] == []  # the failed parse's batches are gone
    assert side.uploads.store_batch(batch(upload, 0, [0, 1])) == PersistOutcome(True, False, first_batch=True)


def test_a_registered_upload_without_its_object_is_not_requeued(side: Side) -> None:
    waiting = side.uploads.register(registration("alice"))
    assert side.uploads.fail(waiting.id, None, Failure(PipelineErrorCode.PROCESSING_FAILED, "x"))
    assert side.uploads.requeue_failed(waiting.id) is None


# --- retries ---------------------------------------------------------------------------------------


def test_a_retry_starts_one_new_generation_of_the_same_object(side: Side) -> None:
    upload = parsing(side)
    assert side.uploads.store_batch(batch(upload, 0, [0, 1])).stored
    assert side.uploads.fail(upload.id, 1, Failure(PipelineErrorCode.PERSIST_FAILED, "gave up", error_id="e-1"))
    assert side.uploads.retry(upload.id, "another etag") is None  # not the object it failed on
    retried = side.uploads.retry(upload.id, "e1")
    assert retried is not None
    assert (retried.state, retried.generation, retried.etag, retried.failure) == (State.QUEUED, 2, "e1", None)
    assert (retried.error_code, retried.finished_at, retried.parsing_started_at) == (None, None, None)
    assert side.uploads.retry(upload.id, "e1") is None  # a second retry: no longer failed
    assert side.uploads.get(upload.id).generation == 2  # type: ignore[union-attr]
    # the failed generation's late messages change nothing; the object's event resumes generation 2
    assert side.uploads.store_batch(batch(upload, 1, [2])) == PersistOutcome(False, False)
    late = side.uploads.claim(event(upload.key, "e1"), confirmed=False)
    assert (late.action, late.upload.generation) == (ClaimAction.PARSE, 2)
    assert side.uploads.start_parsing(upload.id, 2)
    assert side.uploads.committed_batches(upload.id, 2, 0, 0)[1] == []
    again = side.uploads.claim(event(upload.key, "e1"), confirmed=False)
    assert (again.action, again.upload.generation) == (ClaimAction.PARSE, 2)  # still parsing: the same one
    stored = side.uploads.store_batch(batch(side.uploads.get(upload.id), 0, [0, 1]))  # type: ignore[arg-type]
    assert stored == PersistOutcome(True, False, first_batch=True)


def test_only_a_failed_upload_is_retried(side: Side) -> None:
    upload = parsing(side)
    assert side.uploads.retry(upload.id, "e1") is None
    assert side.uploads.get(upload.id).state is State.PARSING  # type: ignore[union-attr]
    assert side.uploads.retry(uuid.uuid4(), "e1") is None


def test_a_retry_is_held_to_the_owners_uploads_in_flight(side: Side) -> None:
    owner = new_owner()
    side.add_owner(owner)
    quotas = Quotas(stored_bytes=10**9, uploads_in_flight=1, open_multipart_uploads=1, registrations_per_minute=100)
    failed = created(side, f"{owner}/{uuid.uuid4()}.fa")
    assert failed.owner == owner
    assert side.uploads.fail(failed.id, 1, Failure(PipelineErrorCode.PERSIST_FAILED, "gave up"))
    busy = side.uploads.register(registration(owner))  # awaiting its object: in flight
    with pytest.raises(QuotaExceeded) as refused:
        side.uploads.retry(failed.id, "e1", quotas)
    assert refused.value.refusal.code is QuotaCode.IN_FLIGHT
    assert side.uploads.get(failed.id).state is State.FAILED  # type: ignore[union-attr]
    side.set(busy.id, state=State.EXPIRED)
    assert side.uploads.retry(failed.id, "e1", quotas) is not None


# --- validations ------------------------------------------------------------------------------------


def test_a_validation_counts_in_flight_and_its_bytes_until_its_object_is_removed(side: Side) -> None:
    owner = new_owner()
    side.add_owner(owner)
    validation = side.uploads.register(registration(owner, size=100, mode=Mode.VALIDATE))
    assert validation.mode == "validate" and side.uploads.get(validation.id) == validation
    side.uploads.register(registration(owner, size=7))
    usage = side.uploads.owner_usage(owner)
    assert usage is not None and (usage.stored_bytes, usage.in_flight) == (107, 2)
    claimed = side.uploads.claim(event(validation.key, "e1"), confirmed=True).upload
    assert side.uploads.start_parsing(validation.id, 1)
    assert side.uploads.finish_validation(validation.id, 1, Validation(1, "fasta", 10, "m" * 32, "s" * 64, "c"))
    usage = side.uploads.owner_usage(owner)
    assert usage is not None and (usage.stored_bytes, usage.in_flight) == (7 + (claimed.bytes_total or 0), 1)
    removed = side.uploads.remove_validated_objects(lambda upload: None)
    assert validation.id in {u.id for u in removed}
    usage = side.uploads.owner_usage(owner)
    assert usage is not None and (usage.stored_bytes, usage.in_flight) == (7, 1)  # its object is gone
    assert created(side).mode == "store"  # an object nobody registered is stored


def test_a_validation_finishes_once_with_its_report(side: Side) -> None:
    waiting = side.uploads.register(registration("alice", mode=Mode.VALIDATE))
    claim = side.uploads.claim(event(waiting.key, "e1"), confirmed=True)
    assert claim.action is ClaimAction.PARSE and claim.upload.mode == "validate"
    report = Validation(3, "fasta.gz", 10, "m" * 32, "s" * 64, "collection")
    assert not side.uploads.finish_validation(waiting.id, 1, report)  # queued: its parse has not started
    assert side.uploads.start_parsing(waiting.id, 1)
    assert not side.uploads.finish_validation(waiting.id, 2, report)  # another generation
    assert side.uploads.finish_validation(waiting.id, 1, report)
    done = side.uploads.get(waiting.id)
    assert done is not None and (done.state, done.report, done.result_key) == (State.DONE, report, None)
    assert (done.format, done.records_total, done.bytes_done, done.source_md5) == ("fasta.gz", 3, 10, "m" * 32)
    assert done.finished_at is not None and done.parsed_at is not None
    assert not side.uploads.finish_validation(waiting.id, 1, report)  # once
    stored = parsing(side)
    assert not side.uploads.finish_validation(stored.id, 1, report)  # a stored upload is assembled instead


def test_the_objects_of_ended_validations_are_removed_once(side: Side) -> None:
    ours = {}
    for name, mode, state in (
        ("done", Mode.VALIDATE, State.DONE),
        ("failed", Mode.VALIDATE, State.FAILED),
        ("parsing", Mode.VALIDATE, State.PARSING),
        ("stored", Mode.STORE, State.DONE),
    ):
        waiting = side.uploads.register(registration("alice", mode=mode))
        upload = side.uploads.claim(event(waiting.key, "e1"), confirmed=True).upload
        side.set(upload.id, state=state)
        ours[upload.id] = name

    def broken(upload: Upload) -> None:
        if upload.id in ours:
            raise ConnectionError("store away")

    with pytest.raises(ConnectionError):  # nothing recorded: tried again on the next sweep
        side.uploads.remove_validated_objects(broken)
    removed: list[str] = []
    found = side.uploads.remove_validated_objects(lambda u: removed.append(ours.get(u.id, "other")))
    assert sorted(r for r in removed if r != "other") == ["done", "failed"]
    assert all(u.object_removed_at is not None for u in found)
    assert [u for u in side.uploads.remove_validated_objects(lambda u: None) if u.id in ours] == []  # once


# --- assembly -------------------------------------------------------------------------------------


def assembling(side: Side) -> Upload:
    upload = parsing(side)
    assert side.uploads.store_batch(batch(upload, 0, [0, 1, 2])).stored
    done = ParseCompleted(upload_id=upload.id, generation=1, batch_count=1, record_count=3, source_bytes=10, format="f")
    assert side.uploads.record_parse_completed(done) == PersistOutcome(True, True)
    found = side.uploads.assembling(upload.id, 1)
    assert found is not None and found.state is State.ASSEMBLING
    return found


def test_the_assembler_reads_back_what_was_stored(side: Side) -> None:
    upload = assembling(side)
    pieces = side.uploads.result_pieces(upload.id, 0, 3, one_batch=True)
    assert [(p.record.ordinal, p.part_no, p.residues) for p in pieces] == [
        (0, 0, b"ACGT"), (1, 0, b"AC"), (1, 1, b"GT"), (2, 0, b"ACGT")
    ]  # fmt: skip
    window = side.uploads.result_pieces(upload.id, 1, 2, one_batch=False)
    assert [(p.record.ordinal, p.part_no, p.residues) for p in window] == [(1, 0, b"AC"), (1, 1, b"GT")]
    assert side.uploads.name_counts(upload.id) == NameCounts(0, 0)
    records = list(batch(upload, 0, [0, 1, 2]).records.rows())
    assert side.uploads.sorted_arrays(upload.id) == sorted_arrays(
        sorted(pair_digest(r.seq_id, r.length) for r in records), sorted(r.refget for r in records)
    )


def test_an_assembly_records_its_progress_and_finishes_once(side: Side) -> None:
    upload = assembling(side)
    side.uploads.start_assembly(upload.id, 1)
    side.uploads.record_assembly_progress(upload.id, 1, 2)
    assert side.uploads.get(upload.id).records_assembled == 2  # type: ignore[union-attr]
    side.uploads.record_assembly_progress(upload.id, 2, 3)  # another generation: no change
    assert side.uploads.get(upload.id).records_assembled == 2  # type: ignore[union-attr]
    records = list(batch(upload, 0, [0, 1, 2]).records.rows())
    digester = CollectionDigester()
    for r in records:
        digester.add(r.seq_id, r.length, r.refget)
    collection = digester.finish(
        sorted(pair_digest(r.seq_id, r.length) for r in records), sorted(r.refget for r in records)
    )
    assert side.uploads.collection_digest(upload.id, 1) is None
    location = ResultLocation("results", f"{upload.id}.json", 123, 3, "ab" * 32)
    assert side.uploads.finish_assembly(upload.id, 1, location, NameCounts(1, 2), collection)
    assert not side.uploads.finish_assembly(upload.id, 1, location, NameCounts(1, 2), collection)  # once
    done = side.uploads.get(upload.id)
    assert done is not None and done.state is State.DONE and done.finished_at is not None
    assert (done.result_bucket, done.result_key, done.result_size, done.result_records) == (
        "results", f"{upload.id}.json", 123, 3
    )  # fmt: skip
    assert (done.records_assembled, done.duplicate_names, done.empty_sequences) == (3, 1, 2)
    assert done.result_sha256 == "ab" * 32
    assert side.uploads.collection_digest(upload.id, 1) == collection.digest
    assert side.uploads.collection_digest(upload.id, 2) is None
    assert (
        side.uploads.assembling(upload.id, 1) is None and side.uploads.committed_batches(upload.id, 1, 0, 0)[0] is None
    )
    newer = side.uploads.claim(event(upload.key, "e2", datetime.now(UTC) + timedelta(seconds=5)), confirmed=True)
    assert newer.upload.generation == 2 and side.uploads.collection_digest(upload.id, 1) is None  # dropped
    assert newer.upload.result_sha256 is None  # a new generation's document is yet to be written


def test_a_reset_store_goes_on_working_on_new_sessions(side: Side) -> None:
    """The persister and the assembler reset the store after a failure, then carry on."""
    upload = created(side)
    side.uploads.reset()
    assert side.uploads.get(upload.id) == upload
    assert side.uploads.start_parsing(upload.id, upload.generation)


def test_one_worker_per_upload_and_stage(side: Side) -> None:
    upload_id = uuid.uuid4()
    other = side.another_worker()
    with side.uploads.generation_lock(upload_id, "parse") as held:
        assert held
        with other.generation_lock(upload_id, "parse") as taken:
            assert not taken
        with other.generation_lock(upload_id, "assemble") as apart:
            assert apart
    with other.generation_lock(upload_id, "parse") as after:
        assert after


# --- inflation quota --------------------------------------------------------------------------------


def test_inflation_is_drawn_within_the_owner_s_quota_and_settled(side: Side) -> None:
    owner = new_owner()
    side.add_owner(owner)
    first = created(side, f"{owner}/{uuid.uuid4()}.fa.gz")
    second = created(side, f"{owner}/{uuid.uuid4()}.fa.gz")
    assert side.uploads.draw_inflation(first.id, 1, 60, 100)
    assert side.uploads.draw_inflation(first.id, 1, 50, 100)  # already drawn beyond: no change
    assert not side.uploads.draw_inflation(second.id, 1, 41, 100)  # 60 + 41 > 100: nothing drawn
    assert side.uploads.get(second.id).inflated_bytes == 0  # type: ignore[union-attr]
    assert side.uploads.draw_inflation(second.id, 1, 40, 100)
    side.uploads.settle_inflation(first.id, 1, 30)  # gives back what it did not inflate
    side.uploads.settle_inflation(second.id, 1, 90)  # only ever lowers
    assert [side.uploads.get(u.id).inflated_bytes for u in (first, second)] == [30, 40]  # type: ignore[union-attr]
    assert side.uploads.draw_inflation(second.id, 1, 70, 100)
    assert side.uploads.draw_inflation(uuid.uuid4(), 1, 10**12, 1)  # no such generation: not held back
    admin = new_owner()
    side.add_owner(admin, admin=True)
    mine = created(side, f"{admin}/{uuid.uuid4()}.fa.gz")
    assert side.uploads.draw_inflation(mine.id, 1, 10**9, 1)  # an admin key's uploads: no quota


# --- the watchdog -----------------------------------------------------------------------------------


def test_stalled_uploads_are_picked_up_once_per_period(side: Side) -> None:
    lost, slow, fresh = parsing(side), parsing(side), parsing(side)
    side.set(lost.id, state=State.PERSISTING, updated_at=datetime.now(UTC) - 2 * HOUR)
    side.set(slow.id, state=State.ASSEMBLING, updated_at=datetime.now(UTC) - 2 * HOUR)
    ours = {lost.id, slow.id, fresh.id}

    def broker_away_for_slow(upload: Upload) -> None:  # whichever of the two comes first
        if upload.id == slow.id:
            raise ConnectionError("broker away")

    with pytest.raises(ConnectionError):  # a sweep whose reissue fails records no pick-up at all
        side.uploads.pick_up_stalled(HOUR, broker_away_for_slow)
    assert [side.uploads.get(u).pickups for u in (lost.id, slow.id)] == [0, 0]  # type: ignore[union-attr]
    reissued: list[tuple[uuid.UUID, State]] = []
    picked = side.uploads.pick_up_stalled(HOUR, lambda u: reissued.append((u.id, u.state)))
    assert sorted(r for r in reissued if r[0] in ours) == sorted(
        [(lost.id, State.PERSISTING), (slow.id, State.ASSEMBLING)]
    )
    mine = {u.id: u for u in picked if u.id in ours}
    # A lost batch: the upload goes back to parsing so that the re-parse is accepted.
    assert (mine[lost.id].state, mine[lost.id].pickups) == (State.PARSING, 1)
    assert (mine[slow.id].state, mine[slow.id].pickups) == (State.ASSEMBLING, 1)
    assert mine[slow.id].picked_up_at is not None
    assert [u for u in side.uploads.pick_up_stalled(HOUR, lambda u: None) if u.id in ours] == []  # not again


def test_tickets_expire_after_their_grace_and_a_late_object_still_counts(side: Side) -> None:
    over = side.uploads.register(registration("alice", ticket_expires_at=datetime.now(UTC) - timedelta(minutes=10)))
    fresh = side.uploads.register(registration("alice", ticket_expires_at=datetime.now(UTC)))
    expired = {u.id: u for u in side.uploads.expire_tickets(timedelta(minutes=5))}
    assert over.id in expired and fresh.id not in expired and expired[over.id].state is State.EXPIRED
    assert side.uploads.get(fresh.id).state is State.AWAITING_UPLOAD  # type: ignore[union-attr]
    assert over.id not in {u.id for u in side.uploads.expire_tickets(timedelta(minutes=5))}  # once
    late = side.uploads.claim(event(over.key, "e1"), confirmed=True)
    assert (late.action, late.upload.id, late.upload.generation, late.upload.state) == (
        ClaimAction.PARSE, over.id, 1, State.QUEUED
    )  # fmt: skip


def test_the_tickets_of_a_revoked_owner_end(side: Side) -> None:
    owner, other = new_owner(), new_owner()
    for name in (owner, other):
        side.add_owner(name)
    waiting = side.uploads.register(registration(owner))
    kept = side.uploads.register(registration(other))
    side.revoke_owner(owner)
    revoked = {u.id: u for u in side.uploads.revoke_tickets()}
    assert waiting.id in revoked and kept.id not in revoked
    ended = revoked[waiting.id]
    assert (ended.state, ended.error_code) == (State.REVOKED, PipelineErrorCode.OWNER_REVOKED)
    assert ended.error_id and ended.error_message and ended.finished_at is not None
    assert waiting.id not in {u.id for u in side.uploads.revoke_tickets()}  # once
    assert side.uploads.get(kept.id).state is State.AWAITING_UPLOAD  # type: ignore[union-attr]


def test_a_delete_leaves_a_tombstone_without_rows_that_no_late_message_changes(side: Side) -> None:
    upload = assembling(side)
    records = list(batch(upload, 0, [0, 1, 2]).records.rows())
    digester = CollectionDigester()
    for r in records:
        digester.add(r.seq_id, r.length, r.refget)
    collection = digester.finish(
        sorted(pair_digest(r.seq_id, r.length) for r in records), sorted(r.refget for r in records)
    )
    other = assembling(side)
    deleted = side.uploads.delete(upload.id)
    assert deleted is not None and deleted.state is State.DELETED and deleted.generation == upload.generation
    assert deleted.deleted_at is not None and deleted.purge_requested_at is not None and deleted.purged_at is None
    assert deleted.records_done == 0 and deleted.result_key is None and deleted.error_code is None
    assert side.uploads.delete(upload.id) == deleted  # again: the same
    assert side.uploads.delete(uuid.uuid4()) is None
    assert list(side.uploads.result_pieces(upload.id, 0, 1000, one_batch=False)) == []  # records and parts gone
    assert side.uploads.shard_plan(upload.id, 1) == [] and side.uploads.committed_batches(upload.id, 1, 0, 0)[0] is None
    assert list(side.uploads.result_pieces(other.id, 0, 1000, one_batch=False))  # another upload's stay
    # every stage's late message changes nothing
    assert side.uploads.store_batch(batch(upload, 5, [9])) == PersistOutcome(False, False)
    late = ParseCompleted(upload_id=upload.id, generation=1, batch_count=1, record_count=1, source_bytes=1, format="x")
    assert side.uploads.record_parse_completed(late) == PersistOutcome(False, False)
    assert not side.uploads.parsing(upload.id, 1) and not side.uploads.start_parsing(upload.id, 1)
    assert not side.uploads.fail(upload.id, 1, Failure(PipelineErrorCode.PERSIST_FAILED, "late"))
    location = ResultLocation("results", f"{upload.id}.json", 1, 3)
    assert not side.uploads.finish_assembly(upload.id, 1, location, NameCounts(0, 0), collection)
    assert side.uploads.collection_digest(upload.id, 1) is None
    claim = side.uploads.claim(event(upload.key, "e9", datetime.now(UTC) + timedelta(seconds=5)), confirmed=True)
    assert claim.action is ClaimAction.DELETED
    after = side.uploads.get(upload.id)
    assert after is not None and after.state is State.DELETED and after.generation == 1 and after.etag == upload.etag


def test_a_purge_is_owed_until_marked_and_owed_again_when_asked_again(side: Side) -> None:
    upload = parsing(side)
    assert not side.uploads.reopen_purge(upload.id)  # not deleted
    deleted = side.uploads.delete(upload.id)
    assert deleted is not None and deleted.purge_requested_at is not None

    def owed() -> set[uuid.UUID]:
        return {u.id for u in side.uploads.purges_owed(limit=10_000)}

    assert upload.id in owed()
    assert side.uploads.reopen_purge(upload.id)  # asked again while the first purge runs
    assert not side.uploads.mark_purged(upload.id, deleted.purge_requested_at)  # that purge is stale
    assert upload.id in owed()
    again = side.uploads.get(upload.id)
    assert again is not None and again.purge_requested_at is not None
    assert side.uploads.mark_purged(upload.id, again.purge_requested_at)
    assert upload.id not in owed() and side.uploads.get(upload.id).purged_at is not None  # type: ignore[union-attr]
    assert side.uploads.reopen_purge(upload.id)  # a result written late: owed again
    assert upload.id in owed()


def test_a_deleted_upload_counts_no_stored_bytes(side: Side) -> None:
    owner = new_owner()
    side.add_owner(owner)
    upload = created(side, new_key(owner))
    before = side.uploads.owner_usage(owner)
    assert before is not None and before.stored_bytes == 10
    side.uploads.delete(upload.id)
    after = side.uploads.owner_usage(owner)
    assert after is not None and after.stored_bytes == 0 and after.in_flight == 0


# --- the reconciler's reads -----------------------------------------------------------------------


def test_the_reconciler_reads_awaiting_tickets_in_turn_and_the_uploads_of_a_listing_page(side: Side) -> None:
    bucket = f"recon-{uuid.uuid4().hex[:12]}"  # a bucket of this test's own: no other test's tickets
    waiting = sorted(
        (side.uploads.register(registration("alice", bucket=bucket)) for _ in range(3)), key=lambda u: u.id
    )
    written = side.uploads.register(registration("alice", bucket=bucket))
    side.uploads.claim(event(written.key).model_copy(update={"bucket": bucket}), confirmed=True)  # its object came
    side.uploads.register(registration("alice"))  # another bucket's ticket
    first = side.uploads.awaiting_objects(bucket, None, 2)
    assert [u.id for u in first] == [u.id for u in waiting[:2]] and first[0] == side.uploads.get(waiting[0].id)
    assert [u.id for u in side.uploads.awaiting_objects(bucket, first[-1].id, 2)] == [waiting[2].id]
    assert side.uploads.awaiting_objects(bucket, waiting[2].id, 2) == []
    keys = [waiting[0].key, written.key, f"{bucket}/nobody.fa"]
    known = side.uploads.known_objects(bucket, keys)
    assert set(known) == {waiting[0].key, written.key}
    assert known[written.key].etag == "e1" and known[waiting[0].key].etag is None
    assert side.uploads.known_objects(bucket, []) == {}
    assert side.uploads.known_objects(BUCKET, [written.key]) == {}  # keys of another bucket

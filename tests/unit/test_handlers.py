"""Every branch of every service handler, against the in-memory fakes of ``tests/unit/fakes.py``."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from services.assembler.handler import AssemblerDeps, handle_assemble
from services.assembler.handler import give_up as give_up_assembly
from services.parser.handler import ParserDeps, ParseStalled, ProgressBudget, handle_parse
from services.parser.handler import give_up as give_up_parse
from services.persister.handler import PersisterDeps, handle_persist
from services.persister.handler import give_up as give_up_persist
from services.watchdog.handler import WatchdogDeps, sweep
from shared.domain.events import normalise_event
from shared.domain.messages import AssembleRequested, ParseCompleted, SequenceBatch
from shared.domain.record_schema import Part
from shared.domain.stages import GiveUp
from shared.domain.uploads import Failure, ParseErrorCode, PipelineErrorCode, State, Upload, result_key
from shared.runtime.settings import Settings
from tests.builders import record, sequence_batch
from tests.unit.fakes import FakeObjects, FakePublisher, FakeResults, FakeUploads, make_upload

SETTINGS = Settings(read_range_bytes=64, part_bytes=1024, batch_bytes=4096, result_part_bytes=5 * 1024 * 1024)
BUCKET = SETTINGS.uploads_bucket
FASTA = b">a first\nACGT\n>b\nGGCC\n>a again\n\n>long\n" + b"ACGT" * 3000 + b"\n"


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def parser(uploads: FakeUploads, objects: FakeObjects, publisher: FakePublisher) -> ParserDeps:
    return ParserDeps(SETTINGS, uploads, objects, publisher)


def only(uploads: FakeUploads) -> Upload:
    (upload,) = uploads.uploads.values()
    return upload


# --- parser ---------------------------------------------------------------------------------------


def test_parser_publishes_numbered_batches_then_the_end(parser: ParserDeps, objects: FakeObjects) -> None:
    handle_parse([objects.put(BUCKET, "x/a.fa", FASTA, "e1")], parser)
    publisher, upload = parser.publisher, only(parser.uploads)  # type: ignore[attr-defined]
    *batches, done = publisher.messages
    assert all(isinstance(b, SequenceBatch) for b in batches) and isinstance(done, ParseCompleted)
    assert [b.batch_no for b in batches] == list(range(len(batches))) and len(batches) > 1
    assert (done.record_count, done.batch_count, done.source_bytes, done.format) == (
        4,
        len(batches),
        len(FASTA),
        "fasta",
    )
    assert upload.state is State.PARSING and upload.parsing_started_at is not None
    assert publisher.flushes == 1 and not parser.uploads.locked  # type: ignore[attr-defined]


def test_parser_ignores_events_of_other_buckets_without_reading(parser: ParserDeps, objects: FakeObjects) -> None:
    objects.on_read = lambda number: pytest.fail("read an object of another bucket")
    handle_parse([objects.put("someone-elses", "a.fa", FASTA, "e1")], parser)
    assert parser.uploads.uploads == {} and parser.publisher.messages == []  # type: ignore[attr-defined]


def test_an_event_the_store_does_not_confirm_changes_nothing(parser: ParserDeps, objects: FakeObjects) -> None:
    """A forged etag for a finished upload: no new generation, its rows and result stay."""
    uploads: FakeUploads = parser.uploads  # type: ignore[assignment]
    event = objects.put(BUCKET, "a.fa", FASTA, "e1")
    handle_parse([event], parser)
    finished = uploads._set(only(uploads), state=State.DONE, result_key="r")
    uploads.records[finished.id] = [record(0)]
    forged = event.model_copy(update={"etag": "forged", "event_time": datetime.now(UTC) + timedelta(seconds=5)})
    handle_parse([forged], parser)
    assert only(uploads) == finished and uploads.records[finished.id] == [record(0)]
    ghost = objects.put(BUCKET, "gone.fa", FASTA, "e1")
    del objects.objects[(BUCKET, "gone.fa")]
    handle_parse([ghost], parser)  # an object deleted since: no upload is created for it
    assert [u.key for u in uploads.uploads.values()] == ["a.fa"]


def test_an_event_from_the_future_cannot_make_later_events_stale(parser: ParserDeps, objects: FakeObjects) -> None:
    uploads: FakeUploads = parser.uploads  # type: ignore[assignment]
    first = objects.put(BUCKET, "a.fa", FASTA, "e1")
    handle_parse([first.model_copy(update={"event_time": datetime.now(UTC) + timedelta(days=365)})], parser)
    assert only(uploads).event_time < datetime.now(UTC) + timedelta(minutes=1)  # type: ignore[operator]
    uploads._set(only(uploads), state=State.DONE)
    second = objects.put(BUCKET, "a.fa", b">b\nAC\n", "e2")  # a genuine overwrite, a minute later
    handle_parse([second.model_copy(update={"event_time": datetime.now(UTC) + timedelta(minutes=1)})], parser)
    assert (only(uploads).generation, only(uploads).etag) == (2, "e2")


def test_parser_ignores_a_notification_without_objects(parser: ParserDeps) -> None:
    handle_parse([], parser)
    assert parser.publisher.messages == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("state", [State.PERSISTING, State.DONE, State.FAILED])
def test_parser_does_nothing_for_a_duplicate(parser: ParserDeps, objects: FakeObjects, state: State) -> None:
    event = objects.put(BUCKET, "a.fa", FASTA, "e1")
    uploads: FakeUploads = parser.uploads  # type: ignore[assignment]
    uploads.claim(event, confirmed=True)
    uploads._set(only(uploads), state=state)
    handle_parse([event], parser)
    assert parser.publisher.messages == [] and only(uploads).state is state  # type: ignore[attr-defined]


def test_parser_does_nothing_for_a_stale_event(parser: ParserDeps, objects: FakeObjects) -> None:
    event = objects.put(BUCKET, "a.fa", FASTA, "e2")
    parser.uploads.claim(event, confirmed=True)
    older = event.model_copy(update={"etag": "e1", "event_time": event.event_time - timedelta(hours=1)})  # type: ignore[operator]
    handle_parse([older], parser)
    upload = only(parser.uploads)  # type: ignore[arg-type]
    assert (upload.etag, upload.generation, parser.publisher.messages) == ("e2", 1, [])  # type: ignore[attr-defined]


def test_parser_leaves_a_generation_locked_by_another_parser(parser: ParserDeps, objects: FakeObjects) -> None:
    event = objects.put(BUCKET, "a.fa", FASTA, "e1")
    upload = parser.uploads.claim(event, confirmed=True).upload
    parser.uploads.locked.add((upload.id, "parse"))  # type: ignore[attr-defined]
    handle_parse([event], parser)
    assert parser.publisher.messages == [] and only(parser.uploads).state is State.QUEUED  # type: ignore[attr-defined, arg-type]


def test_parser_stops_when_the_generation_moved_on_before_it_started(
    parser: ParserDeps, objects: FakeObjects, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parser.uploads, "start_parsing", lambda upload_id, generation: False)
    handle_parse([objects.put(BUCKET, "a.fa", FASTA, "e1")], parser)
    assert parser.publisher.messages == []  # type: ignore[attr-defined]


def test_parser_fails_bad_input_with_code_and_position(parser: ParserDeps, objects: FakeObjects) -> None:
    handle_parse([objects.put(BUCKET, "a.fa", b">a\nACGT\nAC!T\n", "e1")], parser)
    failure = only(parser.uploads).failure  # type: ignore[arg-type]
    assert failure is not None
    assert (failure.code, failure.line, failure.column) == (ParseErrorCode.INVALID_CHARACTER, 3, 3)
    assert parser.publisher.flushes == 1  # type: ignore[attr-defined]


def test_parser_leaves_an_overwritten_object_to_the_newer_event(parser: ParserDeps, objects: FakeObjects) -> None:
    event = objects.put(BUCKET, "a.fa", FASTA, "e1")
    objects.on_read = lambda number: number == 2 and objects.put(BUCKET, "a.fa", b">z\nA\n", "e2") and None
    handle_parse([event], parser)
    upload = only(parser.uploads)  # type: ignore[arg-type]
    assert upload.state is State.PARSING and upload.failure is None
    assert not any(isinstance(m, ParseCompleted) for m in parser.publisher.messages)  # type: ignore[attr-defined]


def test_parser_fails_an_object_deleted_while_reading(parser: ParserDeps, objects: FakeObjects) -> None:
    event = objects.put(BUCKET, "a.fa", FASTA, "e1")
    objects.on_read = lambda number: number == 1 and objects.objects.clear()
    handle_parse([event], parser)
    failure = only(parser.uploads).failure  # type: ignore[arg-type]
    assert failure is not None and failure.code is PipelineErrorCode.OBJECT_DELETED


def test_parser_flushes_and_raises_on_an_unexpected_error(parser: ParserDeps, objects: FakeObjects) -> None:
    event = objects.put(BUCKET, "a.fa", FASTA, "e1")

    def broken(number: int) -> None:
        if number == 3:
            raise ConnectionError("store away")

    objects.on_read = broken
    with pytest.raises(ConnectionError):
        handle_parse([event], parser)
    assert parser.publisher.flushes == 1 and not parser.uploads.locked  # type: ignore[attr-defined]
    assert only(parser.uploads).state is State.PARSING  # type: ignore[arg-type]  # a retry resumes it


def test_parser_fails_a_parse_that_makes_no_progress(
    uploads: FakeUploads, objects: FakeObjects, publisher: FakePublisher
) -> None:
    deps = ParserDeps(SETTINGS.model_copy(update={"parse_stall_seconds": -1}), uploads, objects, publisher)
    handle_parse([objects.put(BUCKET, "a.fa", FASTA, "e1")], deps)
    failure = only(uploads).failure
    assert failure is not None and failure.code is PipelineErrorCode.PARSE_STALLED
    assert publisher.flushes == 1


def test_progress_budget_counts_from_the_last_progress() -> None:
    now = [0.0]
    budget = ProgressBudget(10, clock=lambda: now[0])
    now[0] = 9
    budget.check()
    budget.progress()
    now[0] = 18
    budget.check()  # 9 s since the last progress
    now[0] = 20
    with pytest.raises(ParseStalled):
        budget.check()


def test_parser_give_up_fails_only_the_generation_of_the_event(parser: ParserDeps, objects: FakeObjects) -> None:
    event = objects.put(BUCKET, "a.fa", FASTA, "e1")
    parser.uploads.claim(event, confirmed=True)
    give_up_parse([event.model_copy(update={"etag": "other"})], GiveUp("boom", "id1"), parser)
    assert only(parser.uploads).failure is None  # type: ignore[arg-type]
    give_up_parse(
        [event, objects.put(BUCKET, "unknown.fa", b"", "e9")], GiveUp("the parse stage failed", "id2"), parser
    )
    failure = only(parser.uploads).failure  # type: ignore[arg-type]
    assert failure is not None and (failure.code, failure.message, failure.error_id) == (
        PipelineErrorCode.PROCESSING_FAILED, "the parse stage failed", "id2"
    )  # fmt: skip


# --- persister ------------------------------------------------------------------------------------


def persisting(uploads: FakeUploads) -> Upload:
    return uploads.add(make_upload(id=uuid.uuid4(), state=State.PARSING, bytes_done=0))


def test_persister_stores_each_batch_once_and_requests_assembly_at_the_first_and_the_end(
    uploads: FakeUploads,
) -> None:
    publisher = FakePublisher()
    deps = PersisterDeps(uploads, publisher)
    upload = persisting(uploads)
    request = AssembleRequested(upload_id=upload.id, generation=1)
    first = sequence_batch(upload.id, 1, 0, [record(0, residues="AC", length=2)], source_offset=10)
    handle_persist(first, deps)  # the assembler starts following the generation
    assert publisher.messages == [request] and uploads.batch_records[(upload.id, 1, 0, 0)] == (0, 1)
    handle_persist(first, deps)  # a redelivery: stored once, not announced again
    assert len(uploads.records[upload.id]) == 1 and publisher.messages == [request]
    done = ParseCompleted(
        upload_id=upload.id, generation=1, batch_count=2, record_count=2, source_bytes=20, format="fasta"
    )
    handle_persist(done, deps)
    assert uploads.uploads[upload.id].state is State.PERSISTING and publisher.messages == [request]
    handle_persist(sequence_batch(upload.id, 1, 1, [record(1)]), deps)
    assert uploads.uploads[upload.id].state is State.ASSEMBLING
    assert publisher.messages == [request, request]
    handle_persist(first, deps)  # a replay after the end announces again: the assembler ignores repeats
    assert len(publisher.messages) == 3 and len(uploads.records[upload.id]) == 2


def test_persister_ignores_batches_of_a_replaced_generation(uploads: FakeUploads) -> None:
    deps = PersisterDeps(uploads, FakePublisher())
    upload = persisting(uploads)
    handle_persist(sequence_batch(upload.id, 0, 0, [record(0)]), deps)
    assert upload.id not in uploads.records


def test_persister_drops_its_sessions_when_a_store_fails(uploads: FakeUploads) -> None:
    deps = PersisterDeps(uploads, FakePublisher())
    upload = persisting(uploads)
    uploads.fail_on_store = OSError("server closed the connection")
    with pytest.raises(OSError):
        handle_persist(sequence_batch(upload.id, 1, 0, [record(0)]), deps)
    assert uploads.resets == 1


def test_persister_give_up_fails_the_generation(uploads: FakeUploads) -> None:
    upload = persisting(uploads)
    uploads.records[upload.id] = [record(0)]
    done = ParseCompleted(upload_id=upload.id, generation=1, batch_count=1, record_count=1, source_bytes=1, format="x")
    give_up_persist(done, GiveUp("failed 5 times", "id3"), PersisterDeps(uploads, FakePublisher()))
    failure = uploads.uploads[upload.id].failure
    assert failure is not None and (failure.code, failure.error_id) == (PipelineErrorCode.PERSIST_FAILED, "id3")
    assert upload.id not in uploads.records  # a failed generation keeps no rows


# --- assembler ------------------------------------------------------------------------------------


def assembling(uploads: FakeUploads, records: int = 3) -> Upload:
    upload = uploads.add(make_upload(id=uuid.uuid4(), state=State.ASSEMBLING, records_total=records, format="fasta"))
    uploads.records[upload.id] = [
        record(0, seq_id="a", length=4, residues="ACGT", attributes={"k": "v"}),
        record(1, seq_id="a", length=0, residues=""),
        record(2, seq_id="c", length=6, part_count=2, quality=None),
    ]
    uploads.parts[upload.id] = [Part(2, 0, "ACG"), Part(2, 1, "TTT")]
    uploads.batch_records[(upload.id, 1, 0, 0)] = (0, 3)  # one batch, committed, with all three
    uploads.uploads[upload.id] = dataclasses.replace(upload, batches_total=1)
    return uploads.uploads[upload.id]


def test_assembler_writes_the_document_and_finishes(uploads: FakeUploads) -> None:
    results = FakeResults()
    upload = assembling(uploads)
    handle_assemble(AssembleRequested(upload_id=upload.id, generation=1), AssemblerDeps(SETTINGS, uploads, results))
    document = orjson.loads(results.documents[(SETTINGS.results_bucket, result_key(upload))])
    assert [r["sequence"] for r in document["records"]] == ["ACGT", "", "ACGTTT"]
    assert document["records"][0]["attributes"] == {"k": "v"} and "attributes" not in document["records"][1]
    assert (document["duplicate_names"], document["empty_sequences"]) == (1, 1)
    done = uploads.uploads[upload.id]
    assert (done.state, done.result_records, done.duplicate_names) == (State.DONE, 3, 1)
    written = results.documents[(SETTINGS.results_bucket, result_key(upload))]
    assert done.result_size == len(written)
    assert done.result_sha256 == hashlib.sha256(written).hexdigest()  # hashed as written, never read back


class CommitLater:
    """The persister, as the assembler's sleep sees it: each wait, the next batch (in a given order)
    is committed; after the last, the upload is ``assembling``; ``fail_at`` fails it instead."""

    def __init__(self, uploads: FakeUploads, upload: Upload, order: list[tuple[int, int | None, int | None]]) -> None:
        self.uploads, self.upload, self.order = uploads, upload, list(order)
        self.windows_at_commit: list[list[tuple[int, int]]] = []
        self.fail_at: int | None = None

    def __call__(self, seconds: float) -> None:
        assert seconds == SETTINGS.assembly_poll_seconds
        self.windows_at_commit.append(list(self.uploads.windows))
        if self.fail_at is not None and len(self.windows_at_commit) == self.fail_at:
            self.uploads.fail(self.upload.id, 1, Failure(ParseErrorCode.INVALID_CHARACTER, "bad", 9, 2))
            return
        if self.order:
            batch_no, *records = self.order.pop(0)
            self.uploads.batch_records[(self.upload.id, 1, 0, batch_no)] = (records[0], records[1])
        else:
            self.uploads.uploads[self.upload.id] = dataclasses.replace(
                self.uploads.uploads[self.upload.id], state=State.ASSEMBLING, batches_total=4
            )


def following(uploads: FakeUploads) -> Upload:
    """An upload still parsing with its three records stored, of which only batch 0 is committed."""
    upload = assembling(uploads)
    uploads.batch_records.clear()
    uploads.batch_records[(upload.id, 1, 0, 0)] = (0, 1)  # record 0
    uploads.uploads[upload.id] = dataclasses.replace(upload, state=State.PARSING, batches_total=None)
    return uploads.uploads[upload.id]


def test_assembler_writes_records_as_their_batches_commit_in_order(uploads: FakeUploads) -> None:
    """Batch 2 (records 1..2, the second with parts from batch 1) commits before batch 1: nothing
    past record 0 is read until the gap closes; then each window once, in order."""
    results = FakeResults()
    upload = following(uploads)
    commit = CommitLater(uploads, upload, [(2, 1, 3), (3, None, None), (1, None, None)])
    deps = AssemblerDeps(SETTINGS, uploads, results, sleep=commit)
    handle_assemble(AssembleRequested(upload_id=upload.id, generation=1), deps)
    # Record 0 was written before any later batch committed; the gap held back records 1..2.
    assert commit.windows_at_commit[0] == [(0, 1)]
    assert commit.windows_at_commit[2] == [(0, 1)]
    assert uploads.windows == [(0, 1), (1, 3)]
    assert uploads.streamed_windows == 0  # each window is one batch's records: read at once
    document = orjson.loads(results.documents[(SETTINGS.results_bucket, result_key(upload))])
    assert [r["sequence"] for r in document["records"]] == ["ACGT", "", "ACGTTT"]
    assert (document["record_count"], document["format"], document["duplicate_names"]) == (3, "fasta", 1)
    done = uploads.uploads[upload.id]
    assert done.state is State.DONE and done.assembly_started_at is not None
    # The collection digested on the way equals the one of all the records read at once.
    assert uploads.collections[(upload.id, upload.generation)] == FakeUploads.collection_of(uploads.records[upload.id])


def assembled_with_batches(uploads: FakeUploads, batches: list[tuple[int | None, int | None]]) -> FakeUploads:
    """The three records of ``assembling``, committed as batches 0, 1, ... holding ``(records_from,
    records_through)`` each, assembled; the document must hold the three records whatever the windows."""
    upload = assembling(uploads)
    uploads.batch_records.clear()
    uploads.batch_records.update({(upload.id, 1, 0, no): records for no, records in enumerate(batches)})
    uploads.uploads[upload.id] = dataclasses.replace(upload, batches_total=len(batches))
    results = FakeResults()
    handle_assemble(AssembleRequested(upload_id=upload.id, generation=1), AssemblerDeps(SETTINGS, uploads, results))
    document = orjson.loads(results.documents[(SETTINGS.results_bucket, result_key(upload))])
    assert [r["sequence"] for r in document["records"]] == ["ACGT", "", "ACGTTT"]
    return uploads


def test_assembler_reads_each_batch_at_once_and_streams_what_no_batch_end_bounds(uploads: FakeUploads) -> None:
    """Batches 0 and 1 each end their records (one window each, read at once); batches stored
    before ``records_through`` was recorded say nothing, so the rest is one window, streamed."""
    assembled_with_batches(uploads, [(0, 1), (1, 2), (None, None)])
    assert uploads.windows == [(0, 1), (1, 2), (2, 3)] and uploads.streamed_windows == 1


def test_assembler_streams_a_window_that_does_not_start_where_the_batch_before_ended(
    uploads: FakeUploads,
) -> None:
    """A batch whose records do not continue the batch before it (its numbers claim a start past
    the last end, or it was stored before ``records_from`` was recorded) would make its window hold
    other batches' records: such a window is streamed, never loaded at once."""
    assert assembled_with_batches(uploads, [(0, 1), (2, 3), (None, None)]).streamed_windows == 1
    assert uploads.windows == [(0, 1), (1, 3)]
    # A batch stored before records_from was recorded: its end is known, its start is not.
    again = assembled_with_batches(FakeUploads(), [(0, 1), (None, 3), (None, None)])
    assert again.windows == [(0, 1), (1, 3)] and again.streamed_windows == 1


def test_assembler_abandons_a_generation_that_fails_while_it_follows(uploads: FakeUploads) -> None:
    results = FakeResults()
    upload = following(uploads)
    commit = CommitLater(uploads, upload, [(1, None, None)])
    commit.fail_at = 2
    handle_assemble(
        AssembleRequested(upload_id=upload.id, generation=1), AssemblerDeps(SETTINGS, uploads, results, sleep=commit)
    )
    assert results.documents == {} and results.open == set()  # its multipart upload aborted
    failed = uploads.uploads[upload.id]
    assert failed.state is State.FAILED and failed.failure is not None and failed.failure.line == 9


@pytest.mark.parametrize("state", [State.DONE, State.FAILED, State.QUEUED])
def test_assembler_ignores_an_upload_not_assembling(uploads: FakeUploads, state: State) -> None:
    results = FakeResults()
    upload = uploads.add(make_upload(state=state))
    handle_assemble(AssembleRequested(upload_id=upload.id, generation=1), AssemblerDeps(SETTINGS, uploads, results))
    assert results.documents == {} and uploads.uploads[upload.id].state is state


def test_assembler_leaves_a_generation_locked_by_another(uploads: FakeUploads) -> None:
    results = FakeResults()
    upload = assembling(uploads)
    uploads.locked.add((upload.id, "assemble"))
    handle_assemble(AssembleRequested(upload_id=upload.id, generation=1), AssemblerDeps(SETTINGS, uploads, results))
    assert results.documents == {} and uploads.uploads[upload.id].state is State.ASSEMBLING


def test_assembler_aborts_a_crashed_attempt_and_refuses_a_short_document(uploads: FakeUploads) -> None:
    results = FakeResults()
    upload = assembling(uploads, records=4)  # one record fewer stored than the parse counted
    results.open.add((SETTINGS.results_bucket, result_key(upload)))
    with pytest.raises(RuntimeError, match="wrote 3 records, expected 4"):
        handle_assemble(AssembleRequested(upload_id=upload.id, generation=1), AssemblerDeps(SETTINGS, uploads, results))
    assert results.aborted == 1 and uploads.resets == 1 and uploads.uploads[upload.id].state is State.ASSEMBLING


def test_assembler_drops_its_sessions_and_the_upload_when_writing_fails(uploads: FakeUploads) -> None:
    results = FakeResults()
    results.fail_after = 10
    upload = assembling(uploads)
    with pytest.raises(ConnectionError):
        handle_assemble(AssembleRequested(upload_id=upload.id, generation=1), AssemblerDeps(SETTINGS, uploads, results))
    assert results.documents == {} and results.open == set() and uploads.resets >= 1
    assert not uploads.locked


def test_assembler_give_up_fails_the_generation(uploads: FakeUploads) -> None:
    upload = assembling(uploads)
    request = AssembleRequested(upload_id=upload.id, generation=1)
    give_up_assembly(request, GiveUp("no", "id4"), AssemblerDeps(SETTINGS, uploads, FakeResults()))
    failure = uploads.uploads[upload.id].failure
    assert failure is not None and failure.code is PipelineErrorCode.ASSEMBLE_FAILED


# --- watchdog -------------------------------------------------------------------------------------


def test_watchdog_reissues_each_stalled_stage_once_per_period(uploads: FakeUploads) -> None:
    publisher = FakePublisher()
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    parsing = uploads.add(make_upload(id=uuid.uuid4(), key="p.fa", state=State.PERSISTING, updated_at=long_ago))
    stuck = uploads.add(make_upload(id=uuid.uuid4(), state=State.ASSEMBLING, updated_at=long_ago, generation=3))
    uploads.add(make_upload(id=uuid.uuid4(), state=State.PARSING))  # moving: not stalled
    uploads.add(make_upload(id=uuid.uuid4(), state=State.DONE, updated_at=long_ago))  # finished: never
    deps = WatchdogDeps(Settings(stall_after_seconds=60), uploads, publisher, FakeObjects())
    picked = sweep(deps)
    assert {u.id for u in picked} == {parsing.id, stuck.id}
    assert publisher.messages == [AssembleRequested(upload_id=stuck.id, generation=3)]
    (event,) = normalise_event(publisher.events[0])
    assert (event.key, event.etag) == ("p.fa", "e")
    assert uploads.uploads[parsing.id].state is State.PARSING  # a lost batch: the re-parse is accepted
    assert sweep(deps) == []  # not again within the period


def test_watchdog_records_nothing_when_the_broker_is_away(uploads: FakeUploads) -> None:
    publisher = FakePublisher()
    publisher.fail_with = ConnectionError("broker away")
    upload = uploads.add(make_upload(state=State.QUEUED, updated_at=datetime.now(UTC) - timedelta(hours=1)))
    with pytest.raises(ConnectionError):
        sweep(WatchdogDeps(Settings(stall_after_seconds=60), uploads, publisher, FakeObjects()))
    assert uploads.uploads[upload.id].pickups == 0


def test_watchdog_expires_tickets_that_ran_out_with_no_object(uploads: FakeUploads) -> None:
    now = datetime.now(UTC)
    grace = 300
    waiting = dict(state=State.AWAITING_UPLOAD, etag=None, generation=0)
    over = uploads.add(make_upload(id=uuid.uuid4(), ticket_expires_at=now - timedelta(seconds=grace + 5), **waiting))
    soon = now - timedelta(seconds=grace - 30)
    in_grace = uploads.add(make_upload(id=uuid.uuid4(), ticket_expires_at=soon, **waiting))
    direct = uploads.add(make_upload(id=uuid.uuid4(), ticket_expires_at=None, **waiting))  # no ticket: nothing ends
    written = uploads.add(  # the object came (its event is on its way): not expired
        make_upload(id=uuid.uuid4(), state=State.QUEUED, ticket_expires_at=now - timedelta(hours=1))
    )
    parts = uploads.add(  # an abandoned multipart upload: its parts go with it
        make_upload(
            id=uuid.uuid4(),
            key="mp.fa",
            ticket_expires_at=now - timedelta(hours=1),
            multipart_upload_id="m1",
            **waiting,
        )
    )
    objects = FakeObjects()
    objects.multipart.add(("b", "mp.fa", "m1"))
    sweep(WatchdogDeps(Settings(ticket_grace_seconds=grace), uploads, FakePublisher(), objects))
    assert uploads.uploads[over.id].state is State.EXPIRED
    assert uploads.uploads[parts.id].state is State.EXPIRED and objects.multipart == set()
    assert {uploads.uploads[u.id].state for u in (in_grace, direct)} == {State.AWAITING_UPLOAD}
    assert uploads.uploads[written.id].state is State.QUEUED


def test_a_late_object_for_an_expired_ticket_is_still_processed(parser: ParserDeps, objects: FakeObjects) -> None:
    """The PUT began inside the ticket's life and ended after the grace: the object is the user's."""
    event = objects.put(BUCKET, "late.fa", FASTA, "e1")
    parser.uploads.add(  # type: ignore[attr-defined]
        make_upload(bucket=BUCKET, key="late.fa", state=State.EXPIRED, etag=None, generation=0)
    )
    handle_parse([event], parser)
    assert only(parser.uploads).generation == 1  # type: ignore[arg-type]
    done = parser.publisher.messages[-1]  # type: ignore[attr-defined]
    assert isinstance(done, ParseCompleted) and done.record_count == 4


@pytest.mark.parametrize("claimed", [10, 10 * len(FASTA)])
def test_the_parser_reads_the_size_the_store_shows_not_the_events(
    parser: ParserDeps, objects: FakeObjects, claimed: int
) -> None:
    """A notification's size is not trusted: too small would cut the file, too large read past it."""
    event = objects.put(BUCKET, "a.fa", FASTA, "e1").model_copy(update={"size": claimed})
    handle_parse([event], parser)
    done = parser.publisher.messages[-1]  # type: ignore[attr-defined]
    assert isinstance(done, ParseCompleted) and (done.source_bytes, done.record_count) == (len(FASTA), 4)
    assert only(parser.uploads).bytes_total == len(FASTA)  # type: ignore[arg-type]


def test_an_upload_changed_between_look_and_lock_is_looked_at_again(parser: ParserDeps, objects: FakeObjects) -> None:
    """The first look saw a redelivery (no HEAD due); by the lock another event had moved the upload
    on, so this one would start a generation: it is checked with the store first, and ignored."""
    first = objects.put(BUCKET, "race.fa", FASTA, "e1")
    handle_parse([first], parser)
    uploads: FakeUploads = parser.uploads  # type: ignore[assignment]
    upload = only(uploads)
    objects.put(BUCKET, "race.fa", FASTA + b">z\nA\n", "e2")  # the store now shows e2 only

    def moved_on() -> None:  # a concurrent claim of e2, between this event's look and its lock
        uploads.add(dataclasses.replace(uploads.uploads[upload.id], etag="e2", generation=2))
        uploads.before_claim = None

    uploads.before_claim = moved_on
    handle_parse([first.model_copy(update={"event_time": None})], parser)  # e1 redelivered
    after = uploads.uploads[upload.id]
    assert (after.etag, after.generation) == ("e2", 2)  # e1 is not in the store: nothing changed


@pytest.mark.parametrize("registered", [True, False])
def test_a_ticket_upload_carrying_unsigned_headers_fails_unread(
    parser: ParserDeps, objects: FakeObjects, registered: bool
) -> None:
    """What a presigned PUT did not sign (metadata, tags, caching headers) refuses a registered
    upload's object before any of it is read; an object written with the owner's own keys is not
    a ticket's, and keeps what its writer gave it."""
    if registered:
        ticket = make_upload(bucket=BUCKET, key="m.fa", state=State.AWAITING_UPLOAD, etag=None, generation=0)
        parser.uploads.add(ticket)  # type: ignore[attr-defined]
    reads: list[int] = []
    objects.on_read = reads.append
    event = objects.put(BUCKET, "m.fa", FASTA, "e1", unsigned_attributes=("x-amz-meta-evil", "x-amz-tagging-count"))
    handle_parse([event], parser)
    upload = only(parser.uploads)  # type: ignore[arg-type]
    if registered:
        assert upload.state is State.FAILED and upload.error_code == PipelineErrorCode.UNSIGNED_HEADERS
        assert "x-amz-meta-evil" in (upload.error_message or "") and reads == []
        assert parser.publisher.messages == []  # type: ignore[attr-defined]
    else:
        assert upload.state is State.PARSING and reads


@pytest.mark.parametrize("owner_is_admin", [False, True])
def test_a_direct_write_over_the_owners_quota_fails_unread(
    uploads: FakeUploads, objects: FakeObjects, publisher: FakePublisher, owner_is_admin: bool
) -> None:
    """An object written with an owner's own S3 keys meets the owner's quotas in the parser."""
    parser = ParserDeps(Settings(quota_uploads_in_flight=1), uploads, objects, publisher)
    uploads.owners.add("alice")  # a key named alice exists: objects under alice/ are hers
    if owner_is_admin:
        uploads.admins.add("alice")
    uploads.add(make_upload(bucket=BUCKET, key="alice/busy.fa", owner="alice", state=State.PARSING, etag="e0"))
    reads: list[int] = []
    objects.on_read = reads.append
    handle_parse([objects.put(BUCKET, "alice/more.fa", FASTA, "e1")], parser)
    (upload,) = (u for u in uploads.uploads.values() if u.key == "alice/more.fa")
    if owner_is_admin:
        assert upload.state is State.PARSING and reads
    else:
        assert upload.state is State.FAILED and upload.error_code == PipelineErrorCode.QUOTA_EXCEEDED
        assert "too_many_uploads_in_flight" in (upload.error_message or "") and reads == []


def test_a_registered_key_written_again_with_the_owners_own_keys_meets_the_quotas(
    uploads: FakeUploads, objects: FakeObjects, publisher: FakePublisher
) -> None:
    """A 1-byte registration, then a large object written to its key with the owner's S3 keys."""
    parser = ParserDeps(Settings(quota_stored_bytes=1000), uploads, objects, publisher)
    uploads.add(
        make_upload(bucket=BUCKET, key="alice/1/f.fa", owner="alice", state=State.AWAITING_UPLOAD, etag=None,
                    generation=0, bytes_total=1)
    )  # fmt: skip
    handle_parse([objects.put(BUCKET, "alice/1/f.fa", FASTA, "e1")], parser)
    upload = only(uploads)
    assert upload.state is State.FAILED and upload.error_code == PipelineErrorCode.QUOTA_EXCEEDED
    assert "storage_quota_exceeded" in (upload.error_message or "")

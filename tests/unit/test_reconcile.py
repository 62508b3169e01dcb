"""The reconciler: which tickets and objects it starts (pure), the bounds its defaults keep, and that
what it publishes is an ordinary event the parser checks, claimed once whatever arrives after it."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.parser.handler import ParserDeps, handle_parse
from services.watchdog.reconcile import WALK_STEP, ReconcileDeps, Reconciler, schedule_of
from shared.domain.events import normalise_event, reconcile_event
from shared.domain.messages import SequenceBatch
from shared.domain.reconcile import (
    ListedObject,
    ReconcileSchedule,
    StartKind,
    object_to_start,
    objects_to_start,
    tickets_to_start,
    worth_a_look,
)
from shared.domain.uploads import Mode, State, Upload
from shared.runtime.settings import Settings
from tests.unit.fakes import FakeObjects, FakePublisher, FakeUploads, make_upload

SETTINGS = Settings(read_range_bytes=64, part_bytes=1024, batch_bytes=4096)
BUCKET = SETTINGS.uploads_bucket
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
GRACE = timedelta(seconds=3)
OLD = NOW - timedelta(minutes=1)
FASTA = b">a\nACGT\n>b\nGGCC\n"


def listed(key: str = "alice/a.fa", etag: str = "e1", when: datetime = OLD) -> ListedObject:
    return ListedObject(key, etag, 16, when)


def ticket(key: str = "alice/a.fa", **changes: object) -> Upload:
    values: dict[str, object] = dict(
        id=uuid.uuid4(), bucket=BUCKET, key=key, registered=True, state=State.AWAITING_UPLOAD, generation=0,
        etag=None, bytes_total=None, bytes_done=0, created_at=OLD, updated_at=OLD,
    )  # fmt: skip
    values.update(changes)
    return make_upload(**values)


# --- the pure decisions ---------------------------------------------------------------------------


def test_an_object_no_upload_knows_is_started_once_past_the_grace() -> None:
    start = object_to_start(listed(), None, NOW, GRACE)
    assert start is not None and start.kind is StartKind.UNREGISTERED and start.upload is None
    young = listed(when=NOW - timedelta(seconds=1))  # its notification still has its chance
    assert object_to_start(young, None, NOW, GRACE) is None
    assert object_to_start(listed(when=NOW - GRACE), None, NOW, GRACE) is not None


def test_an_overwrite_whose_etag_no_upload_knows_is_started() -> None:
    done = make_upload(bucket=BUCKET, key="alice/a.fa", state=State.DONE, etag="e1")
    assert object_to_start(listed(etag="e1"), done, NOW, GRACE) is None  # the event did its work
    start = object_to_start(listed(etag="e2"), done, NOW, GRACE)
    assert start is not None and start.kind is StartKind.UNREGISTERED and start.upload == done


@pytest.mark.parametrize("state", [State.QUEUED, State.PARSING, State.PERSISTING, State.FAILED, State.REVOKED])
def test_an_object_whose_upload_knows_its_etag_is_left_alone(state: State) -> None:
    assert object_to_start(listed(), make_upload(key="alice/a.fa", state=state, etag="e1"), NOW, GRACE) is None


def test_deleted_tombstones_registered_tickets_and_validations_are_left_alone() -> None:
    deleted = make_upload(key="alice/a.fa", state=State.DELETED, etag="e0")
    assert object_to_start(listed(etag="e9"), deleted, NOW, GRACE) is None  # never resurrected
    assert object_to_start(listed(), ticket(), NOW, GRACE) is None  # the ticket pass's, within its bound
    validated = make_upload(key="alice/a.fa", state=State.DONE, etag="e1", mode=Mode.VALIDATE.value)
    assert object_to_start(listed(), validated, NOW, GRACE) is None  # its object awaits its removal
    expired = ticket(state=State.EXPIRED)  # a ticket that ran out, its object late: processed like any
    assert object_to_start(listed(), expired, NOW, GRACE) is not None


def test_a_page_is_decided_against_the_uploads_of_its_keys() -> None:
    page = [listed("a/1.fa"), listed("a/2.fa"), listed("a/3.fa", etag="new"), listed("a/4.fa")]
    known = {
        "a/2.fa": make_upload(key="a/2.fa", state=State.DONE, etag="e1"),
        "a/3.fa": make_upload(key="a/3.fa", state=State.DONE, etag="old"),
        "a/4.fa": ticket("a/4.fa"),
    }
    assert [s.listed.key for s in objects_to_start(page, known, NOW, GRACE)] == ["a/1.fa", "a/3.fa"]


def test_a_ticket_is_started_when_its_object_exists_past_the_grace() -> None:
    waiting, absent, young, moved_on = ticket("a/1.fa"), ticket("a/2.fa"), ticket("a/3.fa"), ticket("a/4.fa")
    moved_on = make_upload(id=moved_on.id, key="a/4.fa", state=State.QUEUED, etag="e1")  # its event came
    found = {"a/1.fa": listed("a/1.fa"), "a/3.fa": listed("a/3.fa", when=NOW), "a/4.fa": listed("a/4.fa")}
    starts = tickets_to_start([waiting, absent, young, moved_on], found, NOW, GRACE)
    assert [(s.kind, s.upload) for s in starts] == [(StartKind.REGISTERED, waiting)]


def test_a_ticket_registered_within_the_grace_is_not_asked_about() -> None:
    fresh, older = ticket(created_at=NOW - timedelta(seconds=1)), ticket()
    assert worth_a_look([fresh, older, make_upload(state=State.DONE)], NOW, GRACE) == [older]


def test_the_default_bounds_are_10_s_for_tickets_and_2_min_for_objects() -> None:
    defaults = Settings.model_construct()  # the declared defaults, whatever the environment says
    schedule = schedule_of(defaults)
    assert schedule.tickets_within == timedelta(seconds=10)
    assert schedule.objects_within == timedelta(minutes=2)
    # grace + one period + a pass taking at most a period: within the bound
    assert schedule.grace + 2 * schedule.ticket_period <= schedule.tickets_within
    assert schedule.grace + 2 * schedule.walk_period <= schedule.objects_within
    # the walk covers fifty 10,000-object buckets within its share of the bound
    pages = schedule.walk_pages_within_bound(defaults.reconcile_pages_per_step, WALK_STEP)
    assert pages * defaults.reconcile_page_keys >= 50 * 10_000
    with pytest.raises(ValueError):
        ReconcileSchedule(timedelta(seconds=3), timedelta(minutes=2), timedelta(seconds=3))


def test_the_synthetic_event_is_the_store_s_shape_with_the_write_time() -> None:
    key = "alice/dir with space/ü+%2F.fa"
    (event,) = normalise_event(reconcile_event(BUCKET, ListedObject(key, "abc-2", 99, OLD)))
    assert (event.bucket, event.key, event.etag, event.size, event.event_time) == (BUCKET, key, "abc-2", 99, OLD)


# --- the passes, on the fakes, with a clock the test moves ------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.seconds = 0.0

    def monotonic(self) -> float:
        return self.seconds

    def now(self) -> datetime:
        return NOW + timedelta(seconds=self.seconds)


def reconciler(uploads: FakeUploads, objects: FakeObjects, clock: Clock, **settings: object) -> Reconciler:
    deps = ReconcileDeps(SETTINGS.model_copy(update=settings), uploads, objects, FakePublisher())
    return Reconciler(deps, clock=clock.now, monotonic=clock.monotonic)


def put(objects: FakeObjects, key: str, when: datetime, etag: str = "e1") -> None:
    objects.put(BUCKET, key, FASTA, etag)
    objects.written[(BUCKET, key)] = when


def started_at(recon: Reconciler, clock: Clock, until: float) -> float | None:
    """Run the passes as the watchdog's loop does; the clock's time of the first start, if any."""
    events: list[bytes] = recon.deps.publisher.events  # type: ignore[attr-defined]
    due = 0.0
    while clock.seconds <= until:
        if clock.seconds >= due:
            due = recon.run_due()
            if events:
                return clock.seconds
        clock.seconds = round(clock.seconds + 0.05, 2)
    return None


@pytest.mark.parametrize("written_after", [0.0, 0.3, 1.7, 2.9, 3.4, 5.0, 11.2])
def test_a_ticket_s_object_starts_within_10_s_wherever_it_falls_between_passes(written_after: float) -> None:
    uploads, objects, clock = FakeUploads(), FakeObjects(), Clock()
    waiting = uploads.add(ticket("alice/t.fa", created_at=NOW - timedelta(minutes=5)))
    recon = reconciler(uploads, objects, clock)
    assert started_at(recon, clock, written_after) is None  # nothing there yet
    put(objects, waiting.key, clock.now())
    written = clock.seconds
    at = started_at(recon, clock, written + 30)
    assert at is not None and at - written <= 10.0, at
    assert at - written >= recon.schedule.grace.total_seconds()  # the notification had its chance


@pytest.mark.parametrize("written_after", [0.0, 7.5, 40.0, 58.4, 61.0])
def test_an_unregistered_object_starts_within_2_min_wherever_it_falls_in_the_walk(written_after: float) -> None:
    uploads, objects, clock = FakeUploads(), FakeObjects(), Clock()
    for n in range(25):  # a bucket of known objects, several pages
        key = f"bob/known-{n:03}.fa"
        put(objects, key, OLD)
        uploads.add(make_upload(id=uuid.uuid4(), bucket=BUCKET, key=key, state=State.DONE, etag="e1"))
    recon = reconciler(uploads, objects, clock, reconcile_page_keys=4, reconcile_pages_per_step=2)
    assert started_at(recon, clock, written_after) is None
    put(objects, "bob/known-010x.fa", clock.now())  # in the middle of the listing
    written = clock.seconds
    at = started_at(recon, clock, written + 200)
    assert at is not None and at - written <= 120.0, at


def test_a_ticket_pass_starts_the_ticket_s_object_through_the_parser_s_checks_once() -> None:
    uploads, objects, clock = FakeUploads(), FakeObjects(), Clock()
    waiting = uploads.add(ticket("alice/t.fa"))
    put(objects, waiting.key, OLD, etag="e1")
    recon = reconciler(uploads, objects, clock)
    started = recon.ticket_pass()
    assert [s.kind for s in started] == [StartKind.REGISTERED]
    events: list[bytes] = recon.deps.publisher.events  # type: ignore[attr-defined]
    parser = ParserDeps(SETTINGS, uploads, objects, FakePublisher())
    handle_parse(normalise_event(events[0]), parser)
    claimed = uploads.uploads[waiting.id]
    assert (claimed.generation, claimed.etag) == (1, "e1") and claimed.state is not State.AWAITING_UPLOAD
    batches = [m.batch_no for m in parser.publisher.messages if isinstance(m, SequenceBatch)]  # type: ignore[attr-defined]
    # The real notification arrives late, while the generation is still parsing: the same etag
    # resumes the same generation, whose batches are the same numbers (the persister skips them).
    handle_parse([objects.put(BUCKET, waiting.key, FASTA, "e1")], parser)
    again = [m.batch_no for m in parser.publisher.messages if isinstance(m, SequenceBatch)]  # type: ignore[attr-defined]
    assert uploads.uploads[waiting.id].generation == 1 and again == batches * 2
    # Once the parse is recorded (the persister has its end), a late copy does nothing at all.
    uploads.uploads[waiting.id] = dataclasses.replace(uploads.uploads[waiting.id], state=State.PERSISTING)
    published = len(parser.publisher.messages)  # type: ignore[attr-defined]
    handle_parse([objects.put(BUCKET, waiting.key, FASTA, "e1")], parser)
    assert uploads.uploads[waiting.id].generation == 1
    assert len(parser.publisher.messages) == published  # type: ignore[attr-defined]
    assert recon.ticket_pass() == []  # the ticket moved on: nothing to start again
    assert recon.walk() == []  # and the walk knows its etag


def test_a_synthetic_event_for_an_object_gone_since_changes_nothing() -> None:
    """The parser's HEAD decides, not the listing: an object deleted between the two starts nothing."""
    uploads, objects, clock = FakeUploads(), FakeObjects(), Clock()
    put(objects, "carol/gone.fa", OLD)
    recon = reconciler(uploads, objects, clock)
    assert [s.kind for s in recon.walk()] == [StartKind.UNREGISTERED]
    objects.remove(BUCKET, ["carol/gone.fa"])
    events: list[bytes] = recon.deps.publisher.events  # type: ignore[attr-defined]
    handle_parse(normalise_event(events[0]), ParserDeps(SETTINGS, uploads, objects, FakePublisher()))
    assert uploads.find(BUCKET, "carol/gone.fa") is None


def test_the_ticket_pass_rotates_through_more_tickets_than_its_batch() -> None:
    uploads, objects, clock = FakeUploads(), FakeObjects(), Clock()
    tickets = [uploads.add(ticket(f"alice/{n}.fa")) for n in range(5)]
    for waiting in tickets:
        put(objects, waiting.key, OLD)
    recon = reconciler(uploads, objects, clock, reconcile_ticket_batch=2)
    seen = [s.upload.id for _ in range(3) for s in recon.ticket_pass() if s.upload]
    assert sorted(seen) == sorted(t.id for t in tickets)
    assert recon.cost.queries == 3 and recon.cost.store_requests == 5


def test_a_walk_costs_one_listing_and_one_query_a_page() -> None:
    uploads, objects, clock = FakeUploads(), FakeObjects(), Clock()
    for n in range(10):
        put(objects, f"dave/{n}.fa", OLD)
    recon = reconciler(uploads, objects, clock, reconcile_page_keys=4)
    assert len(recon.walk()) == 10
    assert (recon.cost.store_requests, recon.cost.queries, recon.cost.started) == (3, 3, {"unregistered": 10})


def test_an_announced_object_is_announced_again_only_after_the_repeat_period() -> None:
    """Its event may sit in a backed-up parse queue: each pass must not queue another copy."""
    uploads, objects, clock = FakeUploads(), FakeObjects(), Clock()
    waiting = uploads.add(ticket("alice/slow.fa"))
    put(objects, waiting.key, OLD)
    put(objects, "erin/direct.fa", OLD)
    recon = reconciler(uploads, objects, clock, reconcile_repeat_seconds=60)
    assert len(recon.ticket_pass()) == 1 and len(recon.walk()) == 1  # the ticket's object, and erin's
    clock.seconds = 59
    assert recon.ticket_pass() == [] and recon.walk() == []  # still in the queue, perhaps
    clock.seconds = 61  # never claimed: lost, announced again
    assert len(recon.ticket_pass()) == 1 and len(recon.walk()) == 1
    events: list[bytes] = recon.deps.publisher.events  # type: ignore[attr-defined]
    assert len(events) == 4


def test_a_failed_publish_is_not_taken_for_an_announcement() -> None:
    uploads, objects, clock = FakeUploads(), FakeObjects(), Clock()
    put(objects, "erin/direct.fa", OLD)
    recon = reconciler(uploads, objects, clock)
    publisher: FakePublisher = recon.deps.publisher  # type: ignore[assignment]
    publisher.fail_with = ConnectionError("broker away")
    with pytest.raises(ConnectionError):
        recon.walk()
    publisher.fail_with = None
    assert len(recon.walk()) == 1  # at once, not after the repeat period

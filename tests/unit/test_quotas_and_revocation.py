"""An owner's quotas and the revocation of its keys: the pure decisions, then the handlers on fakes."""

from __future__ import annotations

import dataclasses
import gzip
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.parser.handler import INFLATION_DRAW_STEP, ParserDeps, handle_parse
from services.watchdog.handler import WatchdogDeps, sweep
from shared.domain.messages import ParseCompleted
from shared.domain.uploads import (
    BUSY_RETRY_AFTER,
    TERMINAL,
    ClaimAction,
    ClaimDecision,
    ObjectCreated,
    OwnerUsage,
    PipelineErrorCode,
    QuotaCode,
    Quotas,
    State,
    decide_claim,
    decide_locked_claim,
    direct_write_refusal,
    needs_object_check,
    next_states,
    quota_refusal,
)
from shared.runtime.settings import Settings
from tests.unit.fakes import FakeObjects, FakePublisher, FakeUploads, make_upload

SETTINGS = Settings(read_range_bytes=4096, part_bytes=1024, batch_bytes=4096)
BUCKET = SETTINGS.uploads_bucket
FASTA = b">a\nACGT\n>b\nGGCC\n"
QUOTAS = Quotas(stored_bytes=1000, uploads_in_flight=3, open_multipart_uploads=1, registrations_per_minute=5)


def _event(etag: str, key: str = "k") -> ObjectCreated:
    return ObjectCreated(bucket=BUCKET, key=key, size=1, etag=etag, event_time=datetime.now(UTC))


# --- the state machine ----------------------------------------------------------------------------


def test_revoked_is_terminal_and_reached_from_a_waiting_ticket_or_a_new_object() -> None:
    assert State.REVOKED in TERMINAL
    assert State.REVOKED in next_states(State.AWAITING_UPLOAD)
    assert State.REVOKED in next_states(State.DONE)  # an object written again through a live URL
    # only a new object moves it (processed again if its owner holds a valid key by then)
    assert next_states(State.REVOKED) == {State.QUEUED, State.REVOKED, State.DELETED}


@pytest.mark.parametrize(
    ("upload", "etag", "decision"),
    [
        (None, "e", ClaimDecision.REFUSE_OBJECT),  # an object under a revoked owner's prefix
        (make_upload(state=State.AWAITING_UPLOAD, etag=None, generation=0), "e", ClaimDecision.REFUSE_OBJECT),
        (make_upload(state=State.DONE, etag="e"), "newer", ClaimDecision.REFUSE_OBJECT),
        (make_upload(state=State.QUEUED, etag="e"), "e", ClaimDecision.RESUME),  # it came before the revocation
        (make_upload(state=State.DONE, etag="e"), "e", ClaimDecision.DUPLICATE),
        (make_upload(state=State.REVOKED, etag="e"), "e", ClaimDecision.DUPLICATE),
    ],
)
def test_what_an_event_means_for_a_revoked_owner(upload: object, etag: str, decision: ClaimDecision) -> None:
    assert decide_claim(upload, _event(etag), owner_revoked=True) is decision  # type: ignore[arg-type]


def test_a_refused_object_is_confirmed_by_the_store_like_a_new_generation() -> None:
    """A forged event must not replace a finished generation by a revoked one either."""
    assert needs_object_check(ClaimDecision.REFUSE_OBJECT)
    assert ClaimDecision.REFUSE_OBJECT.action is ClaimAction.REVOKED
    done = make_upload(state=State.DONE, etag="e")
    assert decide_locked_claim(done, _event("forged"), False, owner_revoked=True) is ClaimDecision.UNCONFIRMED
    assert decide_locked_claim(done, _event("real"), True, owner_revoked=True) is ClaimDecision.REFUSE_OBJECT


def test_a_revoked_upload_shows_its_code() -> None:
    revoked = make_upload(state=State.REVOKED, error_code="owner_revoked", error_message="m", error_id="x")
    assert revoked.failure is not None and revoked.failure.code is PipelineErrorCode.OWNER_REVOKED


# --- the registration quotas ----------------------------------------------------------------------


def _usage(**changes: object) -> OwnerUsage:
    values: dict[str, object] = dict(
        stored_bytes=0, in_flight=0, open_multipart_uploads=0, registrations=0, oldest_registration_age=None
    )
    values.update(changes)
    return OwnerUsage(**values)  # type: ignore[arg-type]


def test_within_every_quota_a_registration_is_allowed() -> None:
    usage = _usage(stored_bytes=900, in_flight=2, open_multipart_uploads=0, registrations=4)
    assert quota_refusal(usage, QUOTAS, 100, multipart=True) is None


@pytest.mark.parametrize(
    ("usage", "size", "multipart", "code", "retry_after"),
    [
        (_usage(registrations=5, oldest_registration_age=timedelta(seconds=45)), 1, False, QuotaCode.RATE,
         timedelta(seconds=15)),
        (_usage(registrations=5, oldest_registration_age=timedelta(seconds=60)), 1, False, QuotaCode.RATE,
         timedelta(seconds=1)),  # never less than a second
        (_usage(in_flight=3), 1, False, QuotaCode.IN_FLIGHT, BUSY_RETRY_AFTER),
        (_usage(open_multipart_uploads=1), 1, True, QuotaCode.MULTIPART, BUSY_RETRY_AFTER),
        (_usage(stored_bytes=901), 100, False, QuotaCode.STORAGE, None),  # 413: waiting does not help
        (_usage(), 1001, False, QuotaCode.STORAGE, None),
    ],
)  # fmt: skip
def test_each_quota_refuses_with_its_code(
    usage: OwnerUsage, size: int, multipart: bool, code: QuotaCode, retry_after: timedelta | None
) -> None:
    refusal = quota_refusal(usage, QUOTAS, size, multipart=multipart)
    assert refusal is not None and refusal.code is code and refusal.retry_after == retry_after


def test_open_multipart_uploads_limit_only_multipart_registrations() -> None:
    assert quota_refusal(_usage(open_multipart_uploads=1), QUOTAS, 1, multipart=False) is None


# --- the parser and the watchdog on fakes -----------------------------------------------------------


@pytest.fixture
def uploads() -> FakeUploads:
    fake = FakeUploads()
    fake.owners |= {"alice", "bob"}
    fake.revoked_owners.add("alice")
    return fake


def parser(uploads: FakeUploads, objects: FakeObjects, settings: Settings = SETTINGS) -> ParserDeps:
    return ParserDeps(settings, uploads, objects, FakePublisher())


def test_an_object_through_a_revoked_owners_ticket_is_recorded_not_parsed(
    uploads: FakeUploads, objects: FakeObjects
) -> None:
    ticket = uploads.add(
        make_upload(id=uuid.uuid4(), bucket=BUCKET, key="alice/t/a.fa", owner="alice", state=State.AWAITING_UPLOAD,
                    etag=None, generation=0)
    )  # fmt: skip
    objects.on_read = lambda number: pytest.fail("read an object of a revoked owner")
    deps = parser(uploads, objects)
    handle_parse([objects.put(BUCKET, "alice/t/a.fa", FASTA, "e1")], deps)
    upload = uploads.uploads[ticket.id]
    assert upload.state is State.REVOKED and upload.error_code == "owner_revoked" and upload.etag == "e1"
    assert deps.publisher.messages == []  # type: ignore[attr-defined]


def test_an_object_written_under_a_revoked_owners_prefix_is_recorded_not_parsed(
    uploads: FakeUploads, objects: FakeObjects
) -> None:
    deps = parser(uploads, objects)
    handle_parse([objects.put(BUCKET, "alice/direct.fa", FASTA, "e1")], deps)
    handle_parse([objects.put(BUCKET, "bob/direct.fa", FASTA, "e2")], deps)
    states = {u.key: u.state for u in uploads.uploads.values()}
    assert states == {"alice/direct.fa": State.REVOKED, "bob/direct.fa": State.PARSING}
    assert {m.upload_id for m in deps.publisher.messages} == {  # type: ignore[attr-defined]
        u.id for u in uploads.uploads.values() if u.owner == "bob"
    }


def test_an_overwrite_of_a_revoked_owners_finished_upload_drops_nothing_it_did_not_confirm(
    uploads: FakeUploads, objects: FakeObjects
) -> None:
    done = uploads.add(make_upload(bucket=BUCKET, key="alice/d.fa", owner="alice", state=State.DONE, etag="e0"))
    handle_parse([_event("forged", "alice/d.fa")], parser(uploads, objects))  # the store does not show it
    assert uploads.uploads[done.id].state is State.DONE
    handle_parse([objects.put(BUCKET, "alice/d.fa", FASTA, "e1")], parser(uploads, objects))
    assert uploads.uploads[done.id].state is State.REVOKED and uploads.uploads[done.id].generation == 2


def test_a_generation_claimed_before_the_revocation_is_still_parsed(uploads: FakeUploads, objects: FakeObjects) -> None:
    event = objects.put(BUCKET, "alice/q.fa", FASTA, "e1")
    uploads.add(make_upload(bucket=BUCKET, key="alice/q.fa", owner="alice", state=State.QUEUED, etag="e1"))
    deps = parser(uploads, objects)
    handle_parse([event], deps)
    assert isinstance(deps.publisher.messages[-1], ParseCompleted)  # type: ignore[attr-defined]


def test_the_watchdog_ends_a_revoked_owners_tickets_and_aborts_their_multipart_uploads(uploads: FakeUploads) -> None:
    waiting = dict(state=State.AWAITING_UPLOAD, etag=None, generation=0, ticket_expires_at=datetime.now(UTC))
    put = uploads.add(make_upload(id=uuid.uuid4(), key="alice/1/a.fa", owner="alice", **waiting))
    parts = uploads.add(make_upload(id=uuid.uuid4(), key="alice/2/b.fa", owner="alice", multipart_upload_id="m1",
                                    **waiting))  # fmt: skip
    others = uploads.add(make_upload(id=uuid.uuid4(), key="bob/3/c.fa", owner="bob", **waiting))
    finished = uploads.add(make_upload(id=uuid.uuid4(), key="alice/4/d.fa", owner="alice", state=State.DONE))
    objects = FakeObjects()
    objects.multipart |= {("b", "alice/2/b.fa", "m1")}
    sweep(WatchdogDeps(SETTINGS, uploads, FakePublisher(), objects))
    assert {uploads.uploads[u.id].state for u in (put, parts)} == {State.REVOKED}
    assert uploads.uploads[parts.id].error_code == "owner_revoked" and objects.multipart == set()
    assert uploads.uploads[others.id].state is State.AWAITING_UPLOAD
    assert uploads.uploads[finished.id].state is State.DONE  # what was done stays done


# --- the owner's inflation quota -------------------------------------------------------------------

CONTENT = b">a\n" + b"ACGT" * 25_000 + b"\n"  # 100 KB of FASTA
GZIPPED = gzip.compress(CONTENT)


def _gzip_upload(uploads: FakeUploads, objects: FakeObjects, owner: str, key: str) -> ObjectCreated:
    uploads.owners.add(owner)
    return objects.put(BUCKET, f"{owner}/{key}", GZIPPED, f"etag-{key}")


def test_a_gzip_beyond_the_owners_inflation_quota_fails_with_its_code(
    uploads: FakeUploads, objects: FakeObjects
) -> None:
    deps = parser(uploads, objects, SETTINGS.model_copy(update={"quota_inflated_bytes": len(CONTENT) - 1}))
    handle_parse([_gzip_upload(uploads, objects, "carol", "a.fa.gz")], deps)
    (upload,) = uploads.uploads.values()
    assert upload.state is State.FAILED and upload.error_code == "inflation_quota_exceeded"
    assert upload.inflated_bytes <= len(CONTENT) - 1


def test_the_quota_counts_the_owners_uploads_together(uploads: FakeUploads, objects: FakeObjects) -> None:
    settings = SETTINGS.model_copy(update={"quota_inflated_bytes": 2 * len(CONTENT) + 10})
    for name in ("first", "second", "third"):
        handle_parse([_gzip_upload(uploads, objects, "carol", f"{name}.fa.gz")], parser(uploads, objects, settings))
    handle_parse([_gzip_upload(uploads, objects, "dave", "own.fa.gz")], parser(uploads, objects, settings))
    found = {u.key: u for u in uploads.uploads.values()}
    assert [found[f"carol/{n}.fa.gz"].inflated_bytes for n in ("first", "second")] == [len(CONTENT)] * 2
    assert found["carol/third.fa.gz"].error_code == "inflation_quota_exceeded"  # room for two, not three
    assert found["dave/own.fa.gz"].state is State.PARSING  # another owner's quota


def test_a_parse_draws_ahead_and_gives_back_what_it_did_not_inflate(uploads: FakeUploads, objects: FakeObjects) -> None:
    drawn: list[int] = []
    draw = uploads.draw_inflation

    def counted(upload_id: uuid.UUID, generation: int, upto: int, quota: int) -> bool:
        drawn.append(upto)
        return draw(upload_id, generation, upto, quota)

    uploads.draw_inflation = counted  # type: ignore[method-assign]
    handle_parse([_gzip_upload(uploads, objects, "carol", "a.fa.gz")], parser(uploads, objects))
    assert drawn == [INFLATION_DRAW_STEP + len(CONTENT)]  # one step ahead, once
    assert uploads.find(BUCKET, "carol/a.fa.gz").inflated_bytes == len(CONTENT)  # type: ignore[union-attr]


def test_admin_owners_and_plain_files_draw_no_inflation(uploads: FakeUploads, objects: FakeObjects) -> None:
    uploads.admins.add("root")
    settings = SETTINGS.model_copy(update={"quota_inflated_bytes": 10})
    handle_parse([_gzip_upload(uploads, objects, "root", "big.fa.gz")], parser(uploads, objects, settings))
    handle_parse([objects.put(BUCKET, "carol/plain.fa", CONTENT, "p1")], parser(uploads, objects, settings))
    assert {u.state for u in uploads.uploads.values()} == {State.PARSING}
    assert uploads.find(BUCKET, "carol/plain.fa").inflated_bytes == 0  # type: ignore[union-attr]


def test_a_direct_write_is_refused_past_the_in_flight_or_stored_quota() -> None:
    quotas = Quotas(stored_bytes=100, uploads_in_flight=2, open_multipart_uploads=1, registrations_per_minute=1)
    fine = OwnerUsage(
        stored_bytes=100, in_flight=2, open_multipart_uploads=5, registrations=9, oldest_registration_age=None
    )
    assert direct_write_refusal(fine, quotas) is None  # its own upload counted: at the quota, not past it
    busy = dataclasses.replace(fine, in_flight=3)
    full = dataclasses.replace(fine, stored_bytes=101)
    assert direct_write_refusal(busy, quotas).code is QuotaCode.IN_FLIGHT  # type: ignore[union-attr]
    assert direct_write_refusal(full, quotas).code is QuotaCode.STORAGE  # type: ignore[union-attr]

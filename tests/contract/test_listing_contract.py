"""The upload store's listing, labels and idempotent registration: ``FakeUploads`` and
``PostgresUploads`` alike (``side``, tests/contract/conftest.py), and the listing's scale on the
adapter: 10,000 uploads of one owner paged through, each page an index range scan.

The suite's database is shared by its tests: each test's uploads belong to owners of its own (or
carry a label of its own where it lists every owner's), so that no test sees another's.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from psycopg import sql

from shared.domain.listing import Cursor, IdempotencyKeyReused, InvalidLabels, UploadFilter
from shared.domain.uploads import Quotas, State, Upload
from shared.postgres.connection import connect, request_pool
from shared.postgres.uploads import PostgresUploads, listing_query
from shared.runtime.settings import Settings
from tests.contract.conftest import Side
from tests.contract.test_uploads_contract import new_owner, registration

ALL_STATES = frozenset(State)


def pages(side: Side, query: UploadFilter, limit: int) -> Iterator[list[Upload]]:
    after = None
    while True:
        page = side.uploads.list_uploads(query, after, limit)
        if page:
            yield page
        if len(page) < limit:
            return
        after = Cursor(page[-1].created_at, page[-1].id)


def registered(side: Side, owner: str, n: int, **changes: object) -> list[Upload]:
    return [side.uploads.register(registration(owner, **changes)) for _ in range(n)]


def test_uploads_list_newest_first_and_pages_neither_repeat_nor_skip_while_new_ones_arrive(side: Side) -> None:
    owner = new_owner()
    made = registered(side, owner, 7)
    # three of them made in the same instant: the id orders them
    same = datetime.now(UTC) - timedelta(minutes=1)
    for upload in made[2:5]:
        side.set(upload.id, created_at=same)
    expected = sorted((side.uploads.get(u.id) for u in made), key=lambda u: (u.created_at, u.id), reverse=True)  # type: ignore[union-attr]
    seen: list[uuid.UUID] = []
    arrived: list[Upload] = []
    for page in pages(side, UploadFilter(owner=owner), 2):
        seen += [u.id for u in page]
        arrived += registered(side, owner, 1)  # newer than every cursor: never on a later page
    assert seen == [u.id for u in expected]  # type: ignore[union-attr]
    everything = side.uploads.list_uploads(UploadFilter(owner=owner), None, 100)
    assert [u.id for u in everything] == [u.id for u in arrived[::-1]] + seen


def test_the_listing_filters_by_state_name_labels_and_time(side: Side) -> None:
    owner = new_owner()
    plain, failed, labelled, wild = registered(side, owner, 4)
    side.set(failed.id, state=State.FAILED)
    side.set(labelled.id, labels={"sample": "s1", "run": "7"}, filename="NA_12.fa")
    side.set(wild.id, filename="N%_x.fa", created_at=datetime.now(UTC) - timedelta(days=1))

    def ids(**criteria: object) -> set[uuid.UUID]:
        return {u.id for u in side.uploads.list_uploads(UploadFilter(owner=owner, **criteria), None, 100)}  # type: ignore[arg-type]

    everyone = {plain.id, failed.id, labelled.id, wild.id}
    assert ids() == everyone
    assert ids(states=frozenset({State.FAILED})) == {failed.id}
    assert ids(states=frozenset({State.FAILED, State.AWAITING_UPLOAD})) == everyone
    assert ids(name_prefix="NA_") == {labelled.id}
    assert ids(name_prefix="N%") == {wild.id}  # a prefix, not a pattern
    assert ids(name_prefix="N") == {labelled.id, wild.id} and ids(name_prefix="x.") == {plain.id, failed.id}
    assert ids(labels={"sample": "s1"}) == {labelled.id} == ids(labels={"sample": "s1", "run": "7"})
    assert ids(labels={"sample": "s1", "run": "8"}) == set() and ids(labels={"run": "s1"}) == set()
    a_while_ago = datetime.now(UTC) - timedelta(hours=1)
    assert ids(created_before=a_while_ago) == {wild.id}
    assert ids(created_after=a_while_ago) == everyone - {wild.id}


def test_another_owner_s_uploads_never_appear_and_no_owner_is_everyone_s(side: Side) -> None:
    alice, bob = new_owner(), new_owner()
    tag = {"test": uuid.uuid4().hex}
    alices = registered(side, alice, 3, labels=tag)
    bobs = registered(side, bob, 2, labels=tag)
    assert {u.id for u in side.uploads.list_uploads(UploadFilter(owner=alice), None, 100)} == {u.id for u in alices}
    assert {u.id for u in side.uploads.list_uploads(UploadFilter(owner=bob), None, 100)} == {u.id for u in bobs}
    both = side.uploads.list_uploads(UploadFilter(owner=None, labels=tag), None, 100)
    assert [u.id for u in both] == [
        u.id for u in sorted(alices + bobs, key=lambda u: (u.created_at, u.id), reverse=True)
    ]


def test_labels_are_stored_and_merge_patched(side: Side) -> None:
    owner = new_owner()
    upload = side.uploads.register(registration(owner, labels={"sample": "s1", "run": "1"}))
    assert upload.labels == {"sample": "s1", "run": "1"}
    assert side.uploads.get(upload.id).labels == {"sample": "s1", "run": "1"}  # type: ignore[union-attr]
    changed = side.uploads.merge_labels(upload.id, {"run": None, "project": "p/1"})
    assert changed is not None and changed.labels == {"sample": "s1", "project": "p/1"}
    assert changed.updated_at == upload.updated_at  # the pipeline's clock is not a label's
    with pytest.raises(InvalidLabels):
        side.uploads.merge_labels(upload.id, {f"k{i}": "v" for i in range(40)})
    assert side.uploads.get(upload.id).labels == {"sample": "s1", "project": "p/1"}  # type: ignore[union-attr]
    cleared = side.uploads.merge_labels(upload.id, None)
    assert cleared is not None and cleared.labels == {}
    assert side.uploads.merge_labels(uuid.uuid4(), {"a": "b"}) is None


def test_a_deleted_upload_keeps_no_labels_gets_none_and_is_listed_only_by_name(side: Side) -> None:
    owner = new_owner()
    upload = side.uploads.register(registration(owner, labels={"sample": "s1"}))
    kept = side.uploads.register(registration(owner, labels={"sample": "s1"}))
    deleted = side.uploads.delete(upload.id)
    assert deleted is not None and deleted.state is State.DELETED and deleted.labels == {}
    unchanged = side.uploads.merge_labels(upload.id, {"sample": "s2"})
    assert unchanged is not None and unchanged.state is State.DELETED and unchanged.labels == {}
    assert side.uploads.get(upload.id).labels == {}  # type: ignore[union-attr]
    listed = side.uploads.list_uploads(UploadFilter(owner=owner), None, 100)
    assert [u.id for u in listed] == [kept.id]  # the tombstone is left out
    asked = side.uploads.list_uploads(UploadFilter(owner=owner, states=frozenset({State.DELETED})), None, 100)
    assert [u.id for u in asked] == [upload.id]


def test_an_idempotency_key_registers_once_per_owner_and_refuses_another_request(side: Side) -> None:
    owner, other = new_owner(), new_owner()
    first = side.uploads.register(registration(owner, idempotency_key="k", request_hash="h1"))
    again = side.uploads.register(registration(owner, idempotency_key="k", request_hash="h1"))
    assert again.id == first.id
    assert side.uploads.registered_with(owner, "k", "h1") == side.uploads.get(first.id)
    assert side.uploads.registered_with(owner, "absent", "h1") is None
    with pytest.raises(IdempotencyKeyReused):
        side.uploads.register(registration(owner, idempotency_key="k", request_hash="h2"))
    with pytest.raises(IdempotencyKeyReused):
        side.uploads.registered_with(owner, "k", "h2")
    theirs = side.uploads.register(registration(other, idempotency_key="k", request_hash="h2"))
    assert theirs.id != first.id
    # a replay is not refused by a quota its first registration now fills, nor counted again
    full = Quotas(stored_bytes=10**9, uploads_in_flight=1, open_multipart_uploads=1, registrations_per_minute=100)
    assert side.uploads.register(registration(owner, idempotency_key="k", request_hash="h1"), full).id == first.id
    usage = side.uploads.owner_usage(owner)
    assert usage is not None and usage.in_flight == 1 and usage.registrations == 1


# --- on the adapter alone: races and scale -------------------------------------------------------


def test_two_concurrent_registrations_with_one_key_make_one_upload(contract_settings: Settings) -> None:
    pool = request_pool(contract_settings)
    pool.open(wait=True, timeout=60)
    try:
        uploads = PostgresUploads(pool)
        for _ in range(5):
            owner = new_owner()
            barrier = threading.Barrier(4)
            got: list[uuid.UUID] = []

            def register(owner: str = owner, barrier: threading.Barrier = barrier, got: list[uuid.UUID] = got) -> None:
                wanted = registration(owner, idempotency_key="same", request_hash="h")
                barrier.wait()
                got.append(uploads.register(wanted).id)

            threads = [threading.Thread(target=register) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert len(got) == 4 and len(set(got)) == 1
            assert [u.id for u in uploads.list_uploads(UploadFilter(owner=owner), None, 10)] == got[:1]
    finally:
        pool.close()


SCALE = 10_000
PAGE = 1000


@pytest.fixture(scope="module")
def crowded_owner(contract_settings: Settings) -> tuple[str, str]:
    """An owner with 10,000 uploads (three at a time sharing an instant) among 100 neighbours with
    1,000 each, made over the same minutes; inserted in a statement each, then analysed as
    autovacuum would. Returns the owner and the neighbours' common name prefix."""
    owner, neighbours = new_owner(), f"n-{uuid.uuid4().hex[:12]}-"
    with connect(contract_settings, autocommit=True, owner=True) as conn:
        columns = "id, bucket, key, filename, registered, state, owner, created_at, updated_at"
        conn.execute(
            f"INSERT INTO uploads ({columns}) "
            "SELECT gen_random_uuid(), 'contract-uploads', %(owner)s || '/' || i || '/r.fa', 'r' || i || '.fa', "
            "true, 'done', %(owner)s, now() - (i / 3) * interval '1 millisecond', now() "
            "FROM generate_series(1, %(count)s) AS i",
            {"owner": owner, "count": SCALE},
        )
        conn.execute(
            f"INSERT INTO uploads ({columns}) "
            "SELECT gen_random_uuid(), 'contract-uploads', %(prefix)s || (i %% 100) || '/' || i || '/r.fa', 'r.fa', "
            "true, 'done', %(prefix)s || (i %% 100), now() - (i / 10) * interval '1 millisecond', now() "
            "FROM generate_series(1, 100000) AS i",
            {"prefix": neighbours},
        )
        conn.execute("ANALYZE uploads")
    return owner, neighbours


def _plan(contract_settings: Settings, query: UploadFilter, after: Cursor | None, limit: int = PAGE + 1) -> str:
    statement, params = listing_query(query, after, limit)
    with connect(contract_settings, autocommit=True) as conn:
        rows = conn.execute(sql.SQL("EXPLAIN ") + statement, params).fetchall()
    return "\n".join(next(iter(row.values())) for row in rows)


def test_10000_uploads_page_through_once_each_in_constant_time_per_page(
    contract_settings: Settings, crowded_owner: tuple[str, str]
) -> None:
    owner, neighbours = crowded_owner
    pool = request_pool(contract_settings)
    pool.open(wait=True, timeout=60)
    try:
        uploads = PostgresUploads(pool)
        query = UploadFilter(owner=owner)
        uploads.list_uploads(query, None, PAGE)  # warm the pool's session and the cache
        seen: list[Upload] = []
        times: list[float] = []
        after = None
        while True:
            started = time.perf_counter()
            page = uploads.list_uploads(query, after, PAGE)
            times.append(time.perf_counter() - started)
            seen += page
            if len(page) < PAGE:
                break
            after = Cursor(page[-1].created_at, page[-1].id)
    finally:
        pool.close()
    # (a) every upload once, in order, none of the neighbours'
    assert len(seen) == SCALE and len({u.id for u in seen}) == SCALE
    assert {u.owner for u in seen} == {owner} and not any((u.owner or "").startswith(neighbours) for u in seen)
    keys = [(u.created_at, u.id) for u in seen]
    assert keys == sorted(keys, reverse=True)
    # (b) each page is an index range scan that starts at the cursor: no sort, nothing read before it
    last = Cursor(seen[-PAGE - 1].created_at, seen[-PAGE - 1].id)
    # Where the owner holds a good share of the rows, the planner may as well walk everyone's index
    # and skip the others' rows; either way the rows come in order, from the cursor on.
    for plan in (_plan(contract_settings, query, None), _plan(contract_settings, query, last)):
        assert "Index Scan using uploads_" in plan and "Sort" not in plan, plan
    condition = _plan(contract_settings, query, last).split("Index Cond:", 1)[1].split("\n", 1)[0]
    assert "created_at" in condition and "id" in condition, condition  # a bound, not a filter
    # where the owner is one among many, its own index, bounded by the owner and the cursor
    small = _plan(contract_settings, UploadFilter(owner=f"{neighbours}7"), last, limit=11)
    assert "Index Scan using uploads_by_owner_listing" in small and "Sort" not in small, small
    condition = small.split("Index Cond:", 1)[1].split("\n", 1)[0]
    assert "owner" in condition and "created_at" in condition, condition
    everyone = _plan(contract_settings, UploadFilter(owner=None), last)
    assert "uploads_listing" in everyone and "Sort" not in everyone, everyone
    # and the last page costs about what the first did (loose: a shared 2-core machine)
    first, final = times[0], times[-2]  # the last full page
    assert final <= 5 * first + 0.05, times
    print(f"\nlisting 10,000 uploads, 1,000 a page: {', '.join(f'{t * 1000:.0f}' for t in times)} ms")
    print(_plan(contract_settings, query, last), small, sep="\n")

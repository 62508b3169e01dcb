"""The Postgres adapter against the run's real database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from refget.utils import canonical_str, sha512t24u_digest

from shared.domain.messages import ParseCompleted, SequenceBatch
from shared.domain.record_schema import RECORD, Part
from shared.domain.seqcol import SortedArrays, pair_digest
from shared.domain.uploads import (
    Claim,
    ClaimAction,
    Failure,
    ObjectCreated,
    ParseErrorCode,
    PersistOutcome,
    Registration,
    Shard,
    State,
    Upload,
)
from shared.postgres import binary_copy
from shared.postgres.connection import Connection, Database, connect, request_pool
from shared.postgres.migrate import (
    BULK_LOAD_SETTINGS,
    autovacuum_is_off,
    migrate,
    runtime_role,
    settings_below_bulk_load,
)
from shared.postgres.refget import sorted_array_digest, sorted_arrays
from shared.postgres.sequences import iter_result_pieces
from shared.postgres.uploads import PostgresUploads
from shared.runtime.settings import Settings
from tests.builders import record, sequence_batch
from tests.stack import TEST_DATABASE_ICU_LOCALE

pytestmark = pytest.mark.integration


@pytest.fixture
def conn(settings: Settings) -> Iterator[Connection]:
    with connect(settings, autocommit=True, owner=True) as owner:
        migrate(owner, runtime_role(settings))
    with connect(settings, autocommit=True) as connection:
        yield connection


@pytest.fixture
def store(settings: Settings, conn: Connection) -> Iterator[PostgresUploads]:
    """The adapter on sessions of its own (``conn``, migrated first, stays for the tests' own looks)."""
    uploads = PostgresUploads(Database(settings))
    try:
        yield uploads
    finally:
        uploads.reset()


def event(key: str, etag: str = "e1", when: datetime | None = None) -> ObjectCreated:
    return ObjectCreated(
        bucket="itest-bucket", key=key, size=10, etag=etag, sequencer="01", event_time=when or datetime.now(UTC)
    )


def confirmed(store: PostgresUploads, created: ObjectCreated) -> Claim:
    """A claim of an event whose object the store showed (the parser's HEAD)."""
    return store.claim(created, confirmed=True)


def batch(upload: Upload, batch_no: int, ordinals: list[int]) -> SequenceBatch:
    """Even ordinals are short records (residues inline), odd ones long records of two parts."""
    records = [
        record(
            o, line_number=o * 2 + 1, gene_name=f"g{o} d", seq_id=f"g{o}", description="d", length=4,
            part_count=2 if o % 2 else 0, residues=None if o % 2 else "ACGT",
            attributes={"n": str(o)} if o == 0 else None,
        )
        for o in ordinals
    ]  # fmt: skip
    parts = [Part(ordinal=o, part_no=n, residues=r) for o in ordinals if o % 2 for n, r in enumerate(("AC", "GT"))]
    return sequence_batch(upload.id, upload.generation, batch_no, records, parts, source_offset=5 * (batch_no + 1))


def test_up_tells_whether_the_server_runs_without_autovacuum(conn: Connection, settings: Settings) -> None:
    row = conn.execute("SELECT setting FROM pg_settings WHERE name = 'autovacuum'").fetchone()
    assert row is not None and autovacuum_is_off(settings) is (row["setting"] == "off")


def test_up_tells_which_server_settings_are_below_composes(conn: Connection, settings: Settings) -> None:
    """Compared in bytes, whatever unit the server shows them in (8kB pages, MB)."""
    below = settings_below_bulk_load(settings)
    for name, wanted in BULK_LOAD_SETTINGS.items():
        row = conn.execute(
            "SELECT pg_size_bytes(current_setting(%s)) < pg_size_bytes(%s) AS low, current_setting(%s) AS shown",
            (name, wanted, name),
        ).fetchone()
        assert row is not None
        assert below.get(name) == (row["shown"] if row["low"] else None), name


def test_bench_raises_the_reloadable_settings_for_its_run_and_puts_them_back(settings: Settings) -> None:
    """``bench.pipeline --bulk-load-settings``: ``max_wal_size`` (a reload) is at compose's value
    inside, ``shared_buffers`` (a restart) is left alone, and the server ends as it began."""
    from bench.pipeline import bulk_load_server, server_settings

    before, below = server_settings(settings), settings_below_bulk_load(settings)
    with bulk_load_server(settings, enabled=True):
        inside = settings_below_bulk_load(settings)
        assert "max_wal_size" not in inside
        assert inside.get("shared_buffers") == below.get("shared_buffers")
    assert server_settings(settings) == before
    assert settings_below_bulk_load(settings) == below


def test_an_http_request_s_statement_is_bounded_in_time(settings: Settings) -> None:
    bounded = settings.model_copy(update={"request_statement_timeout_seconds": 0.2})
    pool = request_pool(bounded, max_size=1)
    pool.open(wait=True)
    try:
        with pool.connection() as conn:
            assert conn.execute("SHOW statement_timeout").fetchone() == {"statement_timeout": "200ms"}
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(5)")
        with pool.connection() as conn:  # the session goes on serving
            assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
    finally:
        pool.close()


def test_migrations_are_idempotent(conn: Connection, settings: Settings) -> None:
    with connect(settings, autocommit=True, owner=True) as owner:
        assert migrate(owner, runtime_role(settings)) == []
    versions = [r["version"] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [
        "0001_initial",
        "0002_stage_times",
        "0003_fastq_quality",
        "0004_attributes_and_counts",
        "0005_stalls",
        "0006_error_ids",
        "0007_api_keys",
        "0008_ticket_expiry",
        "0009_refget",
        "0010_multipart",
        "0011_source_digests",
        "0012_assembly_follows_batches",
        "0013_hash_content_indexes",
        "0014_shards",
        "0015_unparsed_shards",
        "0016_pair_digests",
        "0017_batch_records_from",
        "0018_quotas_and_revocation",
        "0019_keys_per_owner",
        "0020_labels_listing_idempotency",
        "0021_deletion",
        "0022_retry_and_validate",
        "0023_result_sha256",
    ]


def test_the_runtime_role_reads_and_writes_rows_and_nothing_else(conn: Connection, settings: Settings) -> None:
    """The services' role: rows of the tables, yes; the schema, the ledger, databases and roles, no."""
    role = runtime_role(settings)
    assert role is not None, "the run must connect its services as a runtime role apart from the owner"
    assert conn.info.user == role.name
    conn.execute("SELECT count(*) FROM uploads")
    for statement in (
        "CREATE TABLE intruder (x int)",
        "ALTER TABLE uploads ADD COLUMN intruder int",
        "DROP TABLE sequence_parts",
        "TRUNCATE uploads",
        "DELETE FROM schema_migrations",
        "CREATE DATABASE intruder",
        "CREATE ROLE intruder",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_claims_tell_new_duplicate_stale_and_overwritten(conn: Connection, store: PostgresUploads) -> None:
    key = f"claims/{uuid.uuid4()}.fa"
    now = datetime.now(UTC)
    first = confirmed(store, event(key, "e1", now))
    assert first.action is ClaimAction.PARSE
    assert first.upload.registered is False and first.upload.generation == 1
    # a redelivery while still queued/parsing must be parsed (the first parser may have died)
    assert confirmed(store, event(key, "e1", now)).action is ClaimAction.PARSE
    conn.execute("UPDATE uploads SET state = 'done' WHERE id = %s", (first.upload.id,))
    assert confirmed(store, event(key, "e1", now)).action is ClaimAction.DUPLICATE
    assert confirmed(store, event(key, "e0", now - timedelta(hours=1))).action is ClaimAction.STALE
    newer = confirmed(store, event(key, "e2", now + timedelta(seconds=1)))
    assert newer.action is ClaimAction.PARSE
    assert (newer.upload.id, newer.upload.generation, newer.upload.state) == (first.upload.id, 2, State.QUEUED)


def test_batches_are_stored_exactly_once_and_complete_the_upload(
    settings: Settings, conn: Connection, store: PostgresUploads
) -> None:
    upload = confirmed(store, event(f"batches/{uuid.uuid4()}.fa")).upload
    assert store.start_parsing(upload.id, upload.generation)
    first = store.store_batch(batch(upload, 0, [0, 1]))
    assert first == PersistOutcome(True, False, first_batch=True)  # the assembler may start following
    assert store.store_batch(batch(upload, 0, [0, 1])) == PersistOutcome(False, False)  # replay
    following, committed = store.committed_batches(upload.id, 1, 0, 0)
    assert following is not None and following.state is State.PARSING and committed == [(0, 0, 0, 2)]
    done = ParseCompleted(
        upload_id=upload.id, generation=1, batch_count=2, record_count=3, source_bytes=10, format="fasta"
    )
    assert store.record_parse_completed(done) == PersistOutcome(True, False)
    assert store.store_batch(batch(upload, 1, [2])) == PersistOutcome(True, True)
    assert store.store_batch(batch(upload, 1, [2])) == PersistOutcome(False, True)  # replay re-announces
    current = store.get(upload.id)
    assert current is not None
    assert (current.state, current.records_done, current.batches_done, current.bytes_done) == (
        State.ASSEMBLING, 3, 2, 10
    )  # fmt: skip
    with connect(settings, autocommit=True) as parts_conn:
        rows = list(iter_result_pieces(conn, parts_conn, upload.id))
    assert rows[0].record.attributes == {"n": "0"} and rows[1].record.attributes is None
    assert [(r.record.ordinal, r.part_no, r.residues) for r in rows] == [
        (0, 0, b"ACGT"), (1, 0, b"AC"), (1, 1, b"GT"), (2, 0, b"ACGT")
    ]  # fmt: skip
    assert rows[0].record == next(batch(upload, 0, [0]).records.rows())._replace(residues=None)
    # The assembler's view: batches in order with the records each completes, read window by window.
    assert store.committed_batches(upload.id, 1, 0, 1)[1] == [(0, 1, 2, 3)]
    with connect(settings, autocommit=True) as parts_conn:
        window = list(iter_result_pieces(conn, parts_conn, upload.id, 1, 2))
        # One batch's records, read by one query instead of streamed: the same pieces, the same types.
        assert list(iter_result_pieces(conn, parts_conn, upload.id, 1, 2, one_batch=True)) == window
        assert list(iter_result_pieces(conn, parts_conn, upload.id, 0, 3, one_batch=True)) == rows
    assert [(r.record.ordinal, r.part_no, r.residues) for r in window] == [(1, 0, b"AC"), (1, 1, b"GT")]


def test_a_batch_copied_by_psycopg_reads_back_as_one_formatted_in_c(
    settings: Settings, conn: Connection, monkeypatch: pytest.MonkeyPatch, store: PostgresUploads
) -> None:
    """The persister's two ways of writing a batch's rows (``binary_copy``'s C call, psycopg's
    ``write_row`` where it is not built) store the same records: names, attributes, qualities."""
    records = [
        record(0, gene_name="chr1 ünïcode 🧬", seq_id="chr1", description="ünïcode 🧬", residues="ACGT",
               attributes={"sample": "é", "n": "1"}, quality="II#I", line_number=2**40),
        record(1, length=4, part_count=2, residues=None),
        record(2, gene_name="", seq_id="", description="", length=0, residues=""),
    ]  # fmt: skip
    parts = [Part(1, 0, "AC"), Part(1, 1, "GT")]
    read: list[list[tuple[object, ...]]] = []
    for accelerator in (binary_copy.accelerator, None):
        monkeypatch.setattr(binary_copy, "accelerator", accelerator)
        upload = confirmed(store, event(f"copy/{uuid.uuid4()}.fq")).upload
        stored = store.store_batch(sequence_batch(upload.id, upload.generation, 0, records, parts))
        assert stored.stored
        with connect(settings, autocommit=True) as parts_conn:
            read.append([tuple(p) for p in iter_result_pieces(conn, parts_conn, upload.id)])
    assert binary_copy.accelerator is None and read[0] == read[1]
    assert [(p[0].ordinal, p[1], p[2]) for p in read[0]] == [(0, 0, b"ACGT"), (1, 0, b"AC"), (1, 1, b"GT"), (2, 0, b"")]
    assert read[0][0][0] == records[0]._replace(residues=None)


def test_a_parse_in_shards_ends_when_every_shard_has(conn: Connection, store: PostgresUploads) -> None:
    """The plan is saved once; batches are numbered within shards; the last shard's end recorded
    sets the totals and completes the generation; a new generation drops the plan."""
    upload = confirmed(store, event(f"shards/{uuid.uuid4()}.fa")).upload
    plan = [Shard(0, 0, 10, 0, 1, 2), Shard(1, 10, 20, 2, 5, 1)]
    assert store.save_shard_plan(upload.id, 1, plan, "m", "s") is None  # not parsing yet
    assert store.start_parsing(upload.id, 1)
    assert store.save_shard_plan(upload.id, 1, plan, "m", "s") == plan
    other = [Shard(0, 0, 20, 0, 1, 3)]
    assert store.save_shard_plan(upload.id, 1, other, "x", "y") == plan  # the first plan stands
    found = store.shard_to_parse(upload.id, 1, 1)
    assert found is not None and found.shard == plan[1] and found.upload.source_md5 == "m" and found.shard_count == 2
    assert store.shard_to_parse(upload.id, 1, 2) is None and store.shard_to_parse(upload.id, 2, 0) is None

    def shard_batch(shard: int, batch_no: int, ordinals: list[int]) -> SequenceBatch:
        return batch(upload, batch_no, ordinals).model_copy(update={"shard": shard, "source_bytes": 4})

    def shard_done(shard: int, batches: int) -> ParseCompleted:
        return ParseCompleted(
            upload_id=upload.id, generation=1, shard=shard, shard_count=2, batch_count=batches,
            record_count=plan[shard].records, source_bytes=10, format="fasta",
        )  # fmt: skip

    assert store.store_batch(shard_batch(1, 0, [2])) == PersistOutcome(True, False)  # not the first batch
    assert store.get(upload.id).bytes_done == 4  # type: ignore[union-attr]  # its own bytes, added
    assert store.record_parse_completed(shard_done(1, 1)) == PersistOutcome(True, False)
    with pytest.raises(RuntimeError, match="the plan has 2 shards"):
        store.record_parse_completed(shard_done(1, 1).model_copy(update={"shard_count": 3}))
    assert store.store_batch(shard_batch(0, 0, [0])) == PersistOutcome(True, False, first_batch=True)
    assert store.store_batch(shard_batch(0, 0, [0])) == PersistOutcome(False, False)  # replay
    assert store.committed_batches(upload.id, 1, 0, 1)[1] == [(1, 0, 2, 3)]
    assert store.record_parse_completed(shard_done(0, 2)) == PersistOutcome(True, False)
    current = store.get(upload.id)
    assert current is not None and (current.state, current.batches_total, current.records_total) == (
        State.PERSISTING, 3, 3
    )  # fmt: skip
    assert store.store_batch(shard_batch(0, 1, [1])) == PersistOutcome(True, True)
    assert store.get(upload.id).bytes_done == 10  # type: ignore[union-attr]  # at most the object
    assert [b[:2] for b in store.committed_batches(upload.id, 1, 0, 0)[1]] == [(0, 0), (0, 1), (1, 0)]
    newer = confirmed(store, event(upload.key, "e2", datetime.now(UTC) + timedelta(seconds=5))).upload
    assert newer.generation == 2 and store.shard_plan(upload.id, 2) == [] and store.shard_plan(upload.id, 1) == []


def test_batches_of_a_replaced_generation_are_ignored(conn: Connection, store: PostgresUploads) -> None:
    key = f"generations/{uuid.uuid4()}.fa"
    old = confirmed(store, event(key, "e1")).upload
    new = confirmed(store, event(key, "e2", datetime.now(UTC) + timedelta(seconds=5))).upload
    assert store.store_batch(batch(old, 0, [0])).stored is False
    assert store.store_batch(batch(new, 0, [0])).stored is True


def test_failure_keeps_the_reason_and_drops_the_rows(
    settings: Settings, conn: Connection, store: PostgresUploads
) -> None:
    upload = confirmed(store, event(f"fail/{uuid.uuid4()}.fa")).upload
    store.store_batch(batch(upload, 0, [0, 1]))
    assert store.fail(upload.id, upload.generation, Failure(ParseErrorCode.INVALID_CHARACTER, "bad 'X'", 5, 3))
    failed = store.get(upload.id)
    assert failed is not None
    assert (failed.state, failed.error_code, failed.error_line, failed.error_column) == (
        State.FAILED, "invalid_character", 5, 3
    )  # fmt: skip
    with connect(settings, autocommit=True) as parts_conn:
        assert list(iter_result_pieces(conn, parts_conn, upload.id)) == []
    assert store.store_batch(batch(upload, 1, [2])).stored is False


def test_stalled_uploads_are_picked_up_once_per_period(conn: Connection, store: PostgresUploads) -> None:
    ids = [confirmed(store, event(f"stall/{uuid.uuid4()}.fa")).upload.id for _ in range(3)]
    for upload_id, state in zip(ids[:2], ("persisting", "assembling"), strict=True):
        conn.execute(
            "UPDATE uploads SET state = %s, updated_at = now() - interval '2 hours' WHERE id = %s", (state, upload_id)
        )
    # ids[2] is queued and was touched just now: not stalled.
    hour = timedelta(hours=1)
    assert store.get(ids[0]).stalled(datetime.now(UTC), hour)  # type: ignore[union-attr]
    assert not store.get(ids[2]).stalled(datetime.now(UTC), hour)  # type: ignore[union-attr]

    reissued: list[tuple[uuid.UUID, State]] = []
    picked = store.pick_up_stalled(hour, lambda u: reissued.append((u.id, u.state)))
    mine = {u.id: u for u in picked if u.id in ids}
    assert sorted(r for r in reissued if r[0] in ids) == sorted(
        [(ids[0], State.PERSISTING), (ids[1], State.ASSEMBLING)]
    )
    # A lost batch: the upload goes back to parsing so that the re-parse is accepted.
    assert (mine[ids[0]].state, mine[ids[0]].pickups) == (State.PARSING, 1)
    assert (mine[ids[1]].state, mine[ids[1]].pickups) == (State.ASSEMBLING, 1)
    # Not again within the same period.
    assert [u for u in store.pick_up_stalled(hour, lambda u: None) if u.id in ids] == []

    # A reissue that fails (broker away) records nothing: the next sweep tries again.
    conn.execute("UPDATE uploads SET picked_up_at = now() - interval '2 hours' WHERE id = %s", (ids[1],))

    def broker_away(upload: Upload) -> None:
        raise ConnectionError("broker away")

    with pytest.raises(ConnectionError):
        store.pick_up_stalled(hour, broker_away)
    assert store.get(ids[1]).pickups == 1  # type: ignore[union-attr]


def test_stored_columns_are_the_record_definition(conn: Connection) -> None:
    """The table holds exactly Record's fields with Record's types: a drift fails here, not in a COPY."""
    rows = conn.execute(
        "SELECT column_name, udt_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = 'sequence_records' AND column_name <> 'upload_id' "
        "ORDER BY ordinal_position"
    ).fetchall()
    assert {r["column_name"]: r["udt_name"] for r in rows} == dict(zip(RECORD.fields, RECORD.sql_types, strict=True))


def test_a_new_generation_resets_every_per_generation_field(conn: Connection, store: PostgresUploads) -> None:
    key = f"reset/{uuid.uuid4()}.fa"
    first = confirmed(store, event(key, "e1")).upload
    store.store_batch(batch(first, 0, [0, 1]))
    store.fail(first.id, first.generation, Failure(ParseErrorCode.EMPTY_FILE, "x", 1, 1))
    conn.execute("UPDATE uploads SET pickups = 3, picked_up_at = now(), format = 'fasta' WHERE id = %s", (first.id,))
    second = confirmed(store, event(key, "e2", datetime.now(UTC) + timedelta(seconds=5))).upload
    fresh = Upload(
        id=second.id, bucket=second.bucket, key=key, filename=second.filename, registered=False,
        declared_format=None, alphabet="nucleotide", state=State.QUEUED, generation=2, etag="e2",
        created_at=second.created_at, updated_at=second.updated_at, sequencer=second.sequencer,
        event_time=second.event_time, bytes_total=10,
    )  # fmt: skip
    assert second == fresh


def test_tickets_expire_after_their_grace_and_a_late_object_still_counts(
    conn: Connection, store: PostgresUploads
) -> None:
    key = f"tickets/{uuid.uuid4()}.fa"
    past = datetime.now(UTC) - timedelta(minutes=10)
    over = store.register(Registration(uuid.uuid4(), "itest-bucket", key, "a.fa", None, "nucleotide", 10, "o", past))
    fresh = store.register(
        Registration(uuid.uuid4(), "itest-bucket", key + ".2", "b.fa", None, "nucleotide", 10, "o", datetime.now(UTC))
    )
    expired = store.expire_tickets(timedelta(minutes=5))
    assert fresh.id not in {u.id for u in expired}
    # Expired by this call, or a moment before by the run's own watchdog (same database, 1 s grace).
    assert store.get(over.id).state is State.EXPIRED  # type: ignore[union-attr]
    assert store.get(fresh.id).state is State.AWAITING_UPLOAD  # type: ignore[union-attr]
    assert over.id not in {u.id for u in store.expire_tickets(timedelta(minutes=5))}  # once
    late = confirmed(store, event(key, "e1"))
    assert late.action is ClaimAction.PARSE and late.upload.id == over.id and late.upload.generation == 1


def test_a_claim_never_starts_a_generation_the_store_was_not_asked_about(
    conn: Connection, store: PostgresUploads
) -> None:
    key = f"unconfirmed/{uuid.uuid4()}.fa"
    first = confirmed(store, event(key, "e1"))
    later = event(key, "e2", datetime.now(UTC) + timedelta(seconds=1))
    assert store.claim(later, confirmed=False).action is ClaimAction.UNCONFIRMED  # would start generation 2
    assert store.get(first.upload.id).etag == "e1"  # type: ignore[union-attr]
    assert store.claim(event(key, "e1"), confirmed=False).action is ClaimAction.PARSE  # a redelivery needs no look


def test_queries_survive_a_migration_that_adds_a_column(
    conn: Connection, settings: Settings, store: PostgresUploads
) -> None:
    """Services of the previous version keep running while a new migration adds a column: they
    name the columns they read, so their prepared statements stay valid."""
    upload = confirmed(store, event(f"rolling/{uuid.uuid4()}.fa")).upload
    for _ in range(8):  # past psycopg's prepare threshold: the statement is server-side prepared now
        assert store.get(upload.id) is not None
    with connect(settings, autocommit=True, owner=True) as owner:
        owner.execute("ALTER TABLE uploads ADD COLUMN rolling_upgrade_probe integer")
        try:
            for _ in range(3):
                found = store.get(upload.id)
                assert found is not None and found.id == upload.id
            assert store.fail(upload.id, upload.generation, Failure(ParseErrorCode.EMPTY_FILE, "x"))
        finally:
            owner.execute("ALTER TABLE uploads DROP COLUMN rolling_upgrade_probe")


def test_the_collections_sorted_arrays_are_in_byte_order_whatever_the_databases_collation(
    conn: Connection, store: PostgresUploads
) -> None:
    """Mixed-case names and digests holding ``-`` and ``_``, which a linguistic collation (the
    Postgres image's default; this run's database where the server has ICU) sorts otherwise."""
    provider, locale = (
        conn.execute(
            "SELECT datlocprovider::text AS p, daticulocale AS l FROM pg_database WHERE datname = current_database()"
        )
        .fetchone()
        .values()
    )  # type: ignore[union-attr]
    if provider == "i":
        assert locale == TEST_DATABASE_ICU_LOCALE
    upload = confirmed(store, event(f"seqcol/{uuid.uuid4()}.fa")).upload
    assert store.start_parsing(upload.id, 1)
    names = ["b", "B", "_z", "-y", "a", "A", "Z1", "z_", "a-b", "a_b", "ab"] * 3
    refgets = [f"SQ.{sha512t24u_digest(f'seq{i}'.encode())}" for i in range(len(names))]
    records = [
        record(i, gene_name=name, seq_id=name, length=i, refget=refget, residues="A" * i)
        for i, (name, refget) in enumerate(zip(names, refgets, strict=True))
    ]
    assert store.store_batch(sequence_batch(upload.id, 1, 0, records)).stored
    pairs = [sha512t24u_digest(canonical_str({"length": i, "name": n})) for i, n in enumerate(names)]
    assert sorted(refgets) != sorted(refgets, key=str.casefold)  # the case decides the order somewhere
    expected = SortedArrays(
        sha512t24u_digest(canonical_str(sorted(pairs))),  # type: ignore[arg-type]
        sha512t24u_digest(canonical_str(sorted(refgets))),  # type: ignore[arg-type]
    )
    assert sorted_arrays(conn, upload.id) == expected  # pair digests computed by the SQL (stored NULL)
    # The same records with the pair digests the parser stores: the same arrays.
    stored = confirmed(store, event(f"seqcol/{uuid.uuid4()}.fa")).upload
    assert store.start_parsing(stored.id, 1)
    with_digests = [r._replace(pair_digest=pair_digest(r.seq_id, r.length)) for r in records]
    assert store.store_batch(sequence_batch(stored.id, 1, 0, with_digests)).stored
    assert conn.execute(
        "SELECT count(pair_digest) AS n FROM sequence_records WHERE upload_id = %s", (stored.id,)
    ).fetchone() == {"n": len(records)}
    assert sorted_arrays(conn, stored.id) == expected


def test_a_sorted_array_element_that_is_no_digest_is_a_damaged_store(conn: Connection, store: PostgresUploads) -> None:
    """The sorted arrays are joined and hashed in bulk, as digests: anything else must not be
    hashed as if it were its own canonical JSON."""
    upload = confirmed(store, event(f"seqcol/{uuid.uuid4()}.fa")).upload
    assert store.start_parsing(upload.id, 1)
    records = [record(0, refget="SQ.abc"), record(1, refget='SQ.a","b')]
    assert store.store_batch(sequence_batch(upload.id, 1, 0, records)).stored
    assert sorted_array_digest(conn, "sorted_name_length_pairs", upload.id)
    with pytest.raises(ValueError, match="not a digest"):
        sorted_array_digest(conn, "sorted_sequences", upload.id)

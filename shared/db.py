"""Postgres adapter: migrations and the queries of every stage, all parameterised.

Every state change of an upload happens under a row lock on its ``uploads`` row, so concurrent
consumers (duplicate events, redeliveries, several persisters) serialise per upload and the
counters stay exact.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from importlib import resources
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

__all__ = ["dict_row"]
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from shared.messages import ObjectCreated, ParseCompleted, SequenceBatch
from shared.settings import Settings, get_settings


class State(StrEnum):
    AWAITING_UPLOAD = "awaiting_upload"
    QUEUED = "queued"
    PARSING = "parsing"
    PERSISTING = "persisting"
    ASSEMBLING = "assembling"
    DONE = "done"
    FAILED = "failed"


TERMINAL = frozenset({State.DONE, State.FAILED})
# States in which some stage owes the upload work (awaiting_upload waits for the user instead).
LIVE = frozenset({State.QUEUED, State.PARSING, State.PERSISTING, State.ASSEMBLING})

Connection = psycopg.Connection[dict[str, Any]]


@retry(
    retry=retry_if_exception_type(psycopg.OperationalError),
    wait=wait_exponential(multiplier=0.5, max=10),
    stop=stop_after_delay(120),
    reraise=True,
)
def connect(settings: Settings, autocommit: bool = False) -> Connection:
    return psycopg.connect(settings.pg_dsn.get_secret_value(), autocommit=autocommit, row_factory=dict_row)


# --- migrations -------------------------------------------------------------------------------

MIGRATION_LOCK = 0x67656E6F  # advisory lock key: one migrator at a time


def migrate(conn: Connection) -> list[str]:
    """Apply the versioned SQL files in order; returns the ones applied now."""
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["version"] for row in conn.execute("SELECT version FROM schema_migrations")}
        files = sorted(
            (f for f in resources.files("shared.migrations").iterdir() if f.name.endswith(".sql")),
            key=lambda f: f.name,
        )
        for file in files:
            version = file.name.removesuffix(".sql")
            if version in done:
                continue
            conn.execute(file.read_text())  # type: ignore[call-overload, unused-ignore]
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied_now.append(version)
    return applied_now


def migrate_main() -> None:
    """Entry point ``genobase-migrate`` (compose runs it once before the services)."""
    with connect(get_settings(), autocommit=True) as conn:
        applied = migrate(conn)
    print(f"migrations applied: {applied or 'none (up to date)'}")


# --- uploads ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    id: uuid.UUID
    bucket: str
    key: str
    filename: str
    registered: bool
    declared_format: str | None
    alphabet: str
    state: State
    generation: int
    etag: str | None
    format: str | None
    bytes_total: int | None
    bytes_done: int
    records_done: int
    records_total: int | None
    batches_done: int
    batches_total: int | None
    records_assembled: int
    duplicate_names: int | None
    error_code: str | None
    error_message: str | None
    error_line: int | None
    error_column: int | None
    result_bucket: str | None
    result_key: str | None
    result_size: int | None
    result_records: int | None
    created_at: datetime
    updated_at: datetime
    parsing_started_at: datetime | None = None
    parsed_at: datetime | None = None
    assembly_started_at: datetime | None = None
    finished_at: datetime | None = None
    empty_sequences: int | None = None
    pickups: int = 0
    picked_up_at: datetime | None = None

    def idle(self, now: datetime) -> timedelta:
        """How long a live stage has not moved (zero once the upload waits for nobody but the user)."""
        return max(now - self.updated_at, timedelta(0)) if self.state in LIVE else timedelta(0)

    def stalled(self, now: datetime, after: timedelta) -> bool:
        """A live stage that has not moved for ``after`` (the watchdog will issue its message again)."""
        return self.idle(now) > after

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Upload:
        names = cls.__dataclass_fields__
        values = {k: v for k, v in row.items() if k in names}
        values["state"] = State(values["state"])
        return cls(**values)


_SELECT = "SELECT * FROM uploads"


def register_upload(
    conn: Connection,
    upload_id: uuid.UUID,
    bucket: str,
    key: str,
    filename: str,
    declared_format: str | None,
    alphabet: str,
    size: int | None,
) -> Upload:
    row = conn.execute(
        "INSERT INTO uploads (id, bucket, key, filename, registered, declared_format, alphabet, state, "
        "bytes_total) VALUES (%s, %s, %s, %s, true, %s, %s, 'awaiting_upload', %s) RETURNING *",
        (upload_id, bucket, key, filename, declared_format, alphabet, size),
    ).fetchone()
    assert row is not None
    return Upload.from_row(row)


def get_upload(conn: Connection, upload_id: uuid.UUID) -> Upload | None:
    row = conn.execute(f"{_SELECT} WHERE id = %s", (upload_id,)).fetchone()
    return Upload.from_row(row) if row else None


def find_upload(conn: Connection, bucket: str, key: str) -> Upload | None:
    row = conn.execute(f"{_SELECT} WHERE bucket = %s AND key = %s", (bucket, key)).fetchone()
    return Upload.from_row(row) if row else None


class ClaimAction(StrEnum):
    PARSE = "parse"  # a new generation (or a redelivery of one not yet parsed): parse it
    DUPLICATE = "duplicate"  # this etag was already taken further: nothing to do
    STALE = "stale"  # an older object than the one already known: nothing to do


@dataclass(frozen=True)
class Claim:
    action: ClaimAction
    upload: Upload


def claim_object(conn: Connection, event: ObjectCreated) -> Claim:
    """Decide what an object-created event means, keyed on bucket + key + etag.

    Creates the upload of an object nobody registered; starts a new generation (dropping the old
    generation's rows) when the key was overwritten; recognises duplicate and stale events.
    """
    with conn.transaction():
        row = conn.execute(f"{_SELECT} WHERE bucket = %s AND key = %s FOR UPDATE", (event.bucket, event.key)).fetchone()
        if row is None:
            filename = event.key.rsplit("/", 1)[-1]
            row = conn.execute(
                "INSERT INTO uploads (id, bucket, key, filename, registered, state, generation, etag, "
                "sequencer, event_time, bytes_total) VALUES (%s, %s, %s, %s, false, 'queued', 1, %s, %s, %s, %s) "
                "ON CONFLICT (bucket, key) DO NOTHING RETURNING *",
                (
                    uuid.uuid4(),
                    event.bucket,
                    event.key,
                    filename,
                    event.etag,
                    event.sequencer,
                    event.event_time,
                    event.size,
                ),
            ).fetchone()
            if row is None:  # lost a race with a concurrent claim: decide again under its lock
                return claim_object(conn, event)
            return Claim(ClaimAction.PARSE, Upload.from_row(row))
        upload = Upload.from_row(row)
        if upload.etag == event.etag:
            if upload.state in (State.QUEUED, State.PARSING):
                return Claim(ClaimAction.PARSE, upload)
            return Claim(ClaimAction.DUPLICATE, upload)
        if upload.etag is not None and _is_older(event, row):
            return Claim(ClaimAction.STALE, upload)
        _delete_rows(conn, upload.id)
        row = conn.execute(
            "UPDATE uploads SET state = 'queued', generation = generation + 1, etag = %s, sequencer = %s, "
            "event_time = %s, bytes_total = %s, bytes_done = 0, records_done = 0, records_total = NULL, "
            "batches_done = 0, batches_total = NULL, records_assembled = 0, duplicate_names = NULL, "
            "empty_sequences = NULL, format = NULL, error_code = NULL, error_message = NULL, error_line = NULL, "
            "error_column = NULL, "
            "result_bucket = NULL, result_key = NULL, result_size = NULL, result_records = NULL, "
            "parsing_started_at = NULL, parsed_at = NULL, assembly_started_at = NULL, finished_at = NULL, "
            "pickups = 0, picked_up_at = NULL, updated_at = now() WHERE id = %s RETURNING *",
            (event.etag, event.sequencer, event.event_time, event.size, upload.id),
        ).fetchone()
        assert row is not None
        return Claim(ClaimAction.PARSE, Upload.from_row(row))


def _is_older(event: ObjectCreated, row: dict[str, Any]) -> bool:
    known = row["event_time"]
    return event.event_time is not None and known is not None and event.event_time < known


def _delete_rows(conn: Connection, upload_id: uuid.UUID) -> None:
    conn.execute("DELETE FROM sequence_parts WHERE upload_id = %s", (upload_id,))
    conn.execute("DELETE FROM sequence_records WHERE upload_id = %s", (upload_id,))
    conn.execute("DELETE FROM upload_batches WHERE upload_id = %s", (upload_id,))


def requeue_failed(conn: Connection, upload_id: uuid.UUID) -> Upload | None:
    """Make a failed upload parseable again (same generation; its rows went when it failed)."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE uploads SET state = 'queued', error_code = NULL, error_message = NULL, error_line = NULL, "
            "error_column = NULL, finished_at = NULL, updated_at = now() "
            "WHERE id = %s AND state = 'failed' AND etag IS NOT NULL RETURNING *",
            (upload_id,),
        ).fetchone()
    return Upload.from_row(row) if row else None


def pick_up_stalled(
    conn: Connection, after: timedelta, reissue: Callable[[Upload], None], limit: int = 100
) -> list[Upload]:
    """Issue the stage message of every upload that made no progress for ``after``, once per period.

    A stalled upload is one whose message was lost or whose worker died holding it; the consumers
    are idempotent, so issuing the message again is safe even when the stage was merely slow.
    ``reissue`` runs under the row lock, before the pick-up is recorded: a failed publish leaves
    the upload to the next sweep. An upload stuck in ``persisting`` lost a batch: it goes back to
    ``parsing`` so that the re-parse is accepted (the persister skips the batches it has).
    """
    picked = []
    with conn.transaction():
        rows = conn.execute(
            f"{_SELECT} WHERE state IN ('queued', 'parsing', 'persisting', 'assembling') "
            "AND updated_at < now() - %s AND (picked_up_at IS NULL OR picked_up_at < now() - %s) "
            "ORDER BY updated_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (after, after, limit),
        ).fetchall()
        for row in rows:
            upload = Upload.from_row(row)
            if upload.etag is None:
                continue
            reissue(upload)
            updated = conn.execute(
                "UPDATE uploads SET pickups = pickups + 1, picked_up_at = now(), "
                "state = CASE WHEN state = 'persisting' THEN 'parsing' ELSE state END WHERE id = %s RETURNING *",
                (upload.id,),
            ).fetchone()
            assert updated is not None
            picked.append(Upload.from_row(updated))
    return picked


def try_lock_generation(conn: Connection, upload_id: uuid.UUID, stage: str) -> bool:
    """Session advisory lock: one worker per upload and stage; released if the worker dies."""
    row = conn.execute(
        "SELECT pg_try_advisory_lock(hashtextextended(%s, 0)) AS ok", (f"{stage}:{upload_id}",)
    ).fetchone()
    return bool(row and row["ok"])


def unlock_generation(conn: Connection, upload_id: uuid.UUID, stage: str) -> None:
    conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (f"{stage}:{upload_id}",))


def start_parsing(conn: Connection, upload_id: uuid.UUID, generation: int) -> bool:
    with conn.transaction():
        row = conn.execute(
            "UPDATE uploads SET state = 'parsing', parsing_started_at = clock_timestamp(), updated_at = now() "
            "WHERE id = %s AND generation = %s AND state IN ('queued', 'parsing') RETURNING id",
            (upload_id, generation),
        ).fetchone()
    return row is not None


def set_format(conn: Connection, upload_id: uuid.UUID, generation: int, fmt: str) -> None:
    with conn.transaction():
        conn.execute("UPDATE uploads SET format = %s WHERE id = %s AND generation = %s", (fmt, upload_id, generation))


def fail_upload(
    conn: Connection,
    upload_id: uuid.UUID,
    generation: int | None,
    code: str,
    message: str,
    line: int | None = None,
    column: int | None = None,
) -> bool:
    """Mark a generation failed and drop its rows; a no-op for a generation already replaced."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE uploads SET state = 'failed', error_code = %s, error_message = %s, error_line = %s, "
            "error_column = %s, finished_at = clock_timestamp(), updated_at = now() "
            "WHERE id = %s AND (%s::int IS NULL OR generation = %s) AND state <> 'done' RETURNING id",
            (code, message, line, column, upload_id, generation, generation),
        ).fetchone()
        if row is not None:
            _delete_rows(conn, upload_id)
    return row is not None


# --- persister --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PersistOutcome:
    stored: bool  # False: a replay of a committed batch, or a batch of a dead generation
    ready_to_assemble: bool


def _lock_live(conn: Connection, upload_id: uuid.UUID, generation: int) -> dict[str, Any] | None:
    return conn.execute(
        "SELECT * FROM uploads WHERE id = %s AND generation = %s "
        "AND state IN ('queued', 'parsing', 'persisting', 'assembling') FOR UPDATE",
        (upload_id, generation),
    ).fetchone()


def store_batch(conn: Connection, batch: SequenceBatch) -> PersistOutcome:
    """COPY one batch in, exactly once: the batch number is inserted in the same transaction."""
    with conn.transaction():
        upload = _lock_live(conn, batch.upload_id, batch.generation)
        if upload is None:
            return PersistOutcome(False, False)
        fresh = conn.execute(
            "INSERT INTO upload_batches (upload_id, generation, batch_no) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING RETURNING batch_no",
            (batch.upload_id, batch.generation, batch.batch_no),
        ).fetchone()
        if fresh is None:
            return PersistOutcome(False, _complete(upload))
        _copy_batch(conn, batch)
        row = conn.execute(
            "UPDATE uploads SET batches_done = batches_done + 1, records_done = records_done + %s, "
            "bytes_done = GREATEST(bytes_done, %s), updated_at = now() WHERE id = %s RETURNING *",
            (len(batch.records), batch.source_offset, batch.upload_id),
        ).fetchone()
        assert row is not None
        ready = _complete(row)
        if ready:
            _mark_assembling(conn, row)
    return PersistOutcome(True, ready)


def _copy_batch(conn: Connection, batch: SequenceBatch) -> None:
    uid = batch.upload_id
    parts = batch.parts
    with conn.cursor() as cur:
        if len(parts):
            with cur.copy(
                "COPY sequence_parts (upload_id, ordinal, part_no, residues) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["uuid", "int8", "int4", "bytea"])
                for ordinal, part_no, residues in zip(parts.ordinal, parts.part_no, parts.residues, strict=True):
                    copy.write_row((uid, ordinal, part_no, residues.encode("ascii")))
        r = batch.records
        if len(r):
            with cur.copy(
                "COPY sequence_records (upload_id, ordinal, line_number, gene_name, seq_id, description, "
                "length, part_count, md5, refget, residues, quality, attributes) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(
                    [
                        "uuid",
                        "int8",
                        "int8",
                        "text",
                        "text",
                        "text",
                        "int8",
                        "int4",
                        "text",
                        "text",
                        "bytea",
                        "bytea",
                        "jsonb",
                    ]
                )
                for *row, residues, quality, attributes in zip(
                    r.ordinal,
                    r.line_number,
                    r.gene_name,
                    r.seq_id,
                    r.description,
                    r.length,
                    r.part_count,
                    r.md5,
                    r.refget,
                    r.residues,
                    r.quality,
                    r.attributes,
                    strict=True,
                ):
                    copy.write_row(
                        (
                            uid,
                            *row,
                            None if residues is None else residues.encode("ascii"),
                            None if quality is None else quality.encode("ascii"),
                            None if attributes is None else Jsonb(attributes),
                        )
                    )


def record_parse_completed(conn: Connection, done: ParseCompleted) -> PersistOutcome:
    with conn.transaction():
        upload = _lock_live(conn, done.upload_id, done.generation)
        if upload is None:
            return PersistOutcome(False, False)
        row = conn.execute(
            "UPDATE uploads SET batches_total = %s, records_total = %s, bytes_done = %s, format = %s, "
            "parsed_at = clock_timestamp(), "
            "state = CASE WHEN state IN ('queued', 'parsing') THEN 'persisting' ELSE state END, "
            "updated_at = now() WHERE id = %s RETURNING *",
            (done.batch_count, done.record_count, done.source_bytes, done.format, done.upload_id),
        ).fetchone()
        assert row is not None
        ready = _complete(row)
        if ready:
            _mark_assembling(conn, row)
    return PersistOutcome(True, ready)


def _complete(row: dict[str, Any]) -> bool:
    return row["batches_total"] is not None and row["batches_done"] >= row["batches_total"]


def _mark_assembling(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(
        "UPDATE uploads SET state = 'assembling', assembly_started_at = clock_timestamp(), updated_at = now() "
        "WHERE id = %s",
        (row["id"],),
    )


# --- assembler --------------------------------------------------------------------------------


def assembling_upload(conn: Connection, upload_id: uuid.UUID, generation: int) -> Upload | None:
    row = conn.execute(
        f"{_SELECT} WHERE id = %s AND generation = %s AND state = 'assembling'", (upload_id, generation)
    ).fetchone()
    return Upload.from_row(row) if row else None


# ordinal, line_number, gene_name, seq_id, description, length, md5, refget, quality, attributes,
# part_no, residues
ResultRow = tuple[int, int, str, str, str, int, str, str, bytes | None, dict[str, str] | None, int, bytes | None]

# Reading a whole upload back must be two plain index scans in key order, streamed: never a sort
# (which would buffer or spill the whole upload), a JIT compile or parallel workers on two cores.
_STREAMING_READ = (
    "SET enable_sort = off",
    "SET enable_bitmapscan = off",
    "SET jit = off",
    "SET max_parallel_workers_per_gather = 0",
)


def iter_result_rows(
    records_conn: Connection, parts_conn: Connection, upload_id: uuid.UUID
) -> Generator[ResultRow, None, None]:
    """Every record with its sequence, in order: one part in memory at a time.

    A short record yields one row with its inline residues; a long one a row per part. Records
    and parts are streamed by two ``COPY TO`` on two connections, each in primary-key order, and
    merged here using each record's ``part_count``.
    """
    for conn in (records_conn, parts_conn):
        for statement in _STREAMING_READ:
            conn.execute(statement)
    with (
        records_conn.cursor() as rcur,
        rcur.copy(
            "COPY (SELECT ordinal, line_number, gene_name, seq_id, description, length, md5, refget, part_count, "
            "residues, quality, attributes FROM sequence_records WHERE upload_id = %s ORDER BY upload_id, ordinal) "
            "TO STDOUT (FORMAT BINARY)",
            (upload_id,),
        ) as records,
        parts_conn.cursor() as pcur,
        pcur.copy(
            "COPY (SELECT ordinal, part_no, residues FROM sequence_parts WHERE upload_id = %s "
            "ORDER BY upload_id, ordinal, part_no) TO STDOUT (FORMAT BINARY)",
            (upload_id,),
        ) as parts,
    ):
        records.set_types(
            ["int8", "int8", "text", "text", "text", "int8", "text", "text", "int4", "bytea", "bytea", "jsonb"]
        )
        parts.set_types(["int8", "int4", "bytea"])
        part_rows = parts.rows()
        for row in records.rows():
            *head, parts_n, inline, quality, attributes = row
            ordinal = head[0]
            meta = (*head, quality, attributes)
            if parts_n == 0:
                yield (*meta, 0, inline)
                continue
            for expected in range(parts_n):
                part_ordinal, part_no, residues = next(part_rows)
                if part_ordinal != ordinal or part_no != expected:
                    raise RuntimeError(
                        f"stored parts out of step: record {ordinal} part {expected}, got {part_ordinal}/{part_no}"
                    )
                yield (*meta, part_no, residues)
        if next(part_rows, None) is not None:
            raise RuntimeError("stored parts left over after the last record")


def name_counts(conn: Connection, upload_id: uuid.UUID) -> tuple[int, int]:
    """Duplicate names (kept, and reported) and empty sequences of an upload's stored records.

    A sort of every name: the assembler runs it beside its streaming, off the critical path.
    """
    row = conn.execute(
        "SELECT count(*) - count(DISTINCT seq_id) AS duplicates, count(*) FILTER (WHERE length = 0) AS empty "
        "FROM sequence_records WHERE upload_id = %s",
        (upload_id,),
    ).fetchone()
    assert row is not None
    return int(row["duplicates"]), int(row["empty"])


def record_assembly_progress(conn: Connection, upload_id: uuid.UUID, generation: int, records: int) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE uploads SET records_assembled = %s, updated_at = now() WHERE id = %s AND generation = %s",
            (records, upload_id, generation),
        )


def finish_assembly(
    conn: Connection,
    upload_id: uuid.UUID,
    generation: int,
    bucket: str,
    key: str,
    size: int,
    records: int,
    counts: tuple[int, int],
) -> bool:
    with conn.transaction():
        row = conn.execute(
            "UPDATE uploads SET state = 'done', result_bucket = %s, result_key = %s, result_size = %s, "
            "result_records = %s, records_assembled = %s, duplicate_names = %s, empty_sequences = %s, "
            "finished_at = clock_timestamp(), updated_at = now() "
            "WHERE id = %s AND generation = %s AND state = 'assembling' RETURNING id",
            (bucket, key, size, records, records, *counts, upload_id, generation),
        ).fetchone()
    return row is not None


def ping(conn: Connection) -> None:
    conn.execute("SELECT 1")


class Database:
    """One connection for one worker thread, replaced when Postgres dropped it (restart, failover)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._conn: Connection | None = None

    @property
    def conn(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self._settings, autocommit=True)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

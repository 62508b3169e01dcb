"""The upload state machine on Postgres: ``PostgresUploads``, the one way into the store for uploads.

Every query of every stage is a method of ``PostgresUploads`` (the helpers below are pieces of them
that run inside their transactions), all parameterised. Every state change of an upload happens
under a row lock on its ``uploads`` row, so concurrent consumers (duplicate events, redeliveries,
several persisters) serialise per upload and the counters stay exact. The states each query
accepts and sets come from the transitions in ``shared/domain/uploads.py``; the decision of what
an event means is ``decide_claim``'s, made under the lock.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from shared.domain.access import owner_of_object
from shared.domain.listing import Cursor, IdempotencyKeyReused, UploadFilter, merge_labels
from shared.domain.messages import ParseCompleted, SequenceBatch
from shared.domain.record_schema import ResultPiece
from shared.domain.seqcol import Collection, SortedArrays
from shared.domain.uploads import (
    ASSEMBLE,
    DELETE,
    EXPIRE,
    FAIL,
    FINISH,
    FINISH_PARSING,
    FINISH_VALIDATION,
    GENERATION_RESET,
    LIVE,
    NEW_GENERATION,
    PARSE_SHARD,
    PICK_UP_STALLED,
    PLAN_SHARDS,
    RATE_WINDOW,
    RECORD_ASSEMBLY_PROGRESS,
    REFUSE_OBJECT,
    REQUEUE,
    RETRY,
    RETRY_LOST_BATCH,
    REVOKE_TICKET,
    START_ASSEMBLY,
    START_PARSING,
    STORE_BATCH,
    UPLOAD_FIELDS,
    Claim,
    ClaimAction,
    ClaimDecision,
    CommittedBatch,
    Failure,
    Mode,
    NameCounts,
    ObjectCreated,
    OwnerUsage,
    PersistOutcome,
    PipelineErrorCode,
    QuotaExceeded,
    Quotas,
    Registration,
    ResultLocation,
    Shard,
    ShardToParse,
    State,
    Transition,
    Upload,
    Validation,
    decide_claim,
    decide_locked_claim,
    filename_of_key,
    needs_object_check,
    quota_refusal,
    retry_quota_refusal,
)
from shared.postgres import keys, refget, sequences
from shared.postgres.connection import Connection, Database, connect, ping
from shared.runtime import metrics
from shared.runtime.logs import carry_context

# Every query names the columns it reads (the fields of ``Upload``), never ``*``: a service still
# running the previous version keeps working after a migration adds a column, instead of failing
# with "cached plan must not change result type" on its prepared statements.
_COLUMNS = ", ".join(sorted(UPLOAD_FIELDS))
_RETURNING = f"RETURNING {_COLUMNS}"
_SELECT = f"SELECT {_COLUMNS} FROM uploads"

# The columns of ``upload_shards``, in the order of ``Shard``'s fields (named as the fields, but these).
_SHARD_COLUMN_NAMES = tuple(
    {"number": "shard", "start": "start_offset", "end": "end_offset", "skip": "skip_bytes"}.get(f.name, f.name)
    for f in dataclasses.fields(Shard)
)
_SHARD_COLUMNS = ", ".join(_SHARD_COLUMN_NAMES)

# Validations that ended with their object still in the store, as the partial index of migration 0022
# states it (spelled out, so that the planner matches the index).
_VALIDATED_OBJECTS = (
    f"mode = '{Mode.VALIDATE.value}' AND object_removed_at IS NULL AND etag IS NOT NULL "
    f"AND state IN ('{State.DONE.value}', '{State.FAILED.value}')"
)

# A place to run statements: borrowed for a call (a pool's) or kept between calls (a worker's).
Sessions = Callable[[], AbstractContextManager[Connection]]


def _sources(transition: Transition) -> list[str]:
    return sorted(state.value for state in transition.sources)


def _target(transition: Transition) -> str:
    assert transition.target is not None
    return transition.target.value


def _failure_columns(failure: Failure | None) -> dict[str, Any]:
    return {
        "error_code": None if failure is None else failure.code.value,
        "error_message": None if failure is None else failure.message,
        "error_line": None if failure is None else failure.line,
        "error_column": None if failure is None else failure.column,
        "error_id": None if failure is None else failure.error_id,
    }


def _assignments(values: dict[str, Any]) -> sql.Composed:
    return sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(n), sql.Placeholder(n)) for n in values)


def _refused_failure() -> Failure:
    return Failure(PipelineErrorCode.OWNER_REVOKED, "the owner's API keys were revoked: this object is not processed")


def _shard(row: dict[str, Any]) -> Shard:
    return Shard(*(row[name] for name in _SHARD_COLUMN_NAMES))


@contextmanager
def _kept(database: Database) -> Iterator[Connection]:
    """The worker thread's own session (opened again if Postgres dropped it), not closed after use."""
    yield database.conn


# --- pieces of the queries, run inside the caller's transaction --------------------------------


def _lock_owner(conn: Connection, owner: str) -> None:
    """Serialise, per owner, what its quotas count (inside the caller's transaction): two requests
    of one owner cannot both see room for one more."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"quota:{owner}",))


def _owner_usage(conn: Connection, owner: str) -> OwnerUsage:
    """The owner's uploads as ``shared/domain/uploads.py:OwnerUsage`` counts them (one pass over its rows)."""
    # An object counts while the store may hold it: a ticket's (its parts may be there), a written
    # one until its upload is deleted, or, for a validation, until the watchdog removed it.
    row = conn.execute(
        "SELECT COALESCE(sum(bytes_total) FILTER (WHERE (state = %(awaiting)s "
        "OR (etag IS NOT NULL AND state <> %(deleted)s)) AND object_removed_at IS NULL), 0) AS stored, "
        "count(*) FILTER (WHERE state = ANY(%(in_flight)s)) AS in_flight, "
        "count(*) FILTER (WHERE state = %(awaiting)s AND multipart_upload_id IS NOT NULL) AS multipart, "
        "count(*) FILTER (WHERE registered AND created_at > now() - %(window)s) AS registrations, "
        "now() - min(created_at) FILTER (WHERE registered AND created_at > now() - %(window)s) AS oldest "
        "FROM uploads WHERE owner = %(owner)s",
        {
            "owner": owner,
            "awaiting": State.AWAITING_UPLOAD.value,
            "deleted": State.DELETED.value,
            "in_flight": sorted({State.AWAITING_UPLOAD.value, *(s.value for s in LIVE)}),
            "window": RATE_WINDOW,
        },
    ).fetchone()
    assert row is not None
    return OwnerUsage(int(row["stored"]), row["in_flight"], row["multipart"], row["registrations"], row["oldest"])


def _insert_registration(conn: Connection, registration: Registration) -> Upload | None:
    """The registration's row; None when the owner's idempotency key is already taken (by a
    concurrent request: the caller looked for it first)."""
    r = registration
    row = conn.execute(
        "INSERT INTO uploads (id, bucket, key, filename, registered, declared_format, alphabet, state, bytes_total, "
        "owner, ticket_expires_at, circular, multipart_upload_id, mode, labels, idempotency_key, request_hash) "
        "VALUES (%s, %s, %s, %s, true, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING " + _RETURNING,
        (
            r.upload_id,
            r.bucket,
            r.key,
            r.filename,
            r.declared_format,
            r.alphabet,
            State.AWAITING_UPLOAD.value,
            r.size,
            r.owner,
            r.ticket_expires_at,
            r.circular,
            r.multipart_upload_id,
            r.mode.value,
            Jsonb(dict(r.labels)),
            r.idempotency_key,
            r.request_hash,
        ),
    ).fetchone()
    return Upload.from_row(row) if row else None


def _registered_with(conn: Connection, owner: str | None, key: str, request_hash: str | None) -> Upload | None:
    """The owner's upload registered under the idempotency key; ``IdempotencyKeyReused`` if it was
    registered from another request."""
    row = conn.execute(
        f"SELECT {_COLUMNS}, request_hash FROM uploads WHERE owner = %s AND idempotency_key = %s", (owner, key)
    ).fetchone()
    if row is None:
        return None
    if row["request_hash"] != request_hash:
        raise IdempotencyKeyReused(key)
    return Upload.from_row(row)


def listing_query(query: UploadFilter, after: Cursor | None, limit: int) -> tuple[sql.Composed, dict[str, Any]]:
    """``PostgresUploads.list_uploads``'s statement: newest first, from ``after`` on (keyset), so that
    every page is an index range scan -- ``uploads_by_owner_listing`` for an owner's uploads,
    ``uploads_listing`` for everyone's -- with no sort; the other filters apply to the rows it reads."""
    where = ["true"]
    params: dict[str, Any] = {"limit": limit}
    shown = query.shown_states()
    if shown != frozenset(State):
        where.append("state = ANY(%(states)s)")
        params["states"] = sorted(s.value for s in shown)
    if query.owner is not None:
        where.append("owner = %(owner)s")
        params["owner"] = query.owner
    if after is not None:
        where.append("(created_at, id) < (%(after_created_at)s, %(after_id)s)")
        params.update(after_created_at=after.created_at, after_id=after.id)
    if query.name_prefix:
        where.append("starts_with(filename, %(prefix)s)")  # a plain prefix: no LIKE wildcards to escape
        params["prefix"] = query.name_prefix
    if query.labels:
        where.append("labels @> %(labels)s")
        params["labels"] = Jsonb(dict(query.labels))
    if query.created_after is not None:
        where.append("created_at > %(created_after)s")
        params["created_after"] = query.created_after
    if query.created_before is not None:
        where.append("created_at < %(created_before)s")
        params["created_before"] = query.created_before
    statement = sql.SQL(f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC LIMIT %(limit)s")
    return sql.Composed([statement]), params


def _claim(conn: Connection, event: ObjectCreated, confirmed: bool) -> Claim:
    """``PostgresUploads.claim`` on one session: the decision and its writes under the key's row lock."""
    with conn.transaction():
        row = conn.execute(f"{_SELECT} WHERE bucket = %s AND key = %s FOR UPDATE", (event.bucket, event.key)).fetchone()
        current = Upload.from_row(row) if row else None
        owner = current.owner if current is not None else _owner_of_new_object(conn, event.key)
        # Asked only where the answer matters: where the event would start a generation.
        revoked = needs_object_check(decide_claim(current, event)) and keys.owner_revoked(conn, owner)
        decision = decide_locked_claim(current, event, confirmed, owner_revoked=revoked)
        if decision is ClaimDecision.DELETED:
            assert current is not None
            _reopen_purge(conn, current.id)
            return Claim(decision.action, current)
        if decision is ClaimDecision.UNCONFIRMED:
            if current is None:  # upload rows are never removed: the caller looked, saw one, and it is gone
                raise RuntimeError(f"the upload of {event.key!r} vanished between look and lock")
            return Claim(decision.action, current)
        if decision in (ClaimDecision.CREATE, ClaimDecision.REFUSE_OBJECT) and current is None:
            refused = decision is ClaimDecision.REFUSE_OBJECT
            failure = _refused_failure() if refused else None
            values = {
                "id": uuid.uuid4(),
                "bucket": event.bucket,
                "key": event.key,
                "filename": filename_of_key(event.key),
                "registered": False,
                "state": _target(REFUSE_OBJECT if refused else NEW_GENERATION),
                "generation": 1,
                "etag": event.etag,
                "sequencer": event.sequencer,
                "event_time": event.event_time,
                "bytes_total": event.size,
                # An object written under a key name's prefix belongs to that owner (shared/domain/access.py).
                "owner": owner,
                **_failure_columns(failure),
                "finished_at": datetime.now(UTC) if refused else None,
            }
            insert = sql.SQL("INSERT INTO uploads ({}) VALUES ({}) ON CONFLICT (bucket, key) DO NOTHING " + _RETURNING)
            columns = sql.SQL(", ").join(map(sql.Identifier, values))
            row = conn.execute(
                insert.format(columns, sql.SQL(", ").join(map(sql.Placeholder, values))), values
            ).fetchone()
            if row is None:  # lost a race with a concurrent claim: decide again under its lock
                return _claim(conn, event, confirmed)
            return Claim(decision.action, Upload.from_row(row))
        assert current is not None
        if decision not in (ClaimDecision.NEW_GENERATION, ClaimDecision.REFUSE_OBJECT):
            return Claim(decision.action, current)
        _delete_rows(conn, current.id)
        refused = decision is ClaimDecision.REFUSE_OBJECT
        values = {
            **GENERATION_RESET,
            "state": _target(REFUSE_OBJECT if refused else NEW_GENERATION),
            "etag": event.etag,
            "sequencer": event.sequencer,
            "event_time": event.event_time,
            "bytes_total": event.size,
        }
        if refused:
            values.update(_failure_columns(_refused_failure()), finished_at=datetime.now(UTC))
        row = conn.execute(
            sql.SQL(
                "UPDATE uploads SET {}, generation = generation + 1, updated_at = now() WHERE id = %(id)s " + _RETURNING
            ).format(_assignments(values)),
            {**values, "id": current.id},
        ).fetchone()
        assert row is not None
        return Claim(decision.action, Upload.from_row(row))


def _owner_of_new_object(conn: Connection, key: str) -> str | None:
    first = key.partition("/")[0]
    named = {r["owner"] for r in conn.execute("SELECT owner FROM api_keys WHERE owner = %s LIMIT 1", (first,))}
    return owner_of_object(key, named)


def _delete_rows(conn: Connection, upload_id: uuid.UUID) -> None:
    conn.execute("DELETE FROM collections WHERE upload_id = %s", (upload_id,))
    conn.execute("DELETE FROM sequence_parts WHERE upload_id = %s", (upload_id,))
    conn.execute("DELETE FROM sequence_records WHERE upload_id = %s", (upload_id,))
    conn.execute("DELETE FROM upload_batches WHERE upload_id = %s", (upload_id,))
    conn.execute("DELETE FROM upload_shards WHERE upload_id = %s", (upload_id,))


def _reopen_purge(conn: Connection, upload_id: uuid.UUID) -> bool:
    """Ask again for the purge of a deleted upload (inside the caller's transaction): something was
    written to the store after it was deleted."""
    row = conn.execute(
        "UPDATE uploads SET purge_requested_at = clock_timestamp(), purged_at = NULL "
        "WHERE id = %s AND state = %s RETURNING id",
        (upload_id, State.DELETED.value),
    ).fetchone()
    return row is not None


def _shard_plan(conn: Connection, upload_id: uuid.UUID, generation: int) -> list[Shard]:
    rows = conn.execute(
        f"SELECT {_SHARD_COLUMNS} FROM upload_shards WHERE upload_id = %s AND generation = %s ORDER BY shard",
        (upload_id, generation),
    ).fetchall()
    return [_shard(row) for row in rows]


def _shard_count(conn: Connection, upload_id: uuid.UUID, generation: int) -> int:
    """The plan's shards (numbered 0..n-1): its last number, from the primary key's end, so that
    asking once per shard stays linear in the shards."""
    row = conn.execute(
        "SELECT max(shard) AS last FROM upload_shards WHERE upload_id = %s AND generation = %s",
        (upload_id, generation),
    ).fetchone()
    return 0 if row is None or row["last"] is None else int(row["last"]) + 1


def _record_shard_parsed(conn: Connection, done: ParseCompleted) -> tuple[int, int] | None:
    """Under the upload's row lock: the shard's end recorded; once every shard's is, the
    generation's batch and record totals. None while shards are still being parsed."""
    conn.execute(
        "UPDATE upload_shards SET batch_count = %s, parsed_at = COALESCE(parsed_at, clock_timestamp()) "
        "WHERE upload_id = %s AND generation = %s AND shard = %s",
        (done.batch_count, done.upload_id, done.generation, done.shard),
    )
    shards = _shard_count(conn, done.upload_id, done.generation)
    if shards != done.shard_count:
        raise RuntimeError(f"the plan has {shards} shards, the parser counted {done.shard_count}")
    # One look per shard's end, through the index of unparsed shards (migration 0015): linear in the
    # shards in all; the totals are summed once, when none is left.
    unparsed = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM upload_shards WHERE upload_id = %s AND generation = %s "
        "AND parsed_at IS NULL) AS left",
        (done.upload_id, done.generation),
    ).fetchone()
    assert unparsed is not None
    if unparsed["left"]:
        return None
    row = conn.execute(
        "SELECT sum(batch_count) AS batches, sum(records) AS records FROM upload_shards "
        "WHERE upload_id = %s AND generation = %s",
        (done.upload_id, done.generation),
    ).fetchone()
    assert row is not None
    return int(row["batches"]), int(row["records"])


def _lock_live(conn: Connection, upload_id: uuid.UUID, generation: int) -> Upload | None:
    row = conn.execute(
        f"{_SELECT} WHERE id = %s AND generation = %s AND state = ANY(%s) FOR UPDATE",
        (upload_id, generation, _sources(STORE_BATCH)),
    ).fetchone()
    return Upload.from_row(row) if row else None


def _assemble_if_complete(conn: Connection, row: dict[str, Any] | None) -> PersistOutcome:
    """After progress was stored (under the row lock): start the assembly once every batch is in."""
    assert row is not None
    upload = Upload.from_row(row)
    if upload.complete:
        START_ASSEMBLY.apply(upload.state)  # the caller locked a live upload: this cannot refuse
        conn.execute(
            "UPDATE uploads SET state = %s, assembly_started_at = COALESCE(assembly_started_at, clock_timestamp()), "
            "updated_at = now() WHERE id = %s",
            (_target(START_ASSEMBLY), upload.id),
        )
    return PersistOutcome(True, upload.complete)


def _assembling(conn: Connection, upload_id: uuid.UUID, generation: int) -> Upload | None:
    row = conn.execute(
        f"{_SELECT} WHERE id = %s AND generation = %s AND state = ANY(%s)",
        (upload_id, generation, _sources(ASSEMBLE)),
    ).fetchone()
    return Upload.from_row(row) if row else None


# --- the store the services use ---------------------------------------------------------------


class PostgresUploads:
    """The upload store, on Postgres sessions: every query of the pipeline's stages and of the intake.

    Implements the narrow interfaces of ``shared/domain/ports.py``. A worker (a consumer, the
    watchdog, the CLI) builds it on its thread's ``Database``: most work runs on that one session,
    kept between calls; the assembler's read-back streams records and parts over two more at the
    same time, and its progress updates over a fourth, while the first two are busy with ``COPY``.
    An HTTP service, whose requests run on many threads, builds it on a ``ConnectionPool``: each
    call borrows a session for its duration.
    """

    def __init__(self, sessions: Database | ConnectionPool[Connection]) -> None:
        self._databases: tuple[Database, ...] = ()
        self._pool = None if isinstance(sessions, Database) else sessions
        if isinstance(sessions, Database):
            parts, progress = Database(sessions.settings), Database(sessions.settings)
            self._databases = (sessions, parts, progress)
            self._session: Sessions = functools.partial(_kept, sessions)
            self._parts: Sessions = functools.partial(_kept, parts)
            self._progress: Sessions = functools.partial(_kept, progress)
            # a session of its own, closed after use, for work run on another thread
            self._own: Sessions = functools.partial(connect, sessions.settings, autocommit=True)
        else:
            self._session = self._parts = self._progress = self._own = sessions.connection

    def reset(self) -> None:
        """After a failure a session may be left inside a half-read COPY: start again on new ones.

        Closing also ends the session that holds a generation's advisory lock. (A pool's sessions
        are checked by the pool itself when borrowed.)
        """
        for database in self._databases:
            database.close()

    def ping(self) -> None:
        """Raise if Postgres does not answer (the intake's health check: it waits at most 5 s for a
        pool's session)."""
        with self._pool.connection(timeout=5) if self._pool is not None else self._session() as conn:
            ping(conn)

    # --- the intake: registrations and the status of uploads

    def owner_usage(self, owner: str) -> OwnerUsage | None:
        with self._session() as conn, conn.transaction():
            if keys.is_admin(conn, owner):
                return None
            return _owner_usage(conn, owner)

    def register(self, registration: Registration, quotas: Quotas | None = None) -> Upload:
        """Register an upload; with ``quotas``, only if the owner's quotas leave room for it
        (``QuotaExceeded`` if not), decided and written under the owner's lock in one transaction.

        With an idempotency key, the upload already registered under it comes back instead (no
        quota counts it twice), or ``IdempotencyKeyReused`` for another request; two concurrent
        requests meet at the unique index, and the loser reads the winner's row."""
        r = registration
        owner = r.owner
        with self._session() as conn, conn.transaction():
            if r.idempotency_key is not None:
                existing = _registered_with(conn, owner, r.idempotency_key, r.request_hash)
                if existing is not None:
                    return existing
            if quotas is not None and owner is not None:
                _lock_owner(conn, owner)
                multipart = r.multipart_upload_id is not None
                refusal = quota_refusal(_owner_usage(conn, owner), quotas, r.size or 0, multipart=multipart)
                if refusal is not None:
                    raise QuotaExceeded(refusal)
            upload = _insert_registration(conn, r)
            if upload is None:  # a concurrent request with the same key committed first
                assert r.idempotency_key is not None
                upload = _registered_with(conn, owner, r.idempotency_key, r.request_hash)
                assert upload is not None
            return upload

    def registered_with(self, owner: str, idempotency_key: str, request_hash: str) -> Upload | None:
        with self._session() as conn:
            return _registered_with(conn, owner, idempotency_key, request_hash)

    def list_uploads(self, query: UploadFilter, after: Cursor | None, limit: int) -> list[Upload]:
        statement, params = listing_query(query, after, limit)
        with self._session() as conn:
            return [Upload.from_row(row) for row in conn.execute(statement, params).fetchall()]

    def merge_labels(self, upload_id: uuid.UUID, patch: Mapping[str, str | None] | None) -> Upload | None:
        """Merge-patch the upload's labels under its row lock (``InvalidLabels`` beyond the bounds,
        nothing written). ``updated_at`` stays: it says when the pipeline last moved (stalls)."""
        with self._session() as conn, conn.transaction():
            row = conn.execute(f"{_SELECT} WHERE id = %s FOR UPDATE", (upload_id,)).fetchone()
            if row is None:
                return None
            current = Upload.from_row(row)
            if current.state is State.DELETED:
                return current  # a tombstone holds no labels, and gets none
            labels = merge_labels(current.labels, patch)
            updated = conn.execute(
                f"UPDATE uploads SET labels = %s WHERE id = %s {_RETURNING}", (Jsonb(labels), upload_id)
            ).fetchone()
        return Upload.from_row(updated) if updated else None

    def get(self, upload_id: uuid.UUID) -> Upload | None:
        with self._session() as conn:
            row = conn.execute(f"{_SELECT} WHERE id = %s", (upload_id,)).fetchone()
        return Upload.from_row(row) if row else None

    def find(self, bucket: str, key: str) -> Upload | None:
        with self._session() as conn:
            row = conn.execute(f"{_SELECT} WHERE bucket = %s AND key = %s", (bucket, key)).fetchone()
        return Upload.from_row(row) if row else None

    # --- the reconciler's reads (services/watchdog/reconcile.py)
    def awaiting_objects(self, bucket: str, after: uuid.UUID | None, limit: int) -> list[Upload]:
        """Registered uploads still awaiting their object, by id after ``after``: a page of the
        reconciler's rotation. The partial index of awaiting tickets (migration 0008) holds them."""
        query = (
            f"{_SELECT} WHERE state = %(state)s AND etag IS NULL AND registered AND bucket = %(bucket)s"
            + ("" if after is None else " AND id > %(after)s")
            + " ORDER BY id LIMIT %(limit)s"
        )
        params = {"state": State.AWAITING_UPLOAD.value, "bucket": bucket, "after": after, "limit": limit}
        with self._session() as conn:
            rows = conn.execute(query, params).fetchall()
        return [Upload.from_row(row) for row in rows]

    def known_objects(self, bucket: str, keys: Sequence[str]) -> dict[str, Upload]:
        """The uploads of ``keys`` (a listing page) by key, in one query on the (bucket, key) index."""
        if not keys:
            return {}
        with self._session() as conn:
            rows = conn.execute(f"{_SELECT} WHERE bucket = %s AND key = ANY(%s)", (bucket, list(keys))).fetchall()
        return {upload.key: upload for upload in map(Upload.from_row, rows)}

    def collection_digest(self, upload_id: uuid.UUID, generation: int) -> str | None:
        """The sequence collection digest of the generation, once the assembler stored its collection."""
        with self._session() as conn:
            collection = refget.collection_of_upload(conn, upload_id, generation)
        return collection.digest if collection else None

    def delete(self, upload_id: uuid.UUID) -> Upload | None:
        """The upload made a tombstone and its rows removed, in one commit under its row lock.

        A stage that holds the lock waits for this commit (the persister's batch, the assembler's
        finish), then finds the upload no longer in a state it works on and changes nothing. The
        generation's fields and the labels are cleared (no progress, no error, no result link, no
        description of what it was); the purge of its
        object and result documents is asked for (the watchdog's sweep does it).
        """
        values = {**GENERATION_RESET, "state": _target(DELETE)}
        with self._session() as conn, conn.transaction():
            row = conn.execute(f"{_SELECT} WHERE id = %s FOR UPDATE", (upload_id,)).fetchone()
            if row is None:
                return None
            current = Upload.from_row(row)
            if not DELETE.allows(current.state):
                return current  # deleted already: the same answer again
            _delete_rows(conn, upload_id)
            row = conn.execute(
                sql.SQL(
                    "UPDATE uploads SET {}, labels = '{{}}'::jsonb, deleted_at = clock_timestamp(), "
                    "purge_requested_at = clock_timestamp(), purged_at = NULL, updated_at = now() "
                    "WHERE id = %(id)s " + _RETURNING
                ).format(_assignments(values)),
                {**values, "id": upload_id},
            ).fetchone()
        assert row is not None
        metrics.ended(State.DELETED.value)
        return Upload.from_row(row)

    def in_flight(self, stall_after: timedelta) -> tuple[dict[str, int], int]:
        """Uploads some stage owes work, by state, and how many of them are stalled (``genobase status``)."""
        with self._session() as conn:
            rows = conn.execute(
                "SELECT state, count(*) AS n, count(*) FILTER (WHERE updated_at < now() - %s) AS stalled "
                "FROM uploads WHERE state = ANY(%s) GROUP BY state",
                (stall_after, sorted(s.value for s in LIVE)),
            ).fetchall()
        return {row["state"]: row["n"] for row in rows}, sum(row["stalled"] for row in rows)

    # --- the parser

    def claim(self, event: ObjectCreated, confirmed: bool) -> Claim:
        """Apply what an object-created event means (``decide_locked_claim``) under the key's row lock.

        Creates the upload of an object nobody registered; starts a new generation (dropping the old
        generation's rows) when the key was overwritten -- both only for an event the store confirmed
        (``confirmed``); recognises duplicate and stale events. For an owner whose keys are revoked,
        either becomes a generation in state ``revoked`` that is never parsed.
        """
        with self._session() as conn:
            claim = _claim(conn, event, confirmed)
        if claim.action is ClaimAction.REVOKED:
            metrics.ended(State.REVOKED.value, claim.upload.error_code)
        return claim

    def parsing(self, upload_id: uuid.UUID, generation: int) -> bool:
        """Whether the generation is still being parsed (a parse asks between batches)."""
        with self._session() as conn:
            row = conn.execute(
                "SELECT 1 AS ok FROM uploads WHERE id = %s AND generation = %s AND state = ANY(%s)",
                (upload_id, generation, _sources(PARSE_SHARD)),
            ).fetchone()
        return row is not None

    def draw_inflation(self, upload_id: uuid.UUID, generation: int, upto: int, quota: int) -> bool:
        """Let the generation's parse inflate up to ``upto`` bytes of gzip content, if its owner's quota
        has room: the owner's uploads together (this one counted at ``upto``) stay within ``quota``.

        Drawn ahead of use, under the owner's lock, so that parses of one owner running at once cannot
        overdraw it; a repeated parse of the same generation draws only beyond what it drew before. An
        upload without an owner, or of an admin key, is not held to it. False: no room (nothing changes).
        """
        with self._session() as conn, conn.transaction():
            row = conn.execute(
                "SELECT owner, inflated_bytes FROM uploads WHERE id = %s AND generation = %s FOR UPDATE",
                (upload_id, generation),
            ).fetchone()
            if row is None:
                return True  # replaced meanwhile: its parse's batches are dropped anyway
            if row["inflated_bytes"] >= upto:
                return True
            owner = row["owner"]
            if owner is not None and not keys.is_admin(conn, owner):
                _lock_owner(conn, owner)
                used = conn.execute(
                    "SELECT COALESCE(sum(inflated_bytes), 0) AS used FROM uploads WHERE owner = %s AND id <> %s",
                    (owner, upload_id),
                ).fetchone()
                assert used is not None
                if int(used["used"]) + upto > quota:
                    return False
            conn.execute("UPDATE uploads SET inflated_bytes = %s WHERE id = %s", (upto, upload_id))
        return True

    def settle_inflation(self, upload_id: uuid.UUID, generation: int, inflated: int) -> None:
        """Give back what a parse drew beyond what it inflated (only ever lowers: needs no owner lock)."""
        with self._session() as conn, conn.transaction():
            conn.execute(
                "UPDATE uploads SET inflated_bytes = LEAST(inflated_bytes, %s) WHERE id = %s AND generation = %s",
                (inflated, upload_id, generation),
            )

    @contextmanager
    def generation_lock(self, upload_id: uuid.UUID, stage: str) -> Iterator[bool]:
        """Holds the stage's advisory lock on the upload while the block runs; yields False if taken.

        A session advisory lock: one worker per upload and stage, released if the worker dies.
        """
        name = f"{stage}:{upload_id}"
        with self._session() as conn:
            row = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0)) AS ok", (name,)).fetchone()
            if not (row and row["ok"]):
                yield False
                return
            try:
                yield True
            finally:
                if not conn.closed and not conn.broken:  # a broken session released its locks when it ended
                    conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (name,))

    def start_parsing(self, upload_id: uuid.UUID, generation: int) -> bool:
        with self._session() as conn, conn.transaction():
            row = conn.execute(
                "UPDATE uploads SET state = %s, parsing_started_at = clock_timestamp(), updated_at = now() "
                "WHERE id = %s AND generation = %s AND state = ANY(%s) RETURNING id",
                (_target(START_PARSING), upload_id, generation, _sources(START_PARSING)),
            ).fetchone()
        return row is not None

    def save_shard_plan(
        self, upload_id: uuid.UUID, generation: int, shards: list[Shard], source_md5: str, source_sha256: str
    ) -> list[Shard] | None:
        """Record a generation's shards (and the object's digests, read while planning), once.

        Returns the plan in force -- this one, or the one a parser before it saved (the same bytes give
        the same plan) -- or None if the generation is no longer parsing.
        """
        with self._session() as conn, conn.transaction():
            row = conn.execute(
                "SELECT id FROM uploads WHERE id = %s AND generation = %s AND state = ANY(%s) FOR UPDATE",
                (upload_id, generation, _sources(PLAN_SHARDS)),
            ).fetchone()
            if row is None:
                return None
            existing = _shard_plan(conn, upload_id, generation)
            if existing:
                return existing
            with conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO upload_shards (upload_id, generation, {_SHARD_COLUMNS}) "
                    f"VALUES (%s, %s{', %s' * len(_SHARD_COLUMN_NAMES)})",
                    [
                        (upload_id, generation, *dataclasses.astuple(shard))  # the columns' order is the fields'
                        for shard in shards
                    ],
                )
            conn.execute(
                "UPDATE uploads SET source_md5 = %s, source_sha256 = %s, updated_at = now() WHERE id = %s",
                (source_md5, source_sha256, upload_id),
            )
        return shards

    def shard_plan(self, upload_id: uuid.UUID, generation: int) -> list[Shard]:
        """The generation's shards in order (empty for a generation parsed whole)."""
        with self._session() as conn:
            return _shard_plan(conn, upload_id, generation)

    def shard_to_parse(self, upload_id: uuid.UUID, generation: int, number: int) -> ShardToParse | None:
        """The upload, the shard and the plan's shard count, if its generation is still parsing (a
        request for a replaced or ended generation is stale)."""
        with self._session() as conn:
            row = conn.execute(
                f"{_SELECT} WHERE id = %s AND generation = %s AND state = ANY(%s)",
                (upload_id, generation, _sources(PARSE_SHARD)),
            ).fetchone()
            if row is None:
                return None
            shard = conn.execute(
                f"SELECT {_SHARD_COLUMNS} FROM upload_shards WHERE upload_id = %s AND generation = %s AND shard = %s",
                (upload_id, generation, number),
            ).fetchone()
            if shard is None:
                return None
            return ShardToParse(Upload.from_row(row), _shard(shard), _shard_count(conn, upload_id, generation))

    def fail(self, upload_id: uuid.UUID, generation: int | None, failure: Failure) -> bool:
        """Mark a generation failed and drop its rows; a no-op for a generation already replaced or done."""
        values = {**_failure_columns(failure), "state": _target(FAIL)}
        with self._session() as conn, conn.transaction():
            row = conn.execute(
                sql.SQL(
                    "UPDATE uploads SET {}, finished_at = clock_timestamp(), updated_at = now() "
                    "WHERE id = %(id)s AND (%(generation)s::int IS NULL OR generation = %(generation)s) "
                    "AND state = ANY(%(sources)s) RETURNING id"
                ).format(_assignments(values)),
                {**values, "id": upload_id, "generation": generation, "sources": _sources(FAIL)},
            ).fetchone()
            if row is not None:
                _delete_rows(conn, upload_id)
        failed = row is not None
        if failed:  # counted where it is recorded: once, whichever stage failed it
            metrics.ended(State.FAILED.value, failure.code.value)
        return failed

    def requeue_failed(self, upload_id: uuid.UUID) -> Upload | None:
        """Make a failed upload parseable again (same generation; its rows went when it failed)."""
        values = {**_failure_columns(None), "finished_at": None, "state": _target(REQUEUE)}
        with self._session() as conn, conn.transaction():
            row = conn.execute(
                sql.SQL(
                    "UPDATE uploads SET {}, updated_at = now() "
                    "WHERE id = %(id)s AND state = ANY(%(sources)s) AND etag IS NOT NULL " + _RETURNING
                ).format(_assignments(values)),
                {**values, "id": upload_id, "sources": _sources(REQUEUE)},
            ).fetchone()
        return Upload.from_row(row) if row else None

    def retry(self, upload_id: uuid.UUID, etag: str, quotas: Quotas | None = None) -> Upload | None:
        """Start a failed upload again as a new generation of the same object (``RETRY``), if it is
        still failed and its etag is ``etag`` (the one the store shows); None otherwise: of two
        retries at once, one makes the generation and the other finds it no longer failed.

        With ``quotas`` (not an admin's upload), only while the owner has room for one more upload in
        flight (``QuotaExceeded`` if not), decided under the owner's lock as a registration is.
        """
        values = {**GENERATION_RESET, "state": _target(RETRY)}
        with self._session() as conn, conn.transaction():
            row = conn.execute(
                f"{_SELECT} WHERE id = %s AND state = ANY(%s) AND etag = %s FOR UPDATE",
                (upload_id, _sources(RETRY), etag),
            ).fetchone()
            if row is None:
                return None
            owner = row["owner"]
            if quotas is not None and owner is not None and not keys.is_admin(conn, owner):
                _lock_owner(conn, owner)
                refusal = retry_quota_refusal(_owner_usage(conn, owner), quotas)
                if refusal is not None:
                    raise QuotaExceeded(refusal)
            _delete_rows(conn, upload_id)  # gone when it failed; a retry starts from none in any case
            updated = conn.execute(
                sql.SQL(
                    "UPDATE uploads SET {}, generation = generation + 1, updated_at = now() WHERE id = %(id)s "
                    + _RETURNING
                ).format(_assignments(values)),
                {**values, "id": upload_id},
            ).fetchone()
        assert updated is not None
        return Upload.from_row(updated)

    def finish_validation(self, upload_id: uuid.UUID, generation: int, validation: Validation) -> bool:
        """The generation was validated: its report recorded, the upload done (no rows, no result)."""
        with self._session() as conn, conn.transaction():
            row = conn.execute(
                "UPDATE uploads SET state = %s, validation = %s, format = %s, records_done = %s, records_total = %s, "
                "bytes_done = %s, source_md5 = %s, source_sha256 = %s, parsed_at = clock_timestamp(), "
                "finished_at = clock_timestamp(), updated_at = now() "
                "WHERE id = %s AND generation = %s AND state = ANY(%s) AND mode = %s RETURNING id",
                (
                    _target(FINISH_VALIDATION),
                    Jsonb(validation.to_json()),
                    validation.format,
                    validation.records,
                    validation.records,
                    validation.bytes,
                    validation.source_md5,
                    validation.source_sha256,
                    upload_id,
                    generation,
                    _sources(FINISH_VALIDATION),
                    Mode.VALIDATE.value,
                ),
            ).fetchone()
        finished = row is not None
        if finished:
            metrics.ended(State.DONE.value)
        return finished

    # --- the persister

    def store_batch(self, batch: SequenceBatch) -> PersistOutcome:
        """COPY one batch in, exactly once: the batch number is inserted in the same transaction."""
        with self._session() as conn, conn.transaction():
            upload = _lock_live(conn, batch.upload_id, batch.generation)
            if upload is None:
                return PersistOutcome(False, False)
            fresh = conn.execute(
                "INSERT INTO upload_batches (upload_id, generation, shard, batch_no, records_from, records_through) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING batch_no",
                (
                    batch.upload_id,
                    batch.generation,
                    batch.shard,
                    batch.batch_no,
                    batch.records_from,
                    batch.records_through,
                ),
            ).fetchone()
            if fresh is None:
                return PersistOutcome(False, upload.complete)
            sequences.copy_batch(conn, batch)
            # A whole parse's offsets only grow; a shard's batch adds its own bytes (once: only a fresh
            # batch gets here), capped at the object's size (bgzip shards share a block at their edge).
            row = conn.execute(
                "UPDATE uploads SET batches_done = batches_done + 1, records_done = records_done + %(records)s, "
                "bytes_done = CASE WHEN %(added)s::bigint IS NULL THEN GREATEST(bytes_done, %(offset)s) "
                "ELSE LEAST(bytes_done + %(added)s, COALESCE(bytes_total, bytes_done + %(added)s)) END, "
                "updated_at = now() WHERE id = %(id)s " + _RETURNING,
                {
                    "records": len(batch.records),
                    "added": batch.source_bytes,
                    "offset": batch.source_offset,
                    "id": batch.upload_id,
                },
            ).fetchone()
            outcome = _assemble_if_complete(conn, row)
            return replace(outcome, first_batch=batch.shard == 0 and batch.batch_no == 0)

    def record_parse_completed(self, done: ParseCompleted) -> PersistOutcome:
        with self._session() as conn, conn.transaction():
            upload = _lock_live(conn, done.upload_id, done.generation)
            if upload is None:
                return PersistOutcome(False, False)
            if done.shard_count > 1:
                totals = _record_shard_parsed(conn, done)
                if totals is None:  # other shards still being parsed
                    conn.execute("UPDATE uploads SET updated_at = now() WHERE id = %s", (done.upload_id,))
                    return PersistOutcome(True, False)
                batches, records = totals
                row = conn.execute(
                    "UPDATE uploads SET batches_total = %s, records_total = %s, bytes_done = bytes_total, format = %s, "
                    "parsed_at = clock_timestamp(), state = CASE WHEN state = ANY(%s) THEN %s ELSE state END, "
                    "updated_at = now() WHERE id = %s " + _RETURNING,
                    (batches, records, done.format, _sources(FINISH_PARSING), _target(FINISH_PARSING), done.upload_id),
                ).fetchone()
                return _assemble_if_complete(conn, row)
            row = conn.execute(
                "UPDATE uploads SET batches_total = %s, records_total = %s, bytes_done = %s, format = %s, "
                "source_md5 = %s, source_sha256 = %s, "
                "parsed_at = clock_timestamp(), state = CASE WHEN state = ANY(%s) THEN %s ELSE state END, "
                "updated_at = now() WHERE id = %s " + _RETURNING,
                (
                    done.batch_count,
                    done.record_count,
                    done.source_bytes,
                    done.format,
                    done.source_md5,
                    done.source_sha256,
                    _sources(FINISH_PARSING),
                    _target(FINISH_PARSING),
                    done.upload_id,
                ),
            ).fetchone()
            return _assemble_if_complete(conn, row)

    # --- the assembler

    def assembling(self, upload_id: uuid.UUID, generation: int) -> Upload | None:
        """The generation, if the assembler may work on it now (its parse may still be going on)."""
        with self._session() as conn:
            return _assembling(conn, upload_id, generation)

    def start_assembly(self, upload_id: uuid.UUID, generation: int) -> None:
        """The assembler began following the generation (its stage time; kept if already set)."""
        with self._session() as conn, conn.transaction():
            conn.execute(
                "UPDATE uploads SET assembly_started_at = COALESCE(assembly_started_at, clock_timestamp()) "
                "WHERE id = %s AND generation = %s AND state = ANY(%s)",
                (upload_id, generation, _sources(ASSEMBLE)),
            )

    def committed_batches(
        self, upload_id: uuid.UUID, generation: int, from_shard: int, from_batch: int
    ) -> tuple[Upload | None, list[CommittedBatch]]:
        """The generation as it is now (None once the assembler may no longer work on it) and its
        committed batches from ``(from_shard, from_batch)`` on, in order.

        The upload row is read first: when it says every batch is committed, the batches read after it
        are all of them.
        """
        with self._session() as conn:
            upload = _assembling(conn, upload_id, generation)
            if upload is None:
                return None, []
            rows = conn.execute(
                "SELECT shard, batch_no, records_from, records_through FROM upload_batches "
                "WHERE upload_id = %s AND generation = %s AND (shard, batch_no) >= (%s, %s) ORDER BY shard, batch_no",
                (upload_id, generation, from_shard, from_batch),
            ).fetchall()
        return upload, [
            CommittedBatch(row["shard"], row["batch_no"], row["records_from"], row["records_through"]) for row in rows
        ]

    def result_pieces(
        self, upload_id: uuid.UUID, first: int, end: int, *, one_batch: bool
    ) -> Generator[ResultPiece, None, None]:
        """The records of ``[first, end)`` and their parts, over two sessions at once (records and parts)."""
        with self._session() as records_conn, self._parts() as parts_conn:
            yield from sequences.iter_result_pieces(
                records_conn, parts_conn, upload_id, first, end, one_batch=one_batch
            )

    def name_counts(self, upload_id: uuid.UUID) -> NameCounts:
        """On a session of its own: the assembler runs it on another thread beside its streaming."""
        with self._own() as conn:
            return sequences.name_counts(conn, upload_id)

    def record_assembly_progress(self, upload_id: uuid.UUID, generation: int, records: int) -> None:
        """On a session of its own: the assembler's main sessions may be busy streaming."""
        with self._progress() as conn, conn.transaction():
            conn.execute(
                "UPDATE uploads SET records_assembled = %s, updated_at = now() "
                "WHERE id = %s AND generation = %s AND state = ANY(%s)",
                (records, upload_id, generation, _sources(RECORD_ASSEMBLY_PROGRESS)),
            )

    def sorted_arrays(self, upload_id: uuid.UUID) -> SortedArrays:
        """Each array on a session and a thread of its own, the two sorts at once (the assembler
        runs this on another thread beside its streaming)."""

        def digest(name: str) -> str:
            with self._own() as conn:
                return refget.sorted_array_digest(conn, name, upload_id)

        with ThreadPoolExecutor(max_workers=len(refget.SORTED_ARRAYS), thread_name_prefix="sorted") as pool:
            digests = {name: pool.submit(carry_context(digest), name) for name in refget.SORTED_ARRAYS}
            return SortedArrays(**{name: future.result() for name, future in digests.items()})

    def finish_assembly(
        self,
        upload_id: uuid.UUID,
        generation: int,
        result: ResultLocation,
        counts: NameCounts,
        collection: Collection,
    ) -> bool:
        """The generation is done: its result, its counts and its sequence collection, in one commit."""
        with self._session() as conn, conn.transaction():
            row = conn.execute(
                "UPDATE uploads SET state = %s, result_bucket = %s, result_key = %s, result_size = %s, "
                "result_sha256 = %s, result_records = %s, records_assembled = %s, duplicate_names = %s, "
                "empty_sequences = %s, "
                "finished_at = clock_timestamp(), updated_at = now() "
                "WHERE id = %s AND generation = %s AND state = ANY(%s) RETURNING id",
                (
                    _target(FINISH),
                    result.bucket,
                    result.key,
                    result.size,
                    result.sha256,
                    result.records,
                    result.records,
                    counts.duplicate_names,
                    counts.empty_sequences,
                    upload_id,
                    generation,
                    _sources(FINISH),
                ),
            ).fetchone()
            if row is not None:
                refget.store_collection(conn, upload_id, generation, collection)
            else:  # deleted while its document was written: the purge removes the document too
                _reopen_purge(conn, upload_id)
        finished = row is not None
        if finished:
            metrics.ended(State.DONE.value)
        return finished

    def reopen_purge(self, upload_id: uuid.UUID) -> bool:
        """Ask again for the purge of a deleted upload; False for one that is not deleted."""
        with self._session() as conn, conn.transaction():
            return _reopen_purge(conn, upload_id)

    # --- the watchdog

    def purges_owed(self, limit: int = 100) -> list[Upload]:
        """Deleted uploads whose purge was asked for and not done since, the oldest request first
        (through the partial index of migration 0021: the tombstones themselves are not read)."""
        with self._session() as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE state = %s AND purged_at IS NULL ORDER BY purge_requested_at LIMIT %s",
                (State.DELETED.value, limit),
            ).fetchall()
        return [Upload.from_row(row) for row in rows]

    def mark_purged(self, upload_id: uuid.UUID, requested_at: datetime) -> bool:
        """The purge asked for at ``requested_at`` is done: unless another was asked for since."""
        with self._session() as conn, conn.transaction():
            row = conn.execute(
                "UPDATE uploads SET purged_at = clock_timestamp() WHERE id = %s AND state = %s "
                "AND purged_at IS NULL AND purge_requested_at = %s RETURNING id",
                (upload_id, State.DELETED.value, requested_at),
            ).fetchone()
        return row is not None

    def pick_up_stalled(self, after: timedelta, reissue: Callable[[Upload], None], *, limit: int = 100) -> list[Upload]:
        """Issue the stage message of every upload that made no progress for ``after``, once per period.

        A stalled upload is one whose message was lost or whose worker died holding it; the consumers
        are idempotent, so issuing the message again is safe even when the stage was merely slow.
        ``reissue`` runs under the row lock, before the pick-up is recorded: a failed publish leaves
        the upload to the next sweep. An upload stuck in ``persisting`` lost a batch: it goes back to
        ``parsing`` so that the re-parse is accepted (the persister skips the batches it has).
        """
        picked = []
        with self._session() as conn, conn.transaction():
            rows = conn.execute(
                f"{_SELECT} WHERE state = ANY(%s) AND etag IS NOT NULL "
                "AND updated_at < now() - %s AND (picked_up_at IS NULL OR picked_up_at < now() - %s) "
                "ORDER BY updated_at LIMIT %s FOR UPDATE SKIP LOCKED",
                (_sources(PICK_UP_STALLED), after, after, limit),
            ).fetchall()
            for row in rows:
                upload = Upload.from_row(row)
                reissue(upload)
                updated = conn.execute(
                    "UPDATE uploads SET pickups = pickups + 1, picked_up_at = now(), "
                    "state = CASE WHEN state = ANY(%s) THEN %s ELSE state END WHERE id = %s " + _RETURNING,
                    (_sources(RETRY_LOST_BATCH), _target(RETRY_LOST_BATCH), upload.id),
                ).fetchone()
                assert updated is not None
                picked.append(Upload.from_row(updated))
        return picked

    def remove_validated_objects(self, remove: Callable[[Upload], None], *, limit: int = 100) -> list[Upload]:
        """Remove the object of every validation that ended (done or failed), once: ``remove`` runs
        under the row lock, before the removal is recorded, so a failed removal is tried again on the
        next sweep; a new object on the key (a new generation) meanwhile is waited for by the lock."""
        removed = []
        with self._session() as conn, conn.transaction():
            rows = conn.execute(
                f"{_SELECT} WHERE {_VALIDATED_OBJECTS} ORDER BY updated_at LIMIT %s FOR UPDATE SKIP LOCKED", (limit,)
            ).fetchall()
            for row in rows:
                upload = Upload.from_row(row)
                remove(upload)
                updated = conn.execute(
                    f"UPDATE uploads SET object_removed_at = clock_timestamp() WHERE id = %s {_RETURNING}",
                    (upload.id,),
                ).fetchone()
                assert updated is not None
                removed.append(Upload.from_row(updated))
        return removed

    def expire_tickets(self, grace: timedelta, *, limit: int = 1000) -> list[Upload]:
        """End every registered upload whose ticket is over by more than ``grace`` with no object written.

        The same rule as ``Upload.ticket_expired``; an object that still comes afterwards starts a
        generation like any other (``NEW_GENERATION`` applies to every state).
        """
        with self._session() as conn, conn.transaction():
            rows = conn.execute(
                "UPDATE uploads SET state = %s, updated_at = now() WHERE id IN ("
                "  SELECT id FROM uploads WHERE state = ANY(%s) AND etag IS NULL AND ticket_expires_at < now() - %s"
                "  ORDER BY ticket_expires_at LIMIT %s FOR UPDATE SKIP LOCKED"
                ") AND state = ANY(%s) " + _RETURNING,
                (_target(EXPIRE), _sources(EXPIRE), grace, limit, _sources(EXPIRE)),
            ).fetchall()
        expired = [Upload.from_row(row) for row in rows]
        for _ in expired:
            metrics.ended(State.EXPIRED.value)
        return expired

    def revoke_tickets(self, *, limit: int = 1000) -> list[Upload]:
        """End every registered upload still waiting for its object whose owner's keys are all revoked.

        Each gets the code ``owner_revoked`` and an error id of its own; an object that still comes
        through the ticket's URL is refused at its claim (``REFUSE_OBJECT``).
        """
        failure = _refused_failure()
        with self._session() as conn, conn.transaction():
            rows = conn.execute(
                "UPDATE uploads SET state = %(target)s, error_code = %(code)s, error_message = %(message)s, "
                "error_id = substr(md5(random()::text || id::text), 1, 16), finished_at = clock_timestamp(), "
                "updated_at = now() WHERE id IN ("
                "  SELECT id FROM uploads WHERE state = ANY(%(sources)s) "
                f"  AND owner IN (SELECT owner FROM ({keys.REVOKED_OWNERS}) revoked)"
                "  ORDER BY created_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
                ") AND state = ANY(%(sources)s) " + _RETURNING,
                {
                    "target": _target(REVOKE_TICKET),
                    "sources": _sources(REVOKE_TICKET),
                    "code": failure.code.value,
                    "message": failure.message,
                    "limit": limit,
                },
            ).fetchall()
        revoked = [Upload.from_row(row) for row in rows]
        for upload in revoked:
            metrics.ended(State.REVOKED.value, upload.error_code)
        return revoked

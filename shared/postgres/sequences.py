"""Records and parts in and out of Postgres by binary ``COPY``, one bounded batch or part at a time.

The column and type lists come from ``shared/domain/record_schema.py``. Text kept as ``bytea`` (residues,
qualities: ASCII the parser validated) is encoded on the way in and decoded on the way out, except
the residues read back, which stay bytes all the way into the result document.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack
from itertools import repeat
from typing import Any

from psycopg import sql
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb
from psycopg.types.string import BytesBinaryDumper

from shared.domain.messages import SequenceBatch
from shared.domain.record_schema import PART, RECORD, Record, ResultPiece, Schema
from shared.domain.uploads import NameCounts
from shared.postgres import binary_copy
from shared.postgres.connection import Connection


def _ascii_column(values: list[str | None]) -> list[bytes | None]:
    return [None if v is None else v.encode("ascii") for v in values]


def _jsonb_column(values: list[Any]) -> list[Jsonb | None]:
    return [None if v is None else Jsonb(v) for v in values]


# How a column of each stored type is written by COPY (as it is where absent). Whole columns at a
# time: one comprehension per column instead of a Python call per value.
_ENCODERS: dict[str, Callable[[list[Any]], list[Any]]] = {"bytea": _ascii_column, "jsonb": _jsonb_column}


def _column_list(schema: Schema) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(name) for name in schema.fields)


# Read back: qualities are decoded, the inline residues are handed on as bytes (see ResultPiece).
_RESIDUES = RECORD.fields.index("residues")
_PART_COUNT = RECORD.fields.index("part_count")
_ASCII_COLUMNS = tuple(
    i for i, name in enumerate(RECORD.fields) if RECORD.columns[name].sql == "bytea" and i != _RESIDUES
)
# Hot (once per row): tuple.__new__ builds the NamedTuples without their Python-level __new__.
_new_tuple = tuple.__new__


def _copy_in(conn: Connection, table: str, schema: Schema, upload_id: uuid.UUID, columns: list[list[Any]]) -> None:
    """One batch's rows, given column by column in the schema's order, by binary ``COPY``."""
    statement = sql.SQL("COPY {} (upload_id, {}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), _column_list(schema)
    )
    with conn.cursor() as cur:
        if binary_copy.accelerator is not None:
            # The whole batch formatted in one C call: the same bytes as write_row's below.
            payload = binary_copy.rows(upload_id, columns, schema)
            with cur.copy(statement) as copy:
                copy.write(binary_copy.SIGNATURE)
                copy.write(memoryview(payload))  # split by psycopg into slices: views, not copies
                copy.write(binary_copy.TRAILER)
            return
        encoded = [
            _ENCODERS[schema.columns[name].sql](column) if schema.columns[name].sql in _ENCODERS else column
            for name, column in zip(schema.fields, columns, strict=True)
        ]
        # By type, psycopg dumps bytea with a pure-Python dumper (dbapi20's, which unwraps Binary
        # objects); its C dumper for bytes makes a FASTQ batch's COPY ~20 % cheaper.
        cur.adapters.register_dumper(bytes, BytesBinaryDumper)
        with cur.copy(statement) as copy:
            copy.set_types(["uuid", *schema.sql_types])
            write = copy.write_row
            for row in zip(repeat(upload_id), *encoded):
                write(row)


def copy_batch(conn: Connection, batch: SequenceBatch) -> None:
    # Straight from the message's columns: no row object per record on this path.
    if len(batch.parts):
        _copy_in(conn, "sequence_parts", PART, batch.upload_id, [batch.parts.column(f) for f in PART.fields])
    if len(batch.records):
        _copy_in(conn, "sequence_records", RECORD, batch.upload_id, [batch.records.column(f) for f in RECORD.fields])


# Reading an upload back must be two plain index scans in key order, streamed: never a sort
# (which would buffer or spill the whole upload), a JIT compile or parallel workers on two cores.
_STREAMING_READ = (
    "SET enable_sort = off; SET enable_bitmapscan = off; SET jit = off; SET max_parallel_workers_per_gather = 0"
)


def iter_result_pieces(
    records_conn: Connection,
    parts_conn: Connection,
    upload_id: uuid.UUID,
    first: int = 0,
    end: int | None = None,
    *,
    one_batch: bool = False,
) -> Generator[ResultPiece, None, None]:
    """Every record with ordinal in ``[first, end)`` with its sequence, in order: one part in memory
    at a time (the assembler reads an upload window by window, as its batches are committed).

    Parts are streamed by ``COPY TO``, in primary-key order, and merged here with the records using
    each record's ``part_count``. The records come on the other connection: streamed by ``COPY TO``
    as well, or, with ``one_batch`` (the caller's promise that the window's records are those of a
    single batch, so bounded by the parser's batch bytes), fetched at once by one binary query --
    psycopg hands a ``COPY`` over one row at a time through a few Python generators, which cost
    the assembler ~4 µs per record more than one result loaded in C (~2.8 against ~7 µs).
    """
    for conn in (records_conn, parts_conn):
        conn.execute(_STREAMING_READ)
    window = sql.SQL("upload_id = {} AND ordinal >= {}").format(sql.Literal(upload_id), sql.Literal(first))
    if end is not None:
        window = sql.SQL("{} AND ordinal < {}").format(window, sql.Literal(end))
    records_query = sql.SQL("SELECT {} FROM sequence_records WHERE {} ORDER BY upload_id, ordinal").format(
        _column_list(RECORD), window
    )
    parts_query = sql.SQL(
        "COPY (SELECT {} FROM sequence_parts WHERE {} ORDER BY upload_id, ordinal, part_no) TO STDOUT (FORMAT BINARY)"
    ).format(_column_list(PART), window)
    with ExitStack() as stack:
        rcur = stack.enter_context(records_conn.cursor(binary=True, row_factory=tuple_row))
        record_rows: Iterator[tuple[Any, ...]]
        if one_batch:
            record_rows = iter(rcur.execute(records_query).fetchall())
        else:
            records = stack.enter_context(
                rcur.copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(records_query))
            )
            records.set_types(list(RECORD.sql_types))
            record_rows = records.rows()
        parts = stack.enter_context(stack.enter_context(parts_conn.cursor()).copy(parts_query))
        parts.set_types(list(PART.sql_types))
        part_rows = parts.rows()
        for row in record_rows:
            values = list(row)
            inline: bytes | None = values[_RESIDUES]
            values[_RESIDUES] = None
            for i in _ASCII_COLUMNS:
                if values[i] is not None:
                    values[i] = values[i].decode("ascii")
            record: Record = _new_tuple(Record, values)
            parts_n = values[_PART_COUNT]
            if parts_n == 0:
                yield _new_tuple(ResultPiece, (record, 0, inline))
                continue
            for expected in range(parts_n):
                part_ordinal, part_no, residues = next(part_rows)
                if part_ordinal != record.ordinal or part_no != expected:
                    raise RuntimeError(
                        f"stored parts out of step: record {record.ordinal} part {expected}, "
                        f"got {part_ordinal}/{part_no}"
                    )
                yield _new_tuple(ResultPiece, (record, part_no, residues))
        if next(part_rows, None) is not None:
            raise RuntimeError("stored parts left over after the last record")


def name_counts(conn: Connection, upload_id: uuid.UUID) -> NameCounts:
    """Duplicate names and empty sequences of an upload's stored records (a sort of every name,
    in byte order: the same distinct names under any deterministic collation, and the cheapest sort)."""
    row = conn.execute(
        'SELECT count(*) - count(DISTINCT seq_id COLLATE "C") AS duplicates, '
        "count(*) FILTER (WHERE length = 0) AS empty "
        "FROM sequence_records WHERE upload_id = %s",
        (upload_id,),
    ).fetchone()
    assert row is not None
    return NameCounts(int(row["duplicates"]), int(row["empty"]))

"""An upload's records read back for the intake's records API (``RecordReads``), a group at a time.

Each read is one statement on a session borrowed from the intake's pool and given back at once: a
page that streams to a slow client holds a session only while one group of records, or one span of
a long record's parts, is fetched. Every statement joins the upload's row and reads nothing unless
the upload is ``done`` at the generation the page began with, in the statement's own snapshot: a
page never mixes the records of two generations (``RecordsChanged`` instead).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from psycopg import sql
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from shared.domain.reads import RecordsChanged, RecordSize
from shared.domain.record_schema import RECORD, Record
from shared.domain.uploads import State
from shared.postgres.connection import Connection

_DONE = State.DONE.value
_RESIDUES = RECORD.fields.index("residues")
_QUALITY = RECORD.fields.index("quality")
# The stored record's columns in schema order, the payloads only when asked for (a page that does
# not show residues reads none).
_COLUMNS = sql.SQL(", ").join(
    sql.SQL("CASE WHEN %(residues)s THEN r.residues END")
    if name == "residues"
    else sql.SQL("CASE WHEN %(quality)s THEN r.quality END")
    if name == "quality"
    else sql.SQL("r.{}").format(sql.Identifier(name))
    for name in RECORD.fields
)
# What reading a row holds, from the row's headers: octet_length of an out-of-line value reads its
# TOAST pointer, not the value. The attributes (jsonb) are measured as the text they are sent as:
# their stored size is compressed, and a highly compressible row would be counted a hundredth of
# what it holds once read.
_SIZES = (
    "SELECT r.ordinal, r.part_count, "
    "  octet_length(r.gene_name) + octet_length(r.seq_id) + octet_length(r.description) "
    "  + coalesce(octet_length(r.attributes::text), 0) "
    "  + CASE WHEN %(residues)s THEN coalesce(octet_length(r.residues), 0) ELSE 0 END "
    "  + CASE WHEN %(quality)s THEN coalesce(octet_length(r.quality), 0) ELSE 0 END AS bytes "
    "FROM uploads u LEFT JOIN LATERAL ("
    "  SELECT * FROM sequence_records s WHERE s.upload_id = u.id AND s.ordinal >= %(first)s "
    "  AND (%(prefix)s::text IS NULL OR starts_with(s.seq_id, %(prefix)s::text)) "
    "  ORDER BY s.ordinal LIMIT %(limit)s"
    ") r ON true "
    "WHERE u.id = %(upload)s AND u.generation = %(generation)s AND u.state = %(done)s "
    "ORDER BY r.ordinal"
)
_PARTS = (
    "SELECT p.residues FROM uploads u JOIN sequence_parts p ON p.upload_id = u.id "
    "WHERE u.id = %(upload)s AND u.generation = %(generation)s AND u.state = %(done)s "
    "AND p.ordinal = %(ordinal)s AND p.part_no BETWEEN %(first)s AND %(last)s ORDER BY p.part_no"
)


class PostgresRecords:
    """``RecordReads`` over an HTTP service's pool of autocommit sessions."""

    def __init__(self, pool: ConnectionPool[Connection]) -> None:
        self._pool = pool

    def record_sizes(
        self,
        upload_id: uuid.UUID,
        generation: int,
        first: int,
        limit: int,
        name_prefix: str | None,
        *,
        residues: bool,
        quality: bool,
    ) -> list[RecordSize]:
        params = {
            "upload": upload_id,
            "generation": generation,
            "done": _DONE,
            "first": first,
            "limit": limit,
            "prefix": name_prefix,
            "residues": residues,
            "quality": quality,
        }
        with self._pool.connection() as conn:
            rows = conn.execute(_SIZES, params).fetchall()
        if not rows:  # not even the upload's own row: it is not done at this generation
            raise RecordsChanged(f"upload {upload_id} is not done at generation {generation}")
        return [
            RecordSize(row["ordinal"], row["part_count"], row["bytes"]) for row in rows if row["ordinal"] is not None
        ]

    def read_records(
        self, upload_id: uuid.UUID, generation: int, ordinals: Sequence[int], *, residues: bool, quality: bool
    ) -> list[Record]:
        if not ordinals:
            return []
        query = sql.SQL(
            "SELECT {} FROM uploads u JOIN sequence_records r ON r.upload_id = u.id "
            "WHERE u.id = %(upload)s AND u.generation = %(generation)s AND u.state = %(done)s "
            "AND r.ordinal = ANY(%(ordinals)s) ORDER BY r.ordinal"
        ).format(_COLUMNS)
        params = {
            "upload": upload_id,
            "generation": generation,
            "done": _DONE,
            "ordinals": list(ordinals),
            "residues": residues,
            "quality": quality,
        }
        with self._pool.connection() as conn, conn.cursor(binary=True, row_factory=tuple_row) as cur:
            rows = cur.execute(query, params).fetchall()
        if len(rows) != len(ordinals):
            raise RecordsChanged(f"upload {upload_id} is not done at generation {generation}")
        records = []
        for row in rows:
            values = list(row)
            for i in (_RESIDUES, _QUALITY):  # ASCII the parser validated, kept as bytea
                if values[i] is not None:
                    values[i] = bytes(values[i]).decode("ascii")
            records.append(Record._make(values))
        return records

    def read_parts(
        self, upload_id: uuid.UUID, generation: int, ordinal: int, first_part: int, last_part: int
    ) -> list[bytes]:
        params = {
            "upload": upload_id,
            "generation": generation,
            "done": _DONE,
            "ordinal": ordinal,
            "first": first_part,
            "last": last_part,
        }
        with self._pool.connection() as conn, conn.cursor(binary=True, row_factory=tuple_row) as cur:
            rows = cur.execute(_PARTS, params).fetchall()
        if len(rows) != last_part - first_part + 1:
            raise RecordsChanged(f"upload {upload_id} is not done at generation {generation}")
        return [bytes(row[0]) for row in rows]

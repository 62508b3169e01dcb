"""Reading stored sequences and collections back (the read API's store), and the collection digests.

``PostgresReads`` is the read API's store (the ports of ``shared/domain/read_ports.py``): it owns
the pool of sessions its reads take, one session per query, given back at once. A sequence is
found by content (MD5 or ``SQ.`` digest) among the records of finished uploads; the same sequence
stored by several uploads is one sequence. Every read takes ``owner``: the name of the owner whose
uploads the reader sees, or None for all of them (an admin key, or public reading); another
owner's sequence or collection is then not found, as one that does not exist. A slice reads only
the stored parts it overlaps, and only their overlapping bytes (``substring`` on an uncompressed,
out-of-line column fetches just the chunks it needs), a few parts per query (``read_span``): a
stream takes a pooled session for each span only, never for as long as a client reads. A
collection's arrays are the records of one finished generation in file order; the sorted ones are
sorted by Postgres, on disk if need be.

The module's functions over a session are the writers' side (``shared/postgres/uploads.py``): a
collection digested from the stored records, stored, and read back for an upload's status.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from operator import itemgetter
from typing import Any

from psycopg import sql
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from shared.domain.reads import ReadSpan, SequenceChanged, StoredCollection, StoredSequence
from shared.domain.seqcol import ArrayDigest, Collection, CollectionDigester, SortedArrays
from shared.domain.uploads import State
from shared.postgres.connection import Connection, request_pool
from shared.runtime.settings import Settings

# The canonical JSON of a name-length pair, its GA4GH digest and that of a sequence, in SQL: the
# database sorts millions of them without Python holding any (names carry no control characters:
# the parser refuses them, so to_json's escaping is RFC 8785's).
_PAIR_DIGEST = (
    "translate(encode(substring(sha512(convert_to("
    "'{\"length\":' || length || ',\"name\":' || to_json(seq_id)::text || '}', 'UTF8')) FROM 1 FOR 24), "
    "'base64'), '+/', '-_')"
)
_DONE = State.DONE.value
# Whose uploads a read sees: ``%(owner)s`` None is everyone's (admin, public reading).
_VISIBLE = "(%(owner)s::text IS NULL OR u.owner = %(owner)s)"


# --- collections ----------------------------------------------------------------------------------


def digest_collection(conn: Connection, upload_id: uuid.UUID) -> Collection:
    """The collection of an upload's records as they are now (every record read in order here)."""
    digester = CollectionDigester()
    with conn.transaction():  # server-side cursors live in a transaction
        with conn.cursor(name=f"collection-{upload_id}") as rows:  # streamed, not fetched whole
            rows.itersize = 10_000
            rows.execute(
                "SELECT seq_id, length, refget FROM sequence_records WHERE upload_id = %s ORDER BY ordinal",
                (upload_id,),
            )
            while batch := rows.fetchmany(10_000):
                digester.add_many(
                    [row["seq_id"] for row in batch], [row["length"] for row in batch], [row["refget"] for row in batch]
                )
        return digester.complete(sorted_arrays(conn, upload_id))


# The collection's two sorted arrays, each sorted by Postgres (on disk if need be), by ``COLLATE
# "C"``: the seqcol arrays are in the digests' byte order, which the database's own collation need
# not be (en_US.UTF-8 under glibc or ICU puts ``a`` before ``B`` and weighs ``-`` and ``_`` last);
# and byte order is the cheapest sort there is.
SORTED_ARRAYS: dict[str, str] = {
    "sorted_name_length_pairs": (
        "SELECT v FROM (SELECT coalesce(pair_digest, "
        + _PAIR_DIGEST.replace("{", "{{").replace("}", "}}")  # braces kept through sql.SQL.format
        + ") AS v FROM sequence_records WHERE upload_id = {upload}) pairs "
        'ORDER BY v COLLATE "C"'
    ),
    "sorted_sequences": 'SELECT refget FROM sequence_records WHERE upload_id = {upload} ORDER BY refget COLLATE "C"',
}
SORTED_CHUNK = 10_000  # elements joined and hashed at a time
# What every element is: a base64url digest, with "SQ." before a sequence's (joined by '","').
_DIGESTS = re.compile(r'[A-Za-z0-9_.\-",]*\Z')


def sorted_array_digest(conn: Connection, name: str, upload_id: uuid.UUID) -> str:
    """The seqcol digest of one of ``SORTED_ARRAYS``, streamed out of Postgres by a server-side cursor.

    Its elements are digests, their own canonical JSON once quoted: they are fetched, joined and
    hashed ten thousand at a time, never one by one (a million-read upload's arrays took seconds of
    the assembler's CPU, after every batch was committed). Anything else in them is a damaged store.
    """
    array = ArrayDigest()
    query = sql.SQL(SORTED_ARRAYS[name]).format(upload=sql.Literal(upload_id))
    with conn.transaction(), conn.cursor(name=f"{name}-{uuid.uuid4().hex}", row_factory=tuple_row) as cur:
        cur.execute(query)
        while rows := cur.fetchmany(SORTED_CHUNK):
            joined = '","'.join(map(itemgetter(0), rows))
            if not _DIGESTS.match(joined) or joined.count('"') != 2 * (len(rows) - 1):  # no quote but '","'s
                raise ValueError(f"{name}: an element that is not a digest")
            array.add_joined(b'"' + joined.encode("ascii") + b'"', len(rows))
    return array.digest()


def sorted_arrays(conn: Connection, upload_id: uuid.UUID) -> SortedArrays:
    """Both sorted arrays' digests, one after the other on one session (``PostgresUploads``
    runs them at once on two)."""
    return SortedArrays(**{name: sorted_array_digest(conn, name, upload_id) for name in SORTED_ARRAYS})


def store_collection(conn: Connection, upload_id: uuid.UUID, generation: int, collection: Collection) -> None:
    conn.execute(
        "INSERT INTO collections (upload_id, generation, digest, names, lengths, sequences, name_length_pairs, "
        "sorted_name_length_pairs, sorted_sequences, count) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (upload_id) DO UPDATE SET generation = EXCLUDED.generation, digest = EXCLUDED.digest, "
        "names = EXCLUDED.names, lengths = EXCLUDED.lengths, sequences = EXCLUDED.sequences, "
        "name_length_pairs = EXCLUDED.name_length_pairs, "
        "sorted_name_length_pairs = EXCLUDED.sorted_name_length_pairs, "
        "sorted_sequences = EXCLUDED.sorted_sequences, count = EXCLUDED.count",
        (
            upload_id,
            generation,
            collection.digest,
            collection.names,
            collection.lengths,
            collection.sequences,
            collection.name_length_pairs,
            collection.sorted_name_length_pairs,
            collection.sorted_sequences,
            collection.count,
        ),
    )


_COLLECTION_COLUMNS = (
    "c.upload_id, c.digest, c.names, c.lengths, c.sequences, c.name_length_pairs, "
    "c.sorted_name_length_pairs, c.sorted_sequences, c.count"
)
_FINISHED = "JOIN uploads u ON u.id = c.upload_id AND u.generation = c.generation AND u.state = %(done)s"


def _collection(row: dict[str, Any]) -> Collection:
    return Collection(
        digest=row["digest"],
        names=row["names"],
        lengths=row["lengths"],
        sequences=row["sequences"],
        name_length_pairs=row["name_length_pairs"],
        sorted_name_length_pairs=row["sorted_name_length_pairs"],
        sorted_sequences=row["sorted_sequences"],
        count=row["count"],
    )


def collection_of_upload(conn: Connection, upload_id: uuid.UUID, generation: int) -> Collection | None:
    row = conn.execute(
        f"SELECT {_COLLECTION_COLUMNS} FROM collections c WHERE c.upload_id = %s AND c.generation = %s",
        (upload_id, generation),
    ).fetchone()
    return _collection(row) if row else None


# --- the read API's store ----------------------------------------------------------------------------


class PostgresReads:
    """The read API's store (``SequenceReads``, ``CollectionReads``, ``StoreHealth``) over a pool
    of autocommit sessions: each read takes a session for its queries and gives it back.

    ``pool`` is also what the API key check reads keys with (``shared/web/guard.py``); ``open``
    at start-up, ``close`` at the end.
    """

    def __init__(self, settings: Settings) -> None:
        self.pool: ConnectionPool[Connection] = request_pool(settings)

    def open(self, timeout: float = 60) -> None:
        self.pool.open(wait=True, timeout=timeout)

    def close(self) -> None:
        self.pool.close()

    def ping(self) -> None:
        with self.pool.connection() as conn:
            conn.execute("SELECT 1")

    # --- sequences

    def find_sequence(self, digest: str, owner: str | None) -> StoredSequence | None:
        column = "refget" if digest.startswith("SQ.") else "md5"
        with self.pool.connection() as conn:
            row = conn.execute(
                sql.SQL(
                    "SELECT r.upload_id, r.ordinal, r.length, r.part_count, r.md5, r.refget, u.circular, "
                    "  (SELECT octet_length(p.residues) FROM sequence_parts p "
                    "   WHERE p.upload_id = r.upload_id AND p.ordinal = r.ordinal AND p.part_no = 0) AS part_size "
                    "FROM sequence_records r JOIN uploads u ON u.id = r.upload_id "
                    f"WHERE r.{{}} = %(digest)s AND u.state = %(done)s AND {_VISIBLE} "
                    "ORDER BY u.circular DESC LIMIT 1"
                ).format(sql.Identifier(column)),
                {"digest": digest, "done": _DONE, "owner": owner},
            ).fetchone()
        if row is None:
            return None
        return StoredSequence(
            row["upload_id"],
            row["ordinal"],
            row["length"],
            row["part_count"],
            row["part_size"] or row["length"],
            row["md5"],
            row["refget"],
            row["circular"],
        )

    def aliases(self, sequence: StoredSequence, owner: str | None, limit: int = 100) -> list[str]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT DISTINCT r.seq_id FROM sequence_records r JOIN uploads u ON u.id = r.upload_id "
                f"WHERE r.md5 = %(md5)s AND u.state = %(done)s AND {_VISIBLE} ORDER BY r.seq_id LIMIT %(limit)s",
                {"md5": sequence.md5, "done": _DONE, "owner": owner, "limit": limit},
            ).fetchall()
        return [row["seq_id"] for row in rows]

    def read_span(self, sequence: StoredSequence, span: ReadSpan) -> list[bytes]:
        """One query on a session taken for it alone: a stream gives its session back between spans."""
        with self.pool.connection() as conn:
            return _read_span(conn, sequence, span)

    # --- collections

    def find_collection(self, digest: str, owner: str | None, attribute: str = "digest") -> StoredCollection | None:
        with self.pool.connection() as conn:
            row = conn.execute(
                sql.SQL(
                    f"SELECT {_COLLECTION_COLUMNS}, u.labels FROM collections c {_FINISHED} "
                    f"WHERE c.{{}} = %(digest)s AND {_VISIBLE} LIMIT 1"
                ).format(sql.Identifier(attribute)),
                {"digest": digest, "owner": owner, "done": _DONE},
            ).fetchone()
        return StoredCollection(row["upload_id"], _collection(row), row["labels"]) if row else None

    def names_bytes(self, upload_id: uuid.UUID) -> int:
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT coalesce(sum(octet_length(seq_id)), 0) AS n FROM sequence_records WHERE upload_id = %s",
                (upload_id,),
            ).fetchone()
        return int(row["n"]) if row else 0

    def collection_arrays(self, upload_id: uuid.UUID) -> dict[str, list[Any]]:
        names: list[str] = []
        lengths: list[int] = []
        sequences: list[str] = []
        with self.pool.connection() as conn:
            for row in conn.execute(
                "SELECT seq_id, length, refget FROM sequence_records WHERE upload_id = %s ORDER BY ordinal",
                (upload_id,),
            ):
                names.append(row["seq_id"])
                lengths.append(row["length"])
                sequences.append(row["refget"])
        return {
            "lengths": lengths,
            "name_length_pairs": [{"length": n, "name": m} for m, n in zip(names, lengths, strict=True)],
            "names": names,
            "sequences": sequences,
            "sorted_sequences": sorted(sequences),
        }

    def list_collections(
        self, filters: Mapping[str, str], page: int, page_size: int, owner: str | None
    ) -> tuple[list[str], int]:
        where: list[sql.Composable] = [sql.SQL(_VISIBLE)]
        params: dict[str, Any] = {"owner": owner, "done": _DONE, "limit": page_size, "offset": page * page_size}
        for i, (attribute, digest) in enumerate(sorted(filters.items())):
            where.append(sql.SQL("c.{} = %(f{})s").format(sql.Identifier(attribute), sql.SQL(str(i))))
            params[f"f{i}"] = digest
        base = sql.SQL(f"FROM collections c {_FINISHED} WHERE ") + sql.SQL(" AND ").join(where)
        with self.pool.connection() as conn:
            total = conn.execute(sql.SQL("SELECT count(DISTINCT c.digest) AS n ") + base, params).fetchone()
            rows = conn.execute(
                sql.SQL("SELECT DISTINCT c.digest ")
                + base
                + sql.SQL(" ORDER BY c.digest LIMIT %(limit)s OFFSET %(offset)s"),
                params,
            ).fetchall()
        return [row["digest"] for row in rows], int(total["n"] if total else 0)

    def list_attribute_digests(
        self, attribute: str, page: int, page_size: int, owner: str | None
    ) -> tuple[list[str], int]:
        column = sql.Identifier(attribute)
        params = {"owner": owner, "done": _DONE, "limit": page_size, "offset": page * page_size}
        base = sql.SQL(f"FROM collections c {_FINISHED} WHERE {_VISIBLE}")
        with self.pool.connection() as conn:
            total = conn.execute(sql.SQL("SELECT count(DISTINCT c.{}) AS n ").format(column) + base, params).fetchone()
            rows = conn.execute(
                sql.SQL("SELECT DISTINCT c.{} AS v ").format(column)
                + base
                + sql.SQL(" ORDER BY 1 LIMIT %(limit)s OFFSET %(offset)s"),
                params,
            ).fetchall()
        return [row["v"] for row in rows], int(total["n"] if total else 0)


def _read_span(conn: Connection, sequence: StoredSequence, span: ReadSpan) -> list[bytes]:
    """The residues of one span as stored (case kept), part by part. Raises ``SequenceChanged`` if
    the record no longer holds this sequence, so a stream never mixes two sequences."""
    if sequence.part_count == 0:
        row = conn.execute(
            "SELECT substring(residues FROM %s FOR %s) AS piece FROM sequence_records "
            "WHERE upload_id = %s AND ordinal = %s AND md5 = %s",
            (span.start + 1, span.end - span.start, sequence.upload_id, sequence.ordinal, sequence.md5),
            binary=True,  # bytea as its bytes, not hex text
        ).fetchone()
        if row is None:
            raise SequenceChanged(sequence.md5)
        return [bytes(row["piece"])] if row["piece"] else []
    size = sequence.part_size
    rows = conn.execute(
        # offsets inside one part (at most a part's size) fit the int that substring takes
        "SELECT substring(p.residues FROM (greatest(%(start)s - p.part_no::bigint * %(size)s, 0) + 1)::int "
        "  FOR (least(%(end)s - p.part_no::bigint * %(size)s, %(size)s) "
        "       - greatest(%(start)s - p.part_no::bigint * %(size)s, 0))::int) AS piece "
        "FROM sequence_parts p JOIN sequence_records r ON r.upload_id = p.upload_id AND r.ordinal = p.ordinal "
        "WHERE p.upload_id = %(upload)s AND p.ordinal = %(ordinal)s AND r.md5 = %(md5)s "
        "AND p.part_no BETWEEN %(first)s AND %(last)s ORDER BY p.part_no",
        {
            "start": span.start,
            "end": span.end,
            "size": size,
            "upload": sequence.upload_id,
            "ordinal": sequence.ordinal,
            "md5": sequence.md5,
            "first": span.first_part,
            "last": span.last_part,
        },
        binary=True,  # bytea as its bytes, not hex text to decode
    ).fetchall()
    if len(rows) != span.last_part - span.first_part + 1:
        raise SequenceChanged(sequence.md5)
    return [bytes(row["piece"]) for row in rows]

"""The stored sequence record, defined once: every other list of its fields is derived from ``Record``.

A record's fields travel column by column in ``SequenceBatch`` (``shared/domain/messages.py`` builds
``RecordColumns`` from ``Record``), are copied into ``sequence_records`` with the Postgres types
given here (``shared/postgres/sequences.py``), read back in the same order, and written into the
result document under the keys given here (``services/assembler/document.py``). Adding a field is
one edit to ``Record`` plus a migration that adds the column; ``tests/unit/test_record_schema.py``
fails if a derived list drifts from this definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, NamedTuple, get_args, get_origin, get_type_hints


@dataclass(frozen=True)
class Column:
    """How one field of ``Record`` is stored and shown.

    ``sql``: its Postgres type (binary COPY needs the exact type). Text kept as ``bytea`` (residues,
    qualities) is ASCII that the parser has validated; the adapter encodes and decodes it.
    ``document``: its key in the result document's record, or None for a field the writer places
    itself (the sequence, streamed last, and what follows it).
    ``optional``: the document leaves the key out when the value is None.
    ``added``: added after the message format first shipped: a batch may leave the column out (one
    from a parser of the previous version, during a rolling upgrade), and its rows then hold None.
    """

    sql: str
    document: str | None
    optional: bool = False
    added: bool = False


class Record(NamedTuple):
    """One sequence record as stored: its position, names, length, checksums and inline payload."""

    ordinal: Annotated[int, Column("int8", "ordinal")]  # 0-based position in the file
    line_number: Annotated[int, Column("int8", "line_number")]  # line of its header (or row)
    gene_name: Annotated[str, Column("text", "gene_name")]  # the whole header
    seq_id: Annotated[str, Column("text", "id")]  # the header's first word
    description: Annotated[str, Column("text", "description")]  # the rest of the header
    length: Annotated[int, Column("int8", "length")]
    part_count: Annotated[int, Column("int4", None)]  # 0: the residues are inline (below)
    md5: Annotated[str, Column("text", "md5")]
    refget: Annotated[str, Column("text", "refget")]  # GA4GH sequence digest, SQ.…
    # Extra CSV/TSV columns by header name; None for other formats.
    attributes: Annotated[dict[str, str] | None, Column("jsonb", "attributes", optional=True)]
    # The whole sequence of a record shorter than one part; None when it is stored as parts.
    residues: Annotated[str | None, Column("bytea", None)]
    # FASTQ qualities (always inline: a read must fit in one part); None for other formats.
    quality: Annotated[str | None, Column("bytea", None)]
    # The GA4GH digest of the record's canonical {"length", "name"} pair: its element of the
    # collection's sorted_name_length_pairs, computed as it is parsed so that sorting them once the
    # upload is complete digests nothing. None in rows stored before it was (the SQL computes it).
    pair_digest: Annotated[str | None, Column("text", None, added=True)]


class Part(NamedTuple):
    """An ordered slice of a long record's residues (``part_bytes`` each but the last), a row of its own."""

    ordinal: Annotated[int, Column("int8", None)]
    part_no: Annotated[int, Column("int4", None)]
    residues: Annotated[str, Column("bytea", None)]


@dataclass(frozen=True)
class Schema:
    """What the adapters and messages derive from a row type: names, Python and Postgres types."""

    row: type[tuple[Any, ...]]
    fields: tuple[str, ...]
    columns: dict[str, Column]
    python_types: dict[str, Any]

    @classmethod
    def of(cls, row: type[tuple[Any, ...]]) -> Schema:
        hints = get_type_hints(row, include_extras=True)
        names: tuple[str, ...] = row._fields  # type: ignore[attr-defined]
        columns = {n: next(a for a in get_args(hints[n]) if isinstance(a, Column)) for n in names}
        types = {n: get_args(hints[n])[0] if get_origin(hints[n]) is Annotated else hints[n] for n in names}
        return cls(row, names, columns, types)

    @property
    def sql_types(self) -> tuple[str, ...]:
        return tuple(self.columns[name].sql for name in self.fields)


RECORD = Schema.of(Record)
PART = Schema.of(Part)
# The fields the result document shows before the sequence: (position in Record, key, optional).
DOCUMENT_FIELDS: tuple[tuple[int, str, bool], ...] = tuple(
    (i, column.document, column.optional)
    for i, column in enumerate(RECORD.columns.values())
    if column.document is not None
)
# The keys a document's writer places itself, after ``DOCUMENT_FIELDS``: the residues (streamed
# part by part, so last but for what follows them) and a FASTQ record's qualities.
SEQUENCE_KEY, QUALITY_KEY = "sequence", "quality"
# Every key a record shows, in the order it shows them (the result document, the records API).
RECORD_KEYS: tuple[str, ...] = (*(key for _, key, _ in DOCUMENT_FIELDS), SEQUENCE_KEY, QUALITY_KEY)


class ResultPiece(NamedTuple):
    """One step of reading a generation back in order: a record and one part of its residues.

    A record shorter than one part comes as one piece (``part_no`` 0, its inline residues); a longer
    one as one piece per stored part, each with the same ``record``. ``record.residues`` is None
    here: the residues are ``residues``, raw ASCII bytes, so that no part is decoded or copied.
    """

    record: Record
    part_no: int
    residues: bytes | None

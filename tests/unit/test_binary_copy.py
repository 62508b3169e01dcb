"""The C formatter of a batch's COPY rows gives psycopg's bytes, and refuses what psycopg would."""

from __future__ import annotations

import struct
import uuid
from itertools import repeat
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import adapt, pq
from psycopg._copy_base import BinaryFormatter
from psycopg.postgres import types as pg_types
from psycopg.types.json import set_json_dumps
from psycopg.types.string import BytesBinaryDumper

from shared.domain.record_schema import PART, RECORD, Part, Record, Schema
from shared.postgres import binary_copy
from shared.postgres.sequences import _ENCODERS, _copy_in
from tests.builders import record
from tests.unit.helpers import require_native


@pytest.fixture(autouse=True)
def _built() -> None:
    require_native(binary_copy)


def by_psycopg(upload_id: uuid.UUID, rows: list[tuple[Any, ...]], schema: Schema) -> bytes:
    """What ``write_row`` sends for the same rows (jsonb written by orjson, as the C path's is)."""
    adapters = adapt.AdaptersMap(psycopg.adapters)
    set_json_dumps(orjson.dumps, adapters)
    adapters.register_dumper(bytes, BytesBinaryDumper)
    tx = adapt.Transformer(adapters)
    tx.set_dumper_types([pg_types["uuid"].oid, *(pg_types[t].oid for t in schema.sql_types)], pq.Format.BINARY)
    formatter = BinaryFormatter(tx)
    columns = [list(c) for c in zip(*rows, strict=True)]
    encoded = [
        _ENCODERS[schema.columns[name].sql](column) if schema.columns[name].sql in _ENCODERS else column
        for name, column in zip(schema.fields, columns, strict=True)
    ]
    out = bytearray()
    for row in zip(repeat(upload_id), *encoded):
        out += formatter.write_row(row)
    out += formatter.end()
    return bytes(out)


def by_c(upload_id: uuid.UUID, rows: list[tuple[Any, ...]], schema: Schema) -> bytes:
    columns = [list(c) for c in zip(*rows, strict=True)]
    return binary_copy.SIGNATURE + binary_copy.rows(upload_id, columns, schema) + binary_copy.TRAILER


RECORDS: list[Record] = [
    record(0, residues="ACGT", attributes={"sample": "é", "n": "1"}),
    record(1, gene_name="chr1 ünïcode 🧬", seq_id="chr1", description="ünïcode 🧬", part_count=3, residues=None),
    record(2, line_number=2**62, length=2**40, residues="", quality="IIII", pair_digest=None),
    record(3, gene_name="", seq_id="", description="", residues="N" * 70_000, quality="#" * 70_000),
    record(2**63 - 1, part_count=2**31 - 1, residues=None),
]
PARTS = [Part(1, 0, "ACGTN" * 1000), Part(1, 1, ""), Part(1, 2**31 - 1, "acgt")]


@pytest.mark.parametrize(
    ("rows", "schema"), [(RECORDS, RECORD), (PARTS, PART), ([], RECORD)], ids=["records", "parts", "none"]
)
def test_the_c_rows_are_psycopgs_bytes(rows: list[tuple[Any, ...]], schema: Schema) -> None:
    upload_id = uuid.uuid4()
    if not rows:  # no rows: no columns to transpose; the C call gets empty ones
        assert binary_copy.rows(upload_id, [[] for _ in schema.fields], schema) == b""
        return
    assert by_c(upload_id, rows, schema) == by_psycopg(upload_id, rows, schema)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"residues": "ACGTé"}, ValueError),  # residues are ASCII, as the parser checked them
        ({"part_count": 2**31}, OverflowError),  # int4
        ({"length": 2**63}, OverflowError),  # int8
        ({"length": "4"}, TypeError),
        ({"gene_name": b"g"}, TypeError),
        ({"residues": 5}, TypeError),
        ({"md5": "\ud800"}, UnicodeEncodeError),  # a lone surrogate has no UTF-8
    ],
)
def test_the_c_rows_refuse_what_psycopg_would(change: dict[str, Any], error: type[Exception]) -> None:
    rows = [RECORDS[0], RECORDS[0]._replace(**change)]
    with pytest.raises(error):
        by_c(uuid.uuid4(), rows, RECORD)


def test_the_c_rows_refuse_columns_of_unequal_length() -> None:
    columns: list[list[Any]] = [list(c) for c in zip(*PARTS, strict=True)]
    columns[2].pop()
    with pytest.raises(ValueError, match="unequal length"):
        binary_copy.rows(uuid.uuid4(), columns, PART)


class _RecordingCopy:
    """psycopg's ``Copy`` as ``sequences._copy_in`` uses it, keeping the bytes it would send: rows
    formatted by psycopg's own binary formatter with the cursor's adapters (as ``Copy`` does)."""

    def __init__(self, cursor: _RecordingCursor) -> None:
        self._cursor = cursor
        self._formatter: BinaryFormatter | None = None

    def __enter__(self) -> _RecordingCopy:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._formatter is not None:
            self._cursor.sent += self._formatter.end()

    def set_types(self, types: list[str]) -> None:
        tx = adapt.Transformer(self._cursor.adapters)
        tx.set_dumper_types([pg_types[t].oid for t in types], pq.Format.BINARY)
        self._formatter = BinaryFormatter(tx)

    def write_row(self, row: tuple[Any, ...]) -> None:
        assert self._formatter is not None, "set_types comes first"
        self._cursor.sent += self._formatter.write_row(row)

    def write(self, data: bytes | memoryview) -> None:
        self._cursor.sent += bytes(data)


class _RecordingCursor:
    def __init__(self) -> None:
        self.adapters = adapt.AdaptersMap(psycopg.adapters)
        self.sent = bytearray()

    def __enter__(self) -> _RecordingCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def copy(self, statement: object) -> _RecordingCopy:
        return _RecordingCopy(self)


class _RecordingConnection:
    def __init__(self) -> None:
        self.cursors: list[_RecordingCursor] = []

    def cursor(self) -> _RecordingCursor:
        self.cursors.append(_RecordingCursor())
        return self.cursors[-1]


def copied_by_copy_in(upload_id: uuid.UUID, rows: list[tuple[Any, ...]], schema: Schema) -> bytes:
    """The bytes ``sequences._copy_in`` sends for ``rows``, by whichever path it takes now."""
    conn = _RecordingConnection()
    columns = [list(c) for c in zip(*rows, strict=True)]
    _copy_in(conn, "t", schema, upload_id, columns)  # type: ignore[arg-type]
    [cursor] = conn.cursors
    return bytes(cursor.sent)


def read_back(stream: bytes, schema: Schema) -> list[tuple[Any, ...]]:
    """The rows of a binary COPY stream, each value decoded by its column's type (jsonb parsed, so
    that two JSON writers' spacing does not count): what Postgres would store."""
    assert stream.startswith(binary_copy.SIGNATURE) and stream.endswith(binary_copy.TRAILER)
    types = ["uuid", *schema.sql_types]
    decode: dict[str, Any] = {
        "uuid": lambda b: uuid.UUID(bytes=b),
        "int8": lambda b: struct.unpack("!q", b)[0],
        "int4": lambda b: struct.unpack("!i", b)[0],
        "text": lambda b: b.decode(),
        "bytea": lambda b: b.decode("ascii"),
        "jsonb": lambda b: (b[:1], orjson.loads(b[1:])),
    }
    rows = []
    at, end = len(binary_copy.SIGNATURE), len(stream) - len(binary_copy.TRAILER)
    while at < end:
        (count,) = struct.unpack_from("!h", stream, at)
        assert count == len(types)
        at += 2
        row = []
        for sql_type in types:
            (size,) = struct.unpack_from("!i", stream, at)
            at += 4
            row.append(None if size == -1 else decode[sql_type](stream[at : at + size]))
            at += max(size, 0)
        rows.append(tuple(row))
    assert at == end
    return rows


def stored(upload_id: uuid.UUID, rows: list[tuple[Any, ...]], schema: Schema) -> list[tuple[Any, ...]]:
    """The rows as ``read_back`` decodes them, from the rows given."""
    jsonb = {i for i, name in enumerate(schema.fields) if schema.columns[name].sql == "jsonb"}
    return [
        (upload_id, *((b"\x01", v) if i in jsonb and v is not None else v for i, v in enumerate(row))) for row in rows
    ]


@pytest.mark.parametrize(("rows", "schema"), [(RECORDS, RECORD), (PARTS, PART)], ids=["records", "parts"])
def test_copy_in_writes_the_same_rows_without_the_c_formatter(
    rows: list[tuple[Any, ...]], schema: Schema, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The persister's ``COPY`` where the extension is not built (psycopg's ``write_row``) sends the
    rows the C path sends: both streams read back as the very rows given."""
    upload_id = uuid.uuid4()
    by_c_path = copied_by_copy_in(upload_id, rows, schema)
    monkeypatch.setattr(binary_copy, "accelerator", None)
    by_fallback = copied_by_copy_in(upload_id, rows, schema)
    if schema is RECORD:  # jsonb: json.dumps's spacing on the fallback, orjson's on the C path
        assert by_fallback != by_c_path, "the fallback path was not taken"
    else:
        assert by_fallback == by_c_path
    assert read_back(by_c_path, schema) == stored(upload_id, rows, schema)
    assert read_back(by_fallback, schema) == stored(upload_id, rows, schema)

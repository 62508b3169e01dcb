"""The C formatter of a batch's COPY rows gives psycopg's bytes, and refuses what psycopg would."""

from __future__ import annotations

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
from shared.postgres.sequences import _ENCODERS
from tests.builders import record


@pytest.fixture(autouse=True)
def _built() -> None:
    if binary_copy.accelerator is None:
        pytest.fail("the C formatter was not built (a compiler and Python's headers are required)")


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

"""A batch's rows in Postgres's binary ``COPY`` format, built by one C call (``_copy_rows.c``).

psycopg's ``write_row`` formats a row per Python call, a dumper object per value; for a batch of
ten thousand short records that was most of the persister's ``COPY`` cost (~2.4 µs a record).
Where the extension is not built, ``accelerator`` is None and ``sequences._copy_in`` uses
``write_row``; ``tests/unit/test_binary_copy.py`` checks that both give the same bytes.
"""

from __future__ import annotations

import struct
import uuid
from types import ModuleType
from typing import Any

import orjson

from shared.domain.record_schema import Schema

accelerator: ModuleType | None
try:
    from shared.postgres import _copy_rows

    accelerator = _copy_rows
except ImportError:  # pragma: no cover - depends on the build
    accelerator = None

# The stream's header (signature, flags, header extension length) and its trailer (tuple count -1).
SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
TRAILER = struct.pack("!h", -1)

# The letter ``_copy_rows.rows`` takes for each Postgres type of the sequence tables.
_KINDS = {"int8": "q", "int4": "i", "text": "t", "bytea": "a", "jsonb": "j"}
_JSONB_VERSION = b"\x01"


def kinds(schema: Schema) -> str:
    return "".join(_KINDS[schema.columns[name].sql] for name in schema.fields)


def _jsonb(values: list[Any]) -> list[bytes | None]:
    return [None if v is None else _JSONB_VERSION + orjson.dumps(v) for v in values]


def rows(upload_id: uuid.UUID, columns: list[list[Any]], schema: Schema) -> bytes:
    """The tuples (no signature, no trailer) of ``upload_id`` and the columns, in the schema's order."""
    assert accelerator is not None
    letters = kinds(schema)
    encoded = [_jsonb(column) if kind == "j" else column for column, kind in zip(columns, letters, strict=True)]
    payload: bytes = accelerator.rows(upload_id.bytes, encoded, letters)
    return payload

"""Test data built by field name from the one record definition (``shared/domain/record_schema.py``)."""

from __future__ import annotations

import io
import uuid
from typing import Any

from Bio import bgzf

from shared.domain.messages import RecordColumns, SequenceBatch, SequenceParts
from shared.domain.record_schema import Part, Record

_DEFAULTS: dict[str, Any] = {
    "line_number": 1,
    "gene_name": "",
    "seq_id": "",
    "description": "",
    "length": 0,
    "part_count": 0,
    "md5": "m",
    "refget": "r",
    "attributes": None,
    "residues": None,
    "quality": None,
    "pair_digest": None,
}


def record(ordinal: int, **fields: Any) -> Record:
    """A record with every field not given set to a plain default."""
    return Record(**{**_DEFAULTS, "ordinal": ordinal, **fields})


def sequence_batch(
    upload_id: uuid.UUID,
    generation: int,
    batch_no: int,
    records: list[Record],
    parts: list[Part] | None = None,
    source_offset: int = 0,
) -> SequenceBatch:
    return SequenceBatch(
        upload_id=upload_id,
        generation=generation,
        batch_no=batch_no,
        source_offset=source_offset,
        parts=SequenceParts.from_rows(parts or []),
        records=RecordColumns.from_rows(records),
    )


def bgzip(data: bytes) -> bytes:
    """bgzip by Biopython's BGZF writer: an implementation independent of the project's reader."""
    out = io.BytesIO()
    out.close = lambda: None  # type: ignore[method-assign]  # the writer closes its file; keep the bytes
    writer = bgzf.BgzfWriter(fileobj=out)
    writer.write(data)
    writer.close()  # writes the last block and the empty end-of-file block
    return out.getvalue()

"""What a read of the store finds: a stored sequence, the spans it is read in, a stored collection.

No I/O. A sequence's residues are read a span at a time, each span a few of its stored parts, so
that a stream never holds a database session while its client reads (``read_spans`` cuts a slice
into spans; the store reads one span per call). The read API's use cases
(``shared/usecases/refget.py``) work on these; the store behind ``shared/domain/read_ports.py``
produces them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from shared.domain.seqcol import Collection

# Parts read per span when a sequence streams: about 2 MiB, the most one stream holds while its
# client reads (the session goes back to the pool between spans).
READ_PARTS = 2


@dataclass(frozen=True)
class StoredSequence:
    """Where one sequence's residues are: a record of a finished upload."""

    upload_id: uuid.UUID
    ordinal: int
    length: int
    part_count: int  # 0: inline in the record
    part_size: int  # the length of every part but the last
    md5: str
    refget: str  # SQ.…
    circular: bool


class SequenceChanged(Exception):
    """The record a stream reads no longer holds its sequence (its upload was processed again)."""


@dataclass(frozen=True)
class ReadSpan:
    """One read's worth of a sequence: ``[start, end)``, parts ``first_part..last_part``."""

    start: int
    end: int
    first_part: int
    last_part: int


def read_spans(sequence: StoredSequence, start: int, end: int) -> list[ReadSpan]:
    """``[start, end)`` cut into reads of at most ``READ_PARTS`` parts (one for an inline record)."""
    if end <= start:
        return []
    if sequence.part_count == 0:
        return [ReadSpan(start, end, 0, 0)]
    size = sequence.part_size
    first, last = start // size, (end - 1) // size
    return [
        ReadSpan(start, end, batch_first, min(batch_first + READ_PARTS - 1, last))
        for batch_first in range(first, last + 1, READ_PARTS)
    ]


class StoredCollection(NamedTuple):
    """A finished upload's collection: the upload whose records are its arrays, and its digests;
    and that upload's labels (served as the collection's passthru attribute ``labels``)."""

    upload_id: uuid.UUID
    collection: Collection
    labels: Mapping[str, str]

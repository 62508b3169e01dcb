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


# --- an upload's records, read back a page at a time --------------------------------------------------

# The most a page's read holds at once besides one long record's span: records are read in groups of
# about this many bytes (their fields, and their inline residues and qualities when those are shown),
# each group one query on a session taken for it alone.
RECORD_GROUP_BYTES = 4 * 1024 * 1024


class RecordSize(NamedTuple):
    """A record of a page before it is read: where it is, whether its residues are in parts, and
    the bytes reading its row holds (fields, plus the inline residues and qualities asked for)."""

    ordinal: int
    part_count: int
    bytes: int


class RecordsChanged(Exception):
    """The upload is no longer done at the generation being read (processed again, or gone): its
    records are not the ones a page began with."""


def record_groups(sizes: list[RecordSize], max_bytes: int = RECORD_GROUP_BYTES) -> list[list[RecordSize]]:
    """Consecutive records cut into groups of at most ``max_bytes`` each (a larger record alone)."""
    groups: list[list[RecordSize]] = []
    current: list[RecordSize] = []
    held = 0
    for size in sizes:
        if current and held + size.bytes > max_bytes:
            groups.append(current)
            current, held = [], 0
        current.append(size)
        held += size.bytes
    if current:
        groups.append(current)
    return groups

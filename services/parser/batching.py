"""Packs record events into ``SequenceBatch`` messages of bounded size.

Batch and part boundaries depend only on the parsed content, never on how the bytes were
chunked on the way in. A re-parse after a crash therefore produces the very same numbered
batches, and the persister can recognise the ones it already committed.

A batch counts every byte it will carry: residues, qualities, names and attributes, plus a fixed
allowance per record for its checksums and numbers. It closes once it reaches ``batch_bytes``, so
it is at most ``batch_bytes`` plus one record, and the engine's limits bound one record (a part of
residues, a read's quality, a header or title, the attributes of one row).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from types import ModuleType

from shared.domain.messages import RecordColumns, SequenceBatch, SequenceParts
from shared.domain.record_schema import Part, Record
from shared.domain.seqcol import pair_digest
from shared.parsing.native import accelerator as _native
from shared.parsing.records import Event, RecordEnd, RecordStart, Residues, WholeRecord

_new_tuple = tuple.__new__

# Short whole records into rows in C (``_batch_rows.c``), the same rows as ``Batcher._whole``
# builds; None where the extension is not built, and every event goes through ``_whole``.
accelerator: ModuleType | None
try:
    from services.parser import _batch_rows

    accelerator = _batch_rows
except ImportError:  # pragma: no cover - depends on the build
    accelerator = None
_native_pair_digest = _native.pair_digest if _native is not None else None

# JSON for a record's md5, refget, ordinal, line, length, part count and field names.
RECORD_OVERHEAD_BYTES = 200


def json_bytes_bound(text: str) -> int:
    """At most the bytes ``text`` takes in JSON: ASCII doubles at worst (an escaped quote, backslash
    or tab), any other character takes at most four bytes of UTF-8. (One ``isascii`` per string:
    counting exactly would cost ~2 % of a parse of short records.)"""
    return len(text) * (2 if text.isascii() else 4)


def metadata_bytes(gene_name: str, attributes: dict[str, str] | None) -> int:
    """At most what a record's names and attributes add to a batch (the header travels as gene_name
    and again split into seq_id and description)."""
    size = 2 * json_bytes_bound(gene_name) + RECORD_OVERHEAD_BYTES
    if attributes:
        size += sum(json_bytes_bound(k) + json_bytes_bound(v) + 6 for k, v in attributes.items())
    return size


class Batcher:
    def __init__(
        self,
        upload_id: uuid.UUID,
        generation: int,
        part_bytes: int,
        batch_bytes: int,
        max_batch_records: int = 10_000,
        shard: int = 0,
        shard_start: int | None = None,
    ) -> None:
        self._upload_id = upload_id
        self._shard = shard
        # In a shard: the offset the last batch reached, so that each batch says what it adds.
        self._last_offset = shard_start
        self._generation = generation
        self._part_bytes = part_bytes
        self._batch_bytes = batch_bytes
        self._max_records = max_batch_records
        self.batch_count = 0
        self.record_count = 0
        self._start: RecordStart | None = None
        self._pieces: list[bytes] = []
        self._pending = 0
        self._part_no = 0
        self._new_columns()

    def _new_columns(self) -> None:
        self._parts: list[Part] = []
        self._records: list[Record] = []
        self._bytes = 0

    def add(self, events: Iterable[Event], source_offset: int) -> Iterator[SequenceBatch]:
        """Take events; yield each batch as soon as it is complete (``source_offset`` marks progress).

        Lazy both ways: events are taken only as the caller asks for batches, so one step holds
        at most one batch, whatever the input's compression ratio.
        """
        done: list[SequenceBatch] = []
        if accelerator is not None and type(events) is list:
            yield from self._add_list(accelerator, events, source_offset)
            return
        for event in events:
            self._event(event, done, source_offset)
            if done:
                yield from done
                done.clear()

    def _add_list(self, native: ModuleType, events: list[Event], source_offset: int) -> Iterator[SequenceBatch]:
        """``add`` for a list (as the engine hands them over): each run of short whole records is
        turned into rows by one C call, which stops when the batch is full or at an event it leaves
        here (any other kind, a record as long as a part, types other than the engine's)."""
        done: list[SequenceBatch] = []
        i, n = 0, len(events)
        while i < n:
            taken, self._bytes, full = native.take_whole(
                events, i, WholeRecord, Record, self._part_bytes, RECORD_OVERHEAD_BYTES, self._bytes,
                self._batch_bytes, self._max_records, self._records, _native_pair_digest, pair_digest,
            )  # fmt: skip
            self.record_count += taken - i
            i = taken
            if full:
                yield self._close(source_offset)
                continue
            if i < n:
                self._event(events[i], done, source_offset)
                i += 1
                if done:
                    yield from done
                    done.clear()

    def _event(self, event: Event, done: list[SequenceBatch], source_offset: int) -> None:
        if type(event) is WholeRecord:
            self._whole(event, done, source_offset)
        elif type(event) is Residues:
            self._pieces.append(event.data)
            self._pending += len(event.data)
            if self._pending >= self._part_bytes:
                self._emit_full_parts(done, source_offset)
        elif type(event) is RecordStart:
            self._start = event
            self._part_no = 0
        else:
            assert type(event) is RecordEnd
            self._end_record(event, done, source_offset)

    def finish(self, source_offset: int) -> list[SequenceBatch]:
        if self._records or self._parts:
            return [self._close(source_offset)]
        return []

    def _emit_full_parts(self, done: list[SequenceBatch], source_offset: int) -> None:
        data = b"".join(self._pieces)
        size = self._part_bytes
        whole = len(data) - len(data) % size
        for offset in range(0, whole, size):
            self._emit_part(data[offset : offset + size])
            if self._bytes >= self._batch_bytes:
                done.append(self._close(source_offset))
        rest = data[whole:]
        self._pieces = [rest] if rest else []
        self._pending = len(rest)

    def _emit_part(self, data: bytes) -> None:
        assert self._start is not None
        self._parts.append(Part(ordinal=self._start.ordinal, part_no=self._part_no, residues=data.decode("ascii")))
        self._part_no += 1
        self._bytes += len(data)

    def _end_record(self, end: RecordEnd, done: list[SequenceBatch], source_offset: int) -> None:
        start = self._start
        assert start is not None and start.ordinal == end.ordinal
        inline: str | None = None
        if self._part_no == 0:  # shorter than one part: the record row carries it
            inline = b"".join(self._pieces).decode("ascii")
            self._bytes += self._pending
        elif self._pending:
            self._emit_part(b"".join(self._pieces))
        self._pieces = []
        self._pending = 0
        self._bytes += metadata_bytes(start.gene_name, start.attributes)
        record = Record(
            ordinal=start.ordinal,
            line_number=start.line_number,
            gene_name=start.gene_name,
            seq_id=start.seq_id,
            description=start.description,
            length=end.length,
            part_count=self._part_no,
            md5=end.md5,
            refget=end.refget,
            attributes=start.attributes,
            residues=inline,
            quality=None,
            pair_digest=pair_digest(start.seq_id, end.length),
        )
        self._start = None
        self._append(record, done, source_offset)

    def _whole(self, record: WholeRecord, done: list[SequenceBatch], source_offset: int) -> None:
        data = record.data
        if record.quality is not None and len(data) >= self._part_bytes:
            raise ValueError("a FASTQ read must be shorter than one part (Limits.max_read_bytes)")
        if len(data) >= self._part_bytes:  # rare: a long record that still fitted in one chunk
            self._start = RecordStart(
                record.ordinal,
                record.line_number,
                record.gene_name,
                record.seq_id,
                record.description,
                record.attributes,
            )
            self._part_no = 0
            self._pieces.append(data)
            self._pending = len(data)
            self._emit_full_parts(done, source_offset)
            self._end_record(RecordEnd(record.ordinal, len(data), record.md5, record.refget), done, source_offset)
            return
        self._bytes += len(data) + len(record.quality or b"") + metadata_bytes(record.gene_name, record.attributes)
        # Hot (once per record): built positionally, in Record's field order (tuple.__new__ skips
        # the NamedTuple's keyword __new__: 2.5x cheaper; tests/unit/test_batching.py holds the two equal).
        row = _new_tuple(
            Record,
            (
                record.ordinal,
                record.line_number,
                record.gene_name,
                record.seq_id,
                record.description,
                len(data),
                0,  # part_count: inline
                record.md5,
                record.refget,
                record.attributes,
                data.decode("ascii"),
                None if record.quality is None else record.quality.decode("ascii"),
                pair_digest(record.seq_id, len(data)),
            ),
        )
        self._append(row, done, source_offset)

    def _append(self, record: Record, done: list[SequenceBatch], source_offset: int) -> None:
        """One more record; closes the batch when it is full. (Hot: one call per record.)"""
        self._records.append(record)
        self.record_count += 1
        if self._bytes >= self._batch_bytes or len(self._records) >= self._max_records:
            done.append(self._close(source_offset))

    def _close(self, source_offset: int) -> SequenceBatch:
        # model_construct: the columns were built here from validated events; the consumer
        # validates the JSON in full on arrival.
        batch = SequenceBatch.model_construct(
            upload_id=self._upload_id,
            generation=self._generation,
            shard=self._shard,
            batch_no=self.batch_count,
            source_offset=source_offset,
            source_bytes=None if self._last_offset is None else source_offset - self._last_offset,
            parts=SequenceParts.from_rows(self._parts),
            records=RecordColumns.from_rows(self._records),
            kind="sequence_batch",
            schema_version=1,
        )
        self.batch_count += 1
        if self._last_offset is not None:
            self._last_offset = source_offset
        self._new_columns()
        return batch

"""An in-memory store for the read API: every read port of ``shared/domain/read_ports.py``.

``FakeReads`` keeps the rules of ``PostgresReads`` (``shared/postgres/refget.py``): only finished
uploads are read; ``owner`` None sees every upload, an owner only its own (an upload without an
owner only by None); a sequence stored by several uploads is found once, a circular upload's record
first; a span reads the parts it overlaps and only their overlapping residues, case kept; a record
gone (its upload processed again, or failed) is ``SequenceChanged``. Both pass
``tests/contract/test_reads_contract.py``. Names sort by code point here: the contract's names are
ones every collation orders alike.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.domain.reads import ReadSpan, SequenceChanged, StoredCollection, StoredSequence
from shared.domain.seqcol import Collection, CollectionDigester, pair_digest, sha512t24u


@dataclass(frozen=True)
class FakeRecord:
    """A record as stored: its name, its residues (case kept) and their digests (upper-cased)."""

    seq_id: str
    residues: str

    @property
    def length(self) -> int:
        return len(self.residues)

    @property
    def md5(self) -> str:
        return md5_of(self.residues)

    @property
    def refget(self) -> str:
        return refget_of(self.residues)


def md5_of(residues: str) -> str:
    return hashlib.md5(residues.upper().encode("ascii")).hexdigest()


def refget_of(residues: str) -> str:
    return "SQ." + sha512t24u(residues.upper().encode("ascii"))


def collection_of(records: list[FakeRecord]) -> Collection:
    """The collection of records in file order, as the assembler digests it."""
    digester = CollectionDigester()
    for r in records:
        digester.add(r.seq_id, r.length, r.refget)
    return digester.finish(sorted(pair_digest(r.seq_id, r.length) for r in records), sorted(r.refget for r in records))


@dataclass
class FakeUpload:
    id: uuid.UUID
    records: list[FakeRecord]
    owner: str | None
    circular: bool
    part_size: int  # 0: every record inline; else records longer than this are stored in parts of it
    done: bool
    collection: Collection | None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeReads:
    """``SequenceReads``, ``CollectionReads`` and ``StoreHealth`` over uploads kept in memory.

    ``span_reads``: every ``read_span`` call, in order (a stream's reads, one per span);
    ``finds``: every digest ``find_sequence`` or ``find_collection`` was asked for;
    ``healthy``: False makes ``ping`` raise.
    """

    uploads: dict[uuid.UUID, FakeUpload] = field(default_factory=dict)
    span_reads: list[ReadSpan] = field(default_factory=list)
    finds: list[str] = field(default_factory=list)
    healthy: bool = True

    # --- what the tests put in

    def add_upload(
        self,
        records: list[tuple[str, str]],
        *,
        owner: str | None = None,
        circular: bool = False,
        part_size: int = 0,
        done: bool = True,
        labels: dict[str, str] | None = None,
    ) -> uuid.UUID:
        """A finished (or, ``done`` False, still running) upload of ``(name, residues)`` records."""
        stored = [FakeRecord(name, residues) for name, residues in records]
        upload_id = uuid.uuid4()
        self.uploads[upload_id] = FakeUpload(
            upload_id, stored, owner, circular, part_size, done, collection_of(stored) if done else None, labels or {}
        )
        return upload_id

    def reprocess(self, upload_id: uuid.UUID) -> None:
        """The upload's object was written again: a new generation, not finished, its records gone."""
        upload = self.uploads[upload_id]
        upload.done, upload.records, upload.collection = False, [], None

    # --- helpers

    def _visible(self, owner: str | None) -> Iterator[FakeUpload]:
        for upload in self.uploads.values():
            if upload.done and (owner is None or upload.owner == owner):
                yield upload

    @staticmethod
    def _parts(upload: FakeUpload, record: FakeRecord) -> list[str] | None:
        """The record's parts, or None if it is inline."""
        size = upload.part_size
        if size == 0 or record.length <= size:
            return None
        return [record.residues[i : i + size] for i in range(0, record.length, size)]

    # --- SequenceIndex

    def find_sequence(self, digest: str, owner: str | None) -> StoredSequence | None:
        self.finds.append(digest)
        found: list[StoredSequence] = []
        for upload in self._visible(owner):
            for ordinal, record in enumerate(upload.records):
                if digest in (record.md5, record.refget):
                    parts = self._parts(upload, record)
                    found.append(
                        StoredSequence(
                            upload.id,
                            ordinal,
                            record.length,
                            0 if parts is None else len(parts),
                            record.length if parts is None else upload.part_size,
                            record.md5,
                            record.refget,
                            upload.circular,
                        )
                    )
        ranked = sorted(found, key=lambda s: not s.circular)  # stable: a circular upload's first
        return ranked[0] if ranked else None

    def aliases(self, sequence: StoredSequence, owner: str | None, limit: int = 100) -> list[str]:
        names = {r.seq_id for upload in self._visible(owner) for r in upload.records if r.md5 == sequence.md5}
        return sorted(names)[:limit]

    # --- ResidueReads

    def read_span(self, sequence: StoredSequence, span: ReadSpan) -> list[bytes]:
        self.span_reads.append(span)
        upload = self.uploads.get(sequence.upload_id)
        records = upload.records if upload is not None else []
        if sequence.ordinal >= len(records) or records[sequence.ordinal].md5 != sequence.md5:
            raise SequenceChanged(sequence.md5)
        assert upload is not None
        record = records[sequence.ordinal]
        parts = self._parts(upload, record)
        if parts is None:
            piece = record.residues[span.start : span.end].encode("ascii")
            return [piece] if piece else []
        if span.last_part >= len(parts):
            raise SequenceChanged(sequence.md5)
        size = sequence.part_size
        return [
            parts[n][max(span.start - n * size, 0) : min(span.end - n * size, size)].encode("ascii")
            for n in range(span.first_part, span.last_part + 1)
        ]

    # --- CollectionIndex

    def find_collection(self, digest: str, owner: str | None, attribute: str = "digest") -> StoredCollection | None:
        self.finds.append(digest)
        for upload in self._visible(owner):
            if upload.collection is not None and getattr(upload.collection, attribute) == digest:
                return StoredCollection(upload.id, upload.collection, dict(upload.labels))
        return None

    def list_collections(
        self, filters: Mapping[str, str], page: int, page_size: int, owner: str | None
    ) -> tuple[list[str], int]:
        digests = sorted(
            {
                upload.collection.digest
                for upload in self._visible(owner)
                if upload.collection is not None
                and all(getattr(upload.collection, name) == value for name, value in filters.items())
            }
        )
        return digests[page * page_size : (page + 1) * page_size], len(digests)

    def list_attribute_digests(
        self, attribute: str, page: int, page_size: int, owner: str | None
    ) -> tuple[list[str], int]:
        digests = sorted({getattr(u.collection, attribute) for u in self._visible(owner) if u.collection is not None})
        return digests[page * page_size : (page + 1) * page_size], len(digests)

    # --- CollectionArrays

    def _records(self, upload_id: uuid.UUID) -> list[FakeRecord]:
        upload = self.uploads.get(upload_id)
        return upload.records if upload is not None else []

    def names_bytes(self, upload_id: uuid.UUID) -> int:
        return sum(len(r.seq_id.encode("utf-8")) for r in self._records(upload_id))

    def collection_arrays(self, upload_id: uuid.UUID) -> dict[str, list[Any]]:
        records = self._records(upload_id)
        return {
            "lengths": [r.length for r in records],
            "name_length_pairs": [{"length": r.length, "name": r.seq_id} for r in records],
            "names": [r.seq_id for r in records],
            "sequences": [r.refget for r in records],
            "sorted_sequences": sorted(r.refget for r in records),
        }

    # --- StoreHealth

    def ping(self) -> None:
        if not self.healthy:
            raise ConnectionError("the store does not answer")

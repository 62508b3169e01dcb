"""What the read API's use cases need from the store, as narrow interfaces (``typing.Protocol``).

The use cases in ``shared/usecases/refget.py`` depend on these, never on an adapter: the refget
service wires in the Postgres one (``shared/postgres/refget.py``, ``PostgresReads``), the unit
tests in-memory ones (``tests/unit/fakes_reads.py``); both pass the same contract suite
(``tests/contract/test_reads_contract.py``).

Every read takes ``owner``: the name of the owner whose finished uploads the reader sees, or None
for all of them (an admin key, or public reading). Another owner's sequence or collection is not
found, as one that does not exist.

``RecordReads`` is the intake's (``shared/usecases/records.py``): an upload's records read back a
group at a time, its adapter ``PostgresRecords`` (``shared/postgres/records.py``), its fake
``tests/unit/fakes_records.py``, their contract ``tests/contract/test_records_contract.py``. Who
may read an upload is the use case's to decide, before it asks.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from shared.domain.reads import ReadSpan, RecordSize, StoredCollection, StoredSequence
from shared.domain.record_schema import Record


class SequenceIndex(Protocol):
    def find_sequence(self, digest: str, owner: str | None) -> StoredSequence | None:
        """By MD5 (32 lower-case hex digits) or by GA4GH digest (``SQ.…``); None if no finished
        upload ``owner`` sees holds it. Several hold it: a circular one's record, if any."""
        ...

    def aliases(self, sequence: StoredSequence, owner: str | None, limit: int = 100) -> list[str]:
        """The distinct record names under which finished uploads ``owner`` sees hold this
        sequence, in the store's order of names, at most ``limit``."""
        ...


class ResidueReads(Protocol):
    def read_span(self, sequence: StoredSequence, span: ReadSpan) -> list[bytes]:
        """The residues of one span as stored (case kept), one piece per part read (none for an
        empty inline piece). Each call is a read of its own: nothing is held between spans.
        Raises ``SequenceChanged`` if the record no longer holds this sequence."""
        ...


class SequenceReads(SequenceIndex, ResidueReads, Protocol):
    """Everything the sequence routes read."""


class CollectionIndex(Protocol):
    def find_collection(self, digest: str, owner: str | None, attribute: str = "digest") -> StoredCollection | None:
        """A finished upload ``owner`` sees whose collection (or whose ``attribute``'s array) has
        this digest; None if none."""
        ...

    def list_collections(
        self, filters: Mapping[str, str], page: int, page_size: int, owner: str | None
    ) -> tuple[list[str], int]:
        """The distinct collection digests of the finished uploads ``owner`` sees whose attributes
        match every filter (attribute name: digest), one page of them in the store's order of
        digests, and how many there are in all."""
        ...

    def list_attribute_digests(
        self, attribute: str, page: int, page_size: int, owner: str | None
    ) -> tuple[list[str], int]:
        """The distinct digests of one attribute over the finished uploads ``owner`` sees: a page
        in the store's order, and how many there are in all."""
        ...


class CollectionArrays(Protocol):
    def names_bytes(self, upload_id: uuid.UUID) -> int:
        """The bytes (UTF-8) of an upload's record names together: what its level 2 holds beyond
        fixed-size elements, known before the arrays are read."""
        ...

    def collection_arrays(self, upload_id: uuid.UUID) -> dict[str, list[Any]]:
        """Level 2: the attribute arrays of an upload's records in file order (``lengths``,
        ``name_length_pairs``, ``names``, ``sequences``, ``sorted_sequences``)."""
        ...


class CollectionReads(CollectionIndex, CollectionArrays, Protocol):
    """Everything the collection routes read."""


class StoreHealth(Protocol):
    def ping(self) -> None:
        """Raises if the store cannot answer a query now."""
        ...


class RecordReads(Protocol):
    """An upload's records as stored, read at one generation while the upload is ``done`` at it.

    Every call is one read on a session taken for it alone, and raises ``RecordsChanged`` when the
    upload is not done at ``generation`` (then or any more): a page read group by group never
    mixes two generations' records, and never holds a session while its client reads.
    """

    def record_sizes(
        self,
        upload_id: uuid.UUID,
        generation: int,
        first: int,
        limit: int,
        name_prefix: str | None,
        *,
        residues: bool,
        quality: bool,
    ) -> list[RecordSize]:
        """The first ``limit`` records with ordinal at least ``first`` (and, given ``name_prefix``,
        whose ``seq_id`` starts with it), in ordinal order; each one's bytes count its inline
        residues and its qualities only when they are to be read (``residues``, ``quality``)."""
        ...

    def read_records(
        self, upload_id: uuid.UUID, generation: int, ordinals: Sequence[int], *, residues: bool, quality: bool
    ) -> list[Record]:
        """These records (ascending ordinals the upload holds), in order, every field as stored;
        ``residues``: a record's inline residues (None when stored in parts, or not asked for);
        ``quality``: its qualities (None when it has none, or not asked for)."""
        ...

    def read_parts(
        self, upload_id: uuid.UUID, generation: int, ordinal: int, first_part: int, last_part: int
    ) -> list[bytes]:
        """Whole parts ``first_part..last_part`` of a record stored in parts, raw ASCII, in order."""
        ...

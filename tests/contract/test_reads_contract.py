"""The read ports' contract (``shared/domain/read_ports.py``), run against the unit tests' fake
(``tests/unit/fakes_reads.py``) and the Postgres adapter (``PostgresReads``) on the run's database:
the fake the route tests use answers as the store does, or this fails.

Every test puts its own uploads in through the world it is given (the fake's ``add_upload``; for
Postgres, the upload store the pipeline writes with: claim, batches, parse end, finish with the
collection), owned by owners of its own and of residues of its own, so that what other tests
stored in the run's database does not change its answers. Orders the store does not promise (a
listing's digests sort by the database's collation) are checked as pages that cover the listing
once; names are chosen that every collation orders alike.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pytest
from psycopg.types.json import Jsonb

from shared.domain.messages import ParseCompleted
from shared.domain.read_ports import CollectionReads, SequenceReads, StoreHealth
from shared.domain.reads import ReadSpan, SequenceChanged, StoredSequence, read_spans
from shared.domain.record_schema import Part
from shared.domain.uploads import NameCounts, ObjectCreated, ResultLocation
from shared.postgres.connection import Database, connect
from shared.postgres.migrate import migrate, runtime_role
from shared.postgres.refget import PostgresReads
from shared.postgres.uploads import PostgresUploads
from shared.runtime.settings import Settings
from tests.builders import record, sequence_batch
from tests.unit.fakes_reads import FakeReads, FakeRecord, collection_of, md5_of, refget_of


class Reads(SequenceReads, CollectionReads, StoreHealth, Protocol):
    """Every read port at once: what both stores are."""


class World(Protocol):
    """A store to read, and how a test puts uploads in it."""

    reads: Reads

    def add_upload(
        self,
        records: list[tuple[str, str]],
        *,
        owner: str | None = None,
        circular: bool = False,
        part_size: int = 0,
        done: bool = True,
        labels: dict[str, str] | None = None,
    ) -> uuid.UUID: ...

    def reprocess(self, upload_id: uuid.UUID) -> None:
        """The upload's object written again: a new generation starts, the old rows are gone."""


class FakeWorld:
    """The fake arranges its own data: a test's ``add_upload`` and ``reprocess`` are the fake's."""

    def __init__(self) -> None:
        self.fake = FakeReads()
        self.reads: Reads = self.fake
        self.add_upload = self.fake.add_upload
        self.reprocess = self.fake.reprocess


class PostgresWorld:
    """The run's database, written through ``PostgresUploads`` as the pipeline writes it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = PostgresReads(settings)
        self.store.open()
        self.reads: Reads = self.store
        self.uploads = PostgresUploads(Database(settings))
        self.keys: dict[uuid.UUID, str] = {}

    def close(self) -> None:
        self.uploads.reset()
        self.store.close()

    @staticmethod
    def _event(key: str, etag: str, when: datetime) -> ObjectCreated:
        return ObjectCreated(bucket="contract-reads", key=key, size=10, etag=etag, sequencer="01", event_time=when)

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
        key = f"reads/{uuid.uuid4()}.fa"
        upload = self.uploads.claim(self._event(key, "e1", datetime.now(UTC)), confirmed=True).upload
        self.keys[upload.id] = key
        with connect(self.settings, autocommit=True) as conn:  # what a registration would have set
            conn.execute(
                "UPDATE uploads SET owner = %s, circular = %s, labels = %s WHERE id = %s",
                (owner, circular, Jsonb(labels or {}), upload.id),
            )
        assert self.uploads.start_parsing(upload.id, upload.generation)
        rows, parts = [], []
        for ordinal, (name, residues) in enumerate(records):
            stored = FakeRecord(name, residues)
            pieces = (
                [residues[i : i + part_size] for i in range(0, len(residues), part_size)]
                if part_size and len(residues) > part_size
                else []
            )
            parts += [Part(ordinal, n, piece) for n, piece in enumerate(pieces)]
            rows.append(
                record(
                    ordinal, line_number=2 * ordinal + 1, gene_name=name, seq_id=name, length=stored.length,
                    part_count=len(pieces), residues=None if pieces else residues, md5=stored.md5,
                    refget=stored.refget,
                )
            )  # fmt: skip
        assert self.uploads.store_batch(sequence_batch(upload.id, upload.generation, 0, rows, parts)).stored
        if not done:
            return upload.id
        self.uploads.record_parse_completed(
            ParseCompleted(
                upload_id=upload.id, generation=upload.generation, batch_count=1, record_count=len(rows),
                source_bytes=10, format="fasta",
            )
        )  # fmt: skip
        result = ResultLocation("contract-results", f"{upload.id}.json", 1, len(rows))
        collection = collection_of([FakeRecord(name, residues) for name, residues in records])
        assert self.uploads.finish_assembly(upload.id, upload.generation, result, NameCounts(0, 0), collection)
        return upload.id

    def reprocess(self, upload_id: uuid.UUID) -> None:
        later = datetime.now(UTC) + timedelta(seconds=5)
        claim = self.uploads.claim(self._event(self.keys[upload_id], "e2", later), confirmed=True)
        assert claim.upload.generation == 2


@pytest.fixture(scope="module")
def migrated(settings: Settings) -> Settings:
    with connect(settings, autocommit=True, owner=True) as owner:
        migrate(owner, runtime_role(settings))
    return settings


@pytest.fixture(params=["fake", "postgres"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    if request.param == "fake":
        yield FakeWorld()
        return
    postgres = PostgresWorld(request.getfixturevalue("migrated"))
    try:
        yield postgres
    finally:
        postgres.close()


def owner() -> str:
    """An owner name of this test alone."""
    return f"reader-{secrets.token_hex(4)}"


def residues(length: int) -> str:
    """Residues of this test alone, mixed case (stored as given, digested upper-cased)."""
    letters = "ACGTacgt"
    return "".join(letters[b % 8] for b in secrets.token_bytes(length))


# --- SequenceIndex ----------------------------------------------------------------------------------


def test_a_sequence_is_found_by_md5_and_by_its_ga4gh_digest(world: World) -> None:
    inline, parted = residues(4), residues(10)  # parts of 4: the first fits in its record
    upload = world.add_upload([("one", inline), ("two", parted)], part_size=4)
    for digest in (md5_of(inline), refget_of(inline)):
        assert world.reads.find_sequence(digest, None) == StoredSequence(
            upload, 0, 4, 0, 4, md5_of(inline), refget_of(inline), circular=False
        )
    for digest in (md5_of(parted), refget_of(parted)):
        assert world.reads.find_sequence(digest, None) == StoredSequence(
            upload, 1, 10, 3, 4, md5_of(parted), refget_of(parted), circular=False
        )
    assert world.reads.find_sequence(md5_of(residues(5)), None) is None
    assert world.reads.find_sequence(refget_of(residues(5)), None) is None


def test_a_sequence_is_seen_by_its_owner_and_by_everyone_else_as_absent(world: World) -> None:
    alice, bob = owner(), owner()
    mine, ownerless, unfinished = residues(8), residues(8), residues(8)
    world.add_upload([("s", mine)], owner=alice)
    world.add_upload([("s", ownerless)])
    world.add_upload([("s", unfinished)], owner=alice, done=False)
    assert world.reads.find_sequence(md5_of(mine), alice) is not None
    assert world.reads.find_sequence(md5_of(mine), None) is not None
    assert world.reads.find_sequence(md5_of(mine), bob) is None
    assert world.reads.find_sequence(md5_of(ownerless), None) is not None
    assert world.reads.find_sequence(md5_of(ownerless), alice) is None
    for reader in (alice, None):
        assert world.reads.find_sequence(md5_of(unfinished), reader) is None


def test_a_sequence_several_uploads_hold_is_the_circular_ones(world: World) -> None:
    shared = residues(12)
    world.add_upload([("linear", shared)])
    circular = world.add_upload([("ring", shared)], circular=True)
    world.add_upload([("linear-again", shared)])
    found = world.reads.find_sequence(refget_of(shared), None)
    assert found is not None and found.circular and found.upload_id == circular


def test_aliases_are_the_distinct_names_of_the_uploads_the_reader_sees(world: World) -> None:
    alice, bob = owner(), owner()
    shared = residues(7)
    world.add_upload([("gamma", shared), ("alpha", shared), ("other", residues(7))], owner=alice)
    world.add_upload([("beta", shared), ("alpha", shared)], owner=alice)
    world.add_upload([("delta", shared)], owner=bob)
    world.add_upload([("epsilon", shared)], owner=alice, done=False)
    found = world.reads.find_sequence(md5_of(shared), alice)
    assert found is not None
    assert world.reads.aliases(found, alice) == ["alpha", "beta", "gamma"]
    assert world.reads.aliases(found, alice, limit=2) == ["alpha", "beta"]
    assert world.reads.aliases(found, bob) == ["delta"]
    assert world.reads.aliases(found, None) == ["alpha", "beta", "delta", "gamma"]
    assert world.reads.aliases(found, owner()) == []


# --- ResidueReads -------------------------------------------------------------------------------------


def _read(world: World, found: StoredSequence, start: int, end: int) -> list[list[bytes]]:
    return [world.reads.read_span(found, span) for span in read_spans(found, start, end)]


def test_an_inline_sequence_reads_its_slice_as_stored(world: World) -> None:
    stored = residues(9)
    world.add_upload([("s", stored)])
    found = world.reads.find_sequence(md5_of(stored), None)
    assert found is not None and found.part_count == 0
    for start, end in ((0, 9), (2, 5), (8, 9), (0, 1)):
        assert _read(world, found, start, end) == [[stored[start:end].encode()]]
    assert world.reads.read_span(found, ReadSpan(4, 4, 0, 0)) == []  # nothing to read: no piece


def test_a_sequence_in_parts_reads_only_the_overlapping_residues_of_each_part(world: World) -> None:
    stored = residues(23)  # parts of 4: five whole and one of 3
    world.add_upload([("s", stored)], part_size=4)
    found = world.reads.find_sequence(md5_of(stored), None)
    assert found is not None and (found.part_count, found.part_size) == (6, 4)
    for start, end in ((0, 23), (1, 3), (3, 9), (4, 8), (5, 22), (20, 23), (22, 23)):
        pieces = _read(world, found, start, end)
        spans = read_spans(found, start, end)
        assert [len(p) for p in pieces] == [s.last_part - s.first_part + 1 for s in spans]
        expected = [
            stored[max(start, n * 4) : min(end, n * 4 + 4)].encode() for n in range(start // 4, (end - 1) // 4 + 1)
        ]
        assert [piece for span in pieces for piece in span] == expected


def test_a_sequence_whose_upload_was_processed_again_is_changed(world: World) -> None:
    inline, parted = residues(5), residues(9)
    upload = world.add_upload([("a", inline), ("b", parted)], part_size=4)
    found = [world.reads.find_sequence(md5_of(r), None) for r in (inline, parted)]
    world.reprocess(upload)
    for sequence in found:
        assert sequence is not None
        with pytest.raises(SequenceChanged):
            world.reads.read_span(sequence, read_spans(sequence, 0, sequence.length)[0])
        assert world.reads.find_sequence(sequence.md5, None) is None


# --- CollectionIndex, CollectionArrays -------------------------------------------------------------


def test_a_collection_is_found_by_its_digest_and_by_each_attributes(world: World) -> None:
    alice, bob = owner(), owner()
    records = [("chr1", residues(5)), ("chr2", residues(3))]
    labels = {"sample": "s1"}
    upload = world.add_upload(records, owner=alice, labels=labels)
    collection = collection_of([FakeRecord(*r) for r in records])
    assert world.reads.find_collection(collection.digest, alice) == (upload, collection, labels)
    assert world.reads.find_collection(collection.digest, None) == (upload, collection, labels)
    assert world.reads.find_collection(collection.digest, bob) is None
    for name, digest in collection.level1().items():
        assert world.reads.find_collection(digest, alice, attribute=name) == (upload, collection, labels)
    assert world.reads.find_collection(collection.names, alice, attribute="lengths") is None
    unfinished = collection_of([FakeRecord("x", residues(4))])
    world.add_upload([("x", "ACGT")], owner=alice, done=False)
    assert world.reads.find_collection(unfinished.digest, None) is None


def test_a_collections_arrays_and_the_bytes_of_its_names(world: World) -> None:
    records = [("zeta", residues(4)), ("été", residues(0)), ("alpha", residues(6))]
    upload = world.add_upload(records, part_size=4)
    stored = [FakeRecord(*r) for r in records]
    assert world.reads.names_bytes(upload) == 4 + len("été".encode()) + 5
    assert world.reads.collection_arrays(upload) == {
        "lengths": [4, 0, 6],
        "name_length_pairs": [{"length": r.length, "name": r.seq_id} for r in stored],
        "names": ["zeta", "été", "alpha"],
        "sequences": [r.refget for r in stored],
        "sorted_sequences": sorted(r.refget for r in stored),
    }
    assert world.reads.names_bytes(uuid.uuid4()) == 0
    assert world.reads.collection_arrays(uuid.uuid4()) == {
        "lengths": [], "name_length_pairs": [], "names": [], "sequences": [], "sorted_sequences": []
    }  # fmt: skip


def _every_page(listing: Any, page_size: int) -> tuple[list[str], int]:
    """Every page of a listing in turn: the digests of all of them, and the total each page gave."""
    results: list[str] = []
    totals = set()
    for page in range(10):
        found, total = listing(page, page_size)
        totals.add(total)
        assert len(found) <= page_size
        results += found
    assert len(totals) == 1, "the total is the same on every page"
    return results, totals.pop()


def test_collections_are_listed_distinct_filtered_and_paged(world: World) -> None:
    alice, bob = owner(), owner()
    first = [("chr1", residues(4)), ("chr2", residues(4))]
    second = [("chr1", residues(5))]
    third = [("chrX", first[0][1])]  # the first's sequence under another name
    digests = [collection_of([FakeRecord(*r) for r in records]) for records in (first, second, third)]
    for records in (first, first, second, third):  # the first twice: one collection
        world.add_upload(records, owner=alice)
    world.add_upload([("chr1", residues(6))], owner=bob)
    world.add_upload([("chr1", residues(6))], owner=alice, done=False)

    listed, total = _every_page(lambda page, size: world.reads.list_collections({}, page, size, alice), 2)
    assert total == 3 and sorted(listed) == sorted(c.digest for c in digests)
    chr1 = {"names": digests[1].names}  # of alice's finished ones, the second alone is named ["chr1"]
    listed, total = _every_page(lambda page, size: world.reads.list_collections(chr1, page, size, alice), 1)
    assert (listed, total) == ([digests[1].digest], 1)
    by_sequence = {"sorted_sequences": digests[2].sorted_sequences}
    assert world.reads.list_collections(by_sequence, 0, 10, alice) == ([digests[2].digest], 1)
    both = {"names": digests[0].names, "lengths": digests[0].lengths}
    assert world.reads.list_collections(both, 0, 10, alice) == ([digests[0].digest], 1)
    mismatched = {"names": digests[0].names, "sequences": digests[1].sequences}
    assert world.reads.list_collections(mismatched, 0, 10, alice) == ([], 0)
    transient = {"sorted_name_length_pairs": digests[0].sorted_name_length_pairs}
    assert world.reads.list_collections(transient, 0, 10, alice) == ([digests[0].digest], 1)
    assert world.reads.list_collections({}, 5, 10, alice) == ([], 3)
    assert world.reads.list_collections({}, 0, 10, owner()) == ([], 0)
    everyone = world.reads.list_collections({"names": digests[0].names}, 0, 1000, None)
    assert digests[0].digest in everyone[0]  # admin and public readers see every owner's


def test_an_attributes_digests_are_listed_distinct_and_paged(world: World) -> None:
    alice = owner()
    shared = residues(4)
    lists = [[("chr1", shared)], [("chr2", shared)], [("chr1", residues(4))], [("chr1", shared)]]
    for records in lists:
        world.add_upload(records, owner=alice)
    collections = [collection_of([FakeRecord(*r) for r in records]) for records in lists]
    for attribute in ("names", "sequences", "lengths", "name_length_pairs", "sorted_sequences"):
        expected = {getattr(c, attribute) for c in collections}
        listed, total = _every_page(
            lambda page, size, name=attribute: world.reads.list_attribute_digests(name, page, size, alice), 1
        )
        assert total == len(expected) and sorted(listed) == sorted(expected), attribute
    assert world.reads.list_attribute_digests("names", 0, 10, owner()) == ([], 0)


# --- StoreHealth ------------------------------------------------------------------------------------------


def test_a_store_that_answers_pings(world: World) -> None:
    world.reads.ping()
    assert world.reads.find_sequence(md5_of(residues(3)), None) is None  # and reads after it


# --- the adapter's own promise: a stream holds no session between its spans ----------------------------


def test_postgres_gives_each_spans_session_back_before_the_next(migrated: Settings) -> None:
    world = PostgresWorld(migrated)
    try:
        stored = residues(40)
        world.add_upload([("s", stored)], part_size=4)
        found = world.reads.find_sequence(md5_of(stored), None)
        assert found is not None and len(read_spans(found, 0, 40)) == 5
        pool = world.store.pool
        for span in read_spans(found, 0, 40):
            assert world.reads.read_span(found, span)
            stats = pool.get_stats()
            assert stats.get("pool_available", 0) == stats["pool_size"], stats  # none checked out
    finally:
        world.close()

"""``RecordReads``' contract (``shared/domain/read_ports.py``), run against the unit tests' fake
(``tests/unit/fakes_records.py`` over ``FakeUploads``) and the Postgres adapter (``PostgresRecords``
on an HTTP service's pool): the fake the route tests use answers as the store does, or this fails.

Each side's upload store writes the uploads the way the pipeline does (claim, parse, a batch of
records and parts, parse end, finish), so the records read back are the persister's rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pytest

from shared.domain.messages import ParseCompleted
from shared.domain.read_ports import RecordReads
from shared.domain.reads import RecordsChanged
from shared.domain.record_schema import Part, Record
from shared.domain.uploads import NameCounts, ObjectCreated, ResultLocation
from shared.postgres.connection import request_pool
from shared.postgres.records import PostgresRecords
from shared.postgres.uploads import PostgresUploads
from shared.runtime.settings import Settings
from tests.builders import record, sequence_batch
from tests.unit.fakes import FakeUploads
from tests.unit.fakes_records import FakeRecords


class Writer(Protocol):
    """What of the upload store the arrangements use (both stores have it)."""

    def claim(self, event: ObjectCreated, confirmed: bool) -> Any: ...
    def start_parsing(self, upload_id: uuid.UUID, generation: int) -> bool: ...
    def store_batch(self, batch: Any) -> Any: ...
    def record_parse_completed(self, done: ParseCompleted) -> Any: ...
    def finish_assembly(self, upload_id: uuid.UUID, generation: int, result: Any, counts: Any, coll: Any) -> bool: ...


class World:
    def __init__(self, uploads: Writer, reads: RecordReads) -> None:
        self.uploads = uploads
        self.reads = reads
        self.keys: dict[uuid.UUID, str] = {}

    @staticmethod
    def event(key: str, etag: str, when: datetime) -> ObjectCreated:
        return ObjectCreated(bucket="contract-records", key=key, size=10, etag=etag, sequencer="01", event_time=when)

    def add_upload(self, records: list[Record], parts: list[Part], *, done: bool = True) -> tuple[uuid.UUID, int]:
        key = f"records/{uuid.uuid4()}.fq"
        upload = self.uploads.claim(self.event(key, "e1", datetime.now(UTC)), confirmed=True).upload
        self.keys[upload.id] = key
        assert self.uploads.start_parsing(upload.id, upload.generation)
        assert self.uploads.store_batch(sequence_batch(upload.id, upload.generation, 0, records, parts)).stored
        if done:
            self.uploads.record_parse_completed(
                ParseCompleted(
                    upload_id=upload.id, generation=upload.generation, batch_count=1, record_count=len(records),
                    source_bytes=10, format="fastq",
                )
            )  # fmt: skip
            result = ResultLocation("contract-results", f"{upload.id}.json", 1, len(records))
            collection = FakeUploads.collection_of(records)
            assert self.uploads.finish_assembly(upload.id, upload.generation, result, NameCounts(0, 0), collection)
        return upload.id, upload.generation

    def reprocess(self, upload_id: uuid.UUID) -> None:
        later = datetime.now(UTC) + timedelta(seconds=5)
        claim = self.uploads.claim(self.event(self.keys[upload_id], "e2", later), confirmed=True)
        assert claim.upload.generation == 2


@pytest.fixture(params=["fake", "postgres"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    if request.param == "fake":
        fake = FakeUploads()
        yield World(fake, FakeRecords(fake))
        return
    settings: Settings = request.getfixturevalue("contract_settings")
    pool = request_pool(settings)
    pool.open(wait=True, timeout=60)
    try:
        yield World(PostgresUploads(pool), PostgresRecords(pool))
    finally:
        pool.close()


PART = 4  # the parts of a record stored in parts, in these tests


def stored() -> tuple[list[Record], list[Part]]:
    """Five records: FASTQ-like ones with qualities, a CSV-like one with attributes, one in parts."""
    long_residues = "ACGTACGTAC"
    records = [
        record(0, line_number=1, gene_name="read1 lane 1", seq_id="read1", description="lane 1", length=3,
               residues="ACg", quality="II#", md5="m0", refget="SQ.0"),
        record(1, line_number=5, gene_name="read2", seq_id="read2", length=2, residues="TT", quality="#I",
               md5="m1", refget="SQ.1"),
        record(2, line_number=9, gene_name="other", seq_id="other", length=0, residues="", quality="",
               md5="m2", refget="SQ.2"),
        record(3, line_number=13, gene_name="read10 é", seq_id="read10", description="é", length=4,
               residues="NNNN", attributes={"sample": "s1"}, md5="m3", refget="SQ.3"),
        record(4, line_number=17, gene_name="chr", seq_id="chr", length=len(long_residues), part_count=3,
               residues=None, md5="m4", refget="SQ.4"),
    ]  # fmt: skip
    parts = [Part(4, n, long_residues[n * PART : (n + 1) * PART]) for n in range(3)]
    return records, parts


def test_sizes_come_in_ordinal_order_from_first_up_to_limit(world: World) -> None:
    records, parts = stored()
    upload_id, generation = world.add_upload(records, parts)
    sizes = world.reads.record_sizes(upload_id, generation, 0, 100, None, residues=True, quality=True)
    assert [(s.ordinal, s.part_count) for s in sizes] == [(0, 0), (1, 0), (2, 0), (3, 0), (4, 3)]
    page = world.reads.record_sizes(upload_id, generation, 1, 2, None, residues=True, quality=True)
    assert [s.ordinal for s in page] == [1, 2]
    assert world.reads.record_sizes(upload_id, generation, 5, 10, None, residues=True, quality=True) == []


def test_sizes_filter_by_name_prefix_byte_for_byte(world: World) -> None:
    records, parts = stored()
    upload_id, generation = world.add_upload(records, parts)

    def named(prefix: str) -> list[int]:
        return [s.ordinal for s in world.reads.record_sizes(upload_id, generation, 0, 10, prefix, residues=False,
                                                            quality=False)]  # fmt: skip

    assert named("read") == [0, 1, 3]
    assert named("read1") == [0, 3]
    assert named("READ") == [] and named("%") == [] and named("_ead1") == []  # no case folding, no wildcards
    assert named("") == [0, 1, 2, 3, 4]


def test_sizes_count_the_payloads_only_when_they_are_read(world: World) -> None:
    big = "A" * 5000
    records = [record(0, seq_id="a", gene_name="a", length=5000, residues=big, quality="I" * 5000)]
    upload_id, generation = world.add_upload(records, [])

    def size(*, residues: bool, quality: bool) -> int:
        found = world.reads.record_sizes(upload_id, generation, 0, 1, None, residues=residues, quality=quality)
        return found[0].bytes

    bare = size(residues=False, quality=False)
    assert 0 < bare < 100
    assert size(residues=True, quality=False) == size(residues=False, quality=True) == bare + 5000
    assert size(residues=True, quality=True) == bare + 10000


def test_records_read_back_as_stored_payloads_when_asked(world: World) -> None:
    records, parts = stored()
    upload_id, generation = world.add_upload(records, parts)
    every = world.reads.read_records(upload_id, generation, [0, 1, 2, 3, 4], residues=True, quality=True)
    assert every == records
    assert every[3].attributes == {"sample": "s1"} and every[3].gene_name == "read10 é"
    bare = world.reads.read_records(upload_id, generation, [0, 3], residues=False, quality=False)
    assert bare == [records[0]._replace(residues=None, quality=None), records[3]._replace(residues=None)]
    assert world.reads.read_records(upload_id, generation, [], residues=True, quality=True) == []


def test_parts_read_back_whole_in_order(world: World) -> None:
    records, parts = stored()
    upload_id, generation = world.add_upload(records, parts)
    assert world.reads.read_parts(upload_id, generation, 4, 0, 1) == [b"ACGT", b"ACGT"]
    assert world.reads.read_parts(upload_id, generation, 4, 2, 2) == [b"AC"]
    with pytest.raises(RecordsChanged):
        world.reads.read_parts(upload_id, generation, 4, 2, 3)  # past the last part


def test_a_done_upload_without_records_has_none_to_size(world: World) -> None:
    upload_id, generation = world.add_upload([], [])
    assert world.reads.record_sizes(upload_id, generation, 0, 10, None, residues=True, quality=True) == []


def test_nothing_is_read_unless_the_upload_is_done_at_the_generation(world: World) -> None:
    records, parts = stored()
    running, generation = world.add_upload(records, parts, done=False)
    done, done_generation = world.add_upload(records, parts)
    calls = [
        lambda u, g: world.reads.record_sizes(u, g, 0, 10, None, residues=True, quality=True),
        lambda u, g: world.reads.read_records(u, g, [0], residues=True, quality=True),
        lambda u, g: world.reads.read_parts(u, g, 4, 0, 0),
    ]
    for call in calls:
        for upload_id, gen in ((running, generation), (done, done_generation + 1), (uuid.uuid4(), 1)):
            with pytest.raises(RecordsChanged):
                call(upload_id, gen)
    world.reprocess(done)
    for call in calls:
        with pytest.raises(RecordsChanged):
            call(done, done_generation)


def test_a_record_missing_from_a_group_is_a_change(world: World) -> None:
    records, _ = stored()
    upload_id, generation = world.add_upload(records[:2], [])
    with pytest.raises(RecordsChanged):
        world.reads.read_records(upload_id, generation, [1, 2], residues=True, quality=True)

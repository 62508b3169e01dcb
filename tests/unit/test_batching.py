from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

import pytest
from refget.utils import canonical_str, sha512t24u_digest

from services.parser.batching import Batcher
from shared.messages import SequenceBatch
from shared.parsing.alphabet import get_alphabet
from shared.parsing.engine import SequenceStream
from shared.parsing.records import Event, WholeRecord
from shared.record_schema import Record
from shared.seqcol import pair_digest

UPLOAD = uuid.UUID(int=1)


def make_fasta(seed: int) -> bytes:
    rng = random.Random(seed)
    out = []
    for i in range(40):
        length = rng.choice([0, 3, 100, 2500, 9000])
        seq = "".join(rng.choice("ACGT") for _ in range(length))
        out.append(f">r{i}\n" + "\n".join(seq[j : j + 70] for j in range(0, length, 70)))
    return ("\n".join(out) + "\n").encode()


def batches_of(data: bytes, chunk: int, part: int = 1000, batch: int = 4000) -> list[SequenceBatch]:
    stream = SequenceStream(get_alphabet("nucleotide"))
    batcher = Batcher(UPLOAD, 1, part, batch)
    out: list[SequenceBatch] = []
    offset = 0
    for i in range(0, len(data), chunk):
        offset += len(data[i : i + chunk])
        out += batcher.add(stream.feed(data[i : i + chunk]), offset)
    out += [*batcher.add(stream.finish(), offset), *batcher.finish(offset)]
    return out


def content(batches: list[SequenceBatch]) -> list[tuple[object, ...]]:
    return [(b.batch_no, b.parts.model_dump(), b.records.model_dump()) for b in batches]


@pytest.mark.parametrize("chunk", [1, 97, 4096, 10**9])
def test_batches_do_not_depend_on_chunking(chunk: int) -> None:
    data = make_fasta(1)
    assert content(batches_of(data, chunk)) == content(batches_of(data, 10**9))


def test_parts_and_batches_are_bounded_and_complete() -> None:
    data = make_fasta(2)
    batches = batches_of(data, 333)
    sequences: dict[int, str] = {}
    expected_part = {}
    for batch in batches:
        assert sum(len(p.residues) for p in batch.parts.rows()) <= 4000 + 1000
        for ordinal, part_no, residues in batch.parts.rows():
            assert len(residues) <= 1000
            assert part_no == expected_part.get(ordinal, 0)
            expected_part[ordinal] = part_no + 1
            sequences[ordinal] = sequences.get(ordinal, "") + residues
    records = [r for b in batches for r in b.records.rows()]
    assert [r.ordinal for r in records] == list(range(40))
    for ordinal, length, part_count, inline in ((r.ordinal, r.length, r.part_count, r.residues) for r in records):
        assert expected_part.get(ordinal, 0) == part_count
        if length < 1000:  # shorter than a part: inline, no parts
            assert part_count == 0 and inline is not None and len(inline) == length
        else:
            assert inline is None and len(sequences[ordinal]) == length
    # every batch survives the wire format
    for batch in batches:
        assert SequenceBatch.model_validate_json(batch.to_bytes()) == batch


def test_batches_count_names_qualities_and_attributes() -> None:
    """Large headers used to be free: a 17 MiB file of 60 KB headers became one 34 MiB message."""
    data = b"".join(b">r%d " % i + b"h" * 60_000 + b"\nACGT\n" for i in range(300))
    batch_bytes = 1024 * 1024
    batches = batches_of(data, 65536, part=1000, batch=batch_bytes)
    assert len(batches) > 10
    one_record = 2 * 60_100 + 1000
    assert max(len(b.to_bytes()) for b in batches) <= batch_bytes + one_record


def test_batches_come_out_as_the_events_go_in() -> None:
    stream = SequenceStream(get_alphabet("nucleotide"))
    batcher = Batcher(UPLOAD, 1, 1000, 4000)
    taken = 0

    def events() -> Iterator[Event]:
        nonlocal taken
        for event in stream.feed(make_fasta(3)):
            taken += 1
            yield event

    produced = batcher.add(events(), 0)
    first = next(produced)
    assert first.batch_no == 0 and taken < 40  # the rest of the file is not parsed yet


@pytest.mark.parametrize("header", ['"' * 30_000, "\U0001f600" * 15_000, "\\" * 30_000])
def test_batches_are_bounded_by_their_json_bytes_whatever_the_names(header: str) -> None:
    """Quotes and backslashes double in JSON, a 4-byte character counts as one in len(): a batch must
    still stay within its bytes (plus one record), counted as they travel."""
    data = b"".join(b">r%d " % i + header.encode() + b"\nACGT\n" for i in range(120))
    batch_bytes = 1024 * 1024
    batches = batches_of(data, 65536, part=1000, batch=batch_bytes)
    one_record = 2 * 2 * len(header.encode()) + 1000
    assert max(len(b.to_bytes()) for b in batches) <= batch_bytes + one_record


def test_a_whole_record_is_the_record_its_fields_name() -> None:
    """The hot path builds rows positionally: each value must land in the field of its name."""
    read = WholeRecord(
        ordinal=7,
        line_number=29,
        gene_name="r7 some read",
        seq_id="r7",
        description="some read",
        data=b"ACGT",
        md5="md5-of-it",
        refget="SQ.digest",
        attributes={"k": "v"},
        quality=b"IIII",
    )
    batcher = Batcher(UPLOAD, 1, 1000, 4000)
    [batch] = [*batcher.add([read], 10), *batcher.finish(10)]
    [record] = batch.records.rows()
    assert record == Record(
        ordinal=7,
        line_number=29,
        gene_name="r7 some read",
        seq_id="r7",
        description="some read",
        length=4,
        part_count=0,
        md5="md5-of-it",
        refget="SQ.digest",
        attributes={"k": "v"},
        residues="ACGT",
        quality="IIII",
        pair_digest=pair_digest("r7", 4),
    )


def test_every_record_carries_its_name_length_pair_digest() -> None:
    """Whole or in parts, each record's pair digest is the seqcol one (``refget``'s canonical form)."""
    records = [r for b in batches_of(make_fasta(4), 4096) for r in b.records.rows()]
    assert any(r.part_count for r in records) and any(not r.part_count for r in records)
    for r in records:
        assert r.pair_digest == sha512t24u_digest(canonical_str({"length": r.length, "name": r.seq_id}))

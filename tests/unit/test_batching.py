from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

import pytest
from refget.utils import canonical_str, sha512t24u_digest

from services.parser import batching
from services.parser.batching import Batcher
from shared.domain.messages import SequenceBatch
from shared.domain.record_schema import Record
from shared.domain.seqcol import pair_digest
from shared.parsing.alphabet import get_alphabet
from shared.parsing.engine import SequenceStream
from shared.parsing.records import Event, WholeRecord
from tests.unit.helpers import require_native

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
    assert expected_part, "no record was cut into parts: the part checks above checked nothing"
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


@pytest.fixture(params=["C", "Python"])
def rows_built_in(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test that takes it runs twice: short records turned into rows by ``_batch_rows.c``, and
    by ``Batcher._whole`` alone."""
    require_native(batching)  # the C run must be C, whichever run this is
    if request.param == "Python":
        monkeypatch.setattr(batching, "accelerator", None)
    return str(request.param)


def test_a_whole_record_is_the_record_its_fields_name(rows_built_in: str) -> None:
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


def batches_by_pieces(
    data: bytes, fmt: str, chunk: int, part: int, batch: int, max_records: int, native: bool
) -> list[SequenceBatch]:
    """As the parser feeds the batcher: the engine's event lists, piece by piece."""
    saved = batching.accelerator
    batching.accelerator = saved if native else None
    try:
        stream = SequenceStream(get_alphabet("nucleotide"), None, fmt)
        batcher = Batcher(UPLOAD, 1, part, batch, max_batch_records=max_records)
        out: list[SequenceBatch] = []
        for i in range(0, len(data), chunk):
            for events in stream.pieces(data[i : i + chunk]):
                out += batcher.add(events, i)
        out += [*batcher.add(stream.finish(), len(data)), *batcher.finish(len(data))]
        assert batcher.record_count == sum(len(b.records) for b in out)
        return out
    finally:
        batching.accelerator = saved


def random_inputs(seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    names = ["r", 'q"uote', "back\\slash", "caf\u00e9", "\U0001f600", "x" * 300]
    organisms = ["human", "mouse", "r\u00e4t"]
    fasta, fastq, csv = [], [], ["name,sequence,organism,note"]
    for i in range(300):
        name = rng.choice(names) + str(i)
        length = rng.choice([0, 1, 5, 150, 999, 1000, 1001, 2600])
        seq = "".join(rng.choice("ACGTNacgtn") for _ in range(length))
        fasta.append(f">{name} desc {i}\n" + "\n".join(seq[j : j + 60] for j in range(0, length, 60)))
        short = seq[: rng.choice([1, 50, 300])] or "A"
        fastq.append(f"@{name} {i}\n{short}\n+\n" + "".join(rng.choice("!#I?") for _ in short))
        quoted = '"' + name.replace('"', '""') + '"'
        csv.append(f'{quoted},{short},{rng.choice(organisms)},"n, {i}"')
    return [
        ("fasta", ("\n".join(fasta) + "\n").encode()),
        ("fastq", ("\n".join(fastq) + "\n").encode()),
        ("csv", ("\r\n".join(csv) + "\r\n").encode()),
    ]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("part", "batch", "max_records"), [(1000, 4000, 10_000), (1000, 50_000, 7), (400, 1, 10_000)])
def test_the_c_rows_are_the_python_rows(seed: int, part: int, batch: int, max_records: int) -> None:
    """Short records turned into rows in C give the very batches of the Python path: the same
    boundaries (bytes counted alike, names that grow in JSON, attributes, the record limit), the
    same rows, parts and numbers, whatever the format and wherever the chunks end."""
    require_native(batching)
    for fmt, data in random_inputs(seed):
        if fmt != "fasta" and part < 1000:
            continue  # a read or a row must fit in one part
        chunk = random.Random(seed).choice([97, 4096, 65536])
        native = batches_by_pieces(data, fmt, chunk, part, batch, max_records, native=True)
        python = batches_by_pieces(data, fmt, chunk, part, batch, max_records, native=False)
        assert len(native) > 1 and sum(len(b.records) for b in native) == 300
        assert [b.to_bytes() for b in native] == [b.to_bytes() for b in python], fmt
        assert [b.records.model_dump() for b in native] == [b.records.model_dump() for b in python]


def test_the_c_rows_leave_what_they_do_not_take_to_python() -> None:
    """Events that are not the engine's short whole records go to ``Batcher._whole`` unchanged: a
    record as long as a part is cut into parts, attributes of other types are refused as before."""
    require_native(batching)
    base = dict(line_number=1, gene_name="r", seq_id="r", description="", md5="m", refget="SQ.x")
    long_read = WholeRecord(ordinal=0, data=b"A" * 1000, **base)  # type: ignore[arg-type]
    short = WholeRecord(ordinal=1, data=b"ACGT", **base)  # type: ignore[arg-type]
    batcher = Batcher(UPLOAD, 1, 1000, 10**6)
    [batch] = [*batcher.add([long_read, short], 0), *batcher.finish(0)]
    assert [(p.ordinal, p.part_no, len(p.residues)) for p in batch.parts.rows()] == [(0, 0, 1000)]
    assert [(r.ordinal, r.part_count, r.residues) for r in batch.records.rows()] == [(0, 1, None), (1, 0, "ACGT")]
    odd = short._replace(ordinal=2, attributes={"k": 1})  # not a str: json_bytes_bound refuses it
    with pytest.raises(TypeError):
        list(Batcher(UPLOAD, 1, 1000, 10**6).add([odd], 0))

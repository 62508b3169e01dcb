from __future__ import annotations

import pytest

from shared.parsing.errors import ParseError
from tests.unit.helpers import events_of, native_module, parse, parse_split_at

QUIRKS = (
    b";a comment before everything\n"
    b"\n"
    b">chr1 Homo sapiens > not a new record\r\n"
    b"ACGTacgtNN\r\n"
    b"ac\r\n"
    b"\r\n"
    b">empty\n"
    b">seq3\n"
    b";comment inside\n"
    b"RYKM\n"
    b"  ACGT  \n"
    b">last"
)


def test_records_fields_and_positions() -> None:
    records = parse(QUIRKS)
    assert [r["gene_name"] for r in records] == ["chr1 Homo sapiens > not a new record", "empty", "seq3", "last"]
    assert [r["line_number"] for r in records] == [3, 7, 8, 12]
    assert records[0]["seq_id"] == "chr1"
    assert records[0]["description"] == "Homo sapiens > not a new record"
    assert records[0]["sequence"] == b"ACGTacgtNNac"  # soft-masking kept, CRLF and blanks gone
    assert records[1]["sequence"] == b"" and records[1]["length"] == 0
    assert records[2]["sequence"] == b"RYKMACGT"
    assert records[3]["sequence"] == b"" and records[3]["ordinal"] == 3


def test_refget_and_md5_of_the_design_example() -> None:
    (record,) = parse(b">x\nAC\ngt\n")
    assert record["md5"] == "f1f8f4bf413b16ad135722aa4591043e"
    assert record["refget"] == "SQ.aKF498dAxcJAqme6QYQ7EZ07-fiw8Kw2"


def test_gaps_are_kept_in_the_sequence_but_not_in_checksums() -> None:
    (record,) = parse(b">x\nAC-G.T\n")
    assert record["sequence"] == b"AC-G.T"
    assert record["length"] == 6
    assert record["md5"] == "f1f8f4bf413b16ad135722aa4591043e"


@pytest.mark.parametrize("cut", range(1, len(QUIRKS)))
def test_a_chunk_boundary_anywhere_changes_nothing(cut: int) -> None:
    assert parse_split_at(QUIRKS, cut) == parse(QUIRKS)


def test_one_byte_chunks() -> None:
    assert parse(QUIRKS, chunk=1) == parse(QUIRKS)


def test_invalid_character_position() -> None:
    data = b">a\nACGT\nACGTACGTXA\n"
    with pytest.raises(ParseError) as err:
        parse(data)
    assert (err.value.code, err.value.line, err.value.column) == ("invalid_character", 3, 9)
    assert "'X'" in err.value.message


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 8])
def test_invalid_character_position_across_chunks(chunk: int) -> None:
    with pytest.raises(ParseError) as err:
        parse(b">a\r\nAC\r\nGGGGGG1G\r\n", chunk=chunk)
    assert (err.value.line, err.value.column) == (3, 7)


def test_text_before_the_first_header() -> None:
    with pytest.raises(ParseError) as err:
        parse(b"\n  \nACGT\n>a\nAC\n", filename="x.fasta")
    assert (err.value.code, err.value.line, err.value.column) == ("missing_header", 3, 1)


def test_header_length_limit() -> None:
    from shared.parsing.engine import Limits

    with pytest.raises(ParseError) as err:
        parse(b">" + b"x" * 100 + b"\nAC\n", chunk=7, limits=Limits(max_header_bytes=50))
    assert err.value.code == "header_too_long" and err.value.line == 1


def test_header_must_be_utf8() -> None:
    with pytest.raises(ParseError) as err:
        parse(b">ok\nAC\n>bad\xff\nAC\n")
    assert (err.value.code, err.value.line) == ("invalid_header_encoding", 3)


def test_long_single_line_sequence_is_streamed_in_pieces() -> None:
    from shared.parsing.alphabet import get_alphabet
    from shared.parsing.engine import SequenceStream
    from shared.parsing.records import Residues

    stream = SequenceStream(get_alphabet("nucleotide"))
    biggest = 0
    for i in range(100):
        chunk = (b">big\n" if i == 0 else b"") + b"ACGT" * 25_000
        biggest = max([biggest] + [len(e.data) for e in stream.feed(chunk) if isinstance(e, Residues)])
    stream.finish()
    assert biggest <= 100_000  # never more than one chunk's worth at a time


def test_checksums_of_records_hashed_on_worker_threads() -> None:
    """Pieces above the hand-over size are hashed on the engine's threads: same digests, in order."""
    import base64
    import gzip
    import hashlib
    import random

    from shared.parsing.records import RecordEnd

    rng = random.Random(7)
    seqs = [bytes(rng.choice(b"ACGTNacgtn") for _ in range(n)) for n in (3_000_000, 10, 700_000)]
    text = b"".join(
        b">r%d\n%s\n" % (i, b"\n".join(s[j : j + 70] for j in range(0, len(s), 70))) for i, s in enumerate(seqs)
    )
    for data, chunk in ((text, 1 << 20), (gzip.compress(text, compresslevel=1), 100_000)):
        ends = {e.ordinal: e for e in events_of(data, chunk, "big.fa") if isinstance(e, RecordEnd)}
        for i in (0, 2):
            norm = seqs[i].upper()
            sha = base64.urlsafe_b64encode(hashlib.sha512(norm).digest()[:24]).decode()
            assert (ends[i].length, ends[i].md5, ends[i].refget) == (
                len(norm),
                hashlib.md5(norm).hexdigest(),
                "SQ." + sha,
            )


def test_native_and_python_paths_give_the_same_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """The C loops (shared/parsing/_native.c) against the pure-Python ones, on every kind of record."""
    import random

    native = native_module()
    rng = random.Random(3)
    headers = [
        b"r%d plain",
        b"r%d  two  spaces ",
        b"r%d caf\xc3\xa9 utf8",
        b"r%d crlf\r",
        b"r%d > inside",
        b" r%d",
        b"",
    ]
    bodies = [b"ACGT", b"acgtn\nACGTN", b"AC-GT.N", b"ACGT \tACGT", b"", b"A" * 70_000, b"ACGU\r\nRYKM\r"]
    parts = []
    for i in range(400):
        parts.append(b">" + (rng.choice(headers).replace(b"%d", str(i).encode()) if i % 9 else b"r%d" % i) + b"\n")
        body = rng.choice(bodies)
        parts.append(body + b"\n" if body else b"")
        if i % 37 == 0:
            parts.append(b"; a comment\n\n")
    data = b"".join(parts)
    for chunk in (7, 4096, 65_536, 1 << 22):
        accelerated = events_of(data, chunk, "x.fa")
        with monkeypatch.context() as m:
            m.setattr(native, "accelerator", None)
            assert events_of(data, chunk, "x.fa") == accelerated


@pytest.mark.parametrize("bad", [b">a\nACGT\n>b\nACXT\n>c\nA\n", b">a\nAC\n>b\xff\nAC\n>c\nA\n"])
def test_native_and_python_paths_report_the_same_error(monkeypatch: pytest.MonkeyPatch, bad: bytes) -> None:
    from shared.parsing.errors import ParseError

    native = native_module()
    with pytest.raises(ParseError) as accelerated:
        events_of(bad, 1 << 20, "x.fa")
    monkeypatch.setattr(native, "accelerator", None)
    with pytest.raises(ParseError) as python:
        events_of(bad, 1 << 20, "x.fa")
    assert (accelerated.value.code, accelerated.value.line, accelerated.value.column) == (
        python.value.code,
        python.value.line,
        python.value.column,
    )


@pytest.mark.parametrize("alphabet", ["nucleotide", "protein", "any"])
def test_native_cleaning_accepts_exactly_the_alphabets_letters(alphabet: str) -> None:
    """Every byte value, inside a sixteen-byte block and in a line's tail, against the alphabet."""
    from shared.parsing.alphabet import get_alphabet
    from shared.parsing.records import RecordBuilder

    native = native_module()
    builder = RecordBuilder(get_alphabet(alphabet), [])
    letters = builder.letters
    scratch = bytearray(100)
    for byte in range(256):
        if byte == 0x0A:
            continue
        for at in (17, 38):
            line = bytearray(b"a" * 40)
            line[at] = byte
            text = bytes(line) + b"\n" + bytes(line)
            cleaned = native.accelerator.clean_into(text, builder.letter_table, scratch)
            if byte in letters:
                assert cleaned is not None, (alphabet, byte, at)
                data, newlines = cleaned
                assert (data, newlines) == (text.replace(b"\n", b""), 1)
                assert bytes(scratch[: len(data)]) == data.upper()
            else:
                assert cleaned is None, (alphabet, byte, at)

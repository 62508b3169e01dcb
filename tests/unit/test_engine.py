from __future__ import annotations

import gzip
import random
import zlib
from typing import Protocol

import pytest

from shared.parsing.engine import GzipStream, Limits, detect_format
from shared.parsing.errors import ParseError
from shared.parsing.inflate import InflateError, gzip_member_inflater
from tests.unit.helpers import parse

FASTA = b">a first\nACGT\n>b\nGGCC\n"


@pytest.mark.parametrize(
    ("head", "name", "expected"),
    [
        (b">x\nAC", None, "fasta"),
        (b"\xef\xbb\xbf\n>x\nAC", "x.csv", "fasta"),
        (b";comment\n>x", None, "fasta"),
        (b"name,sequence\na,AC", "data.txt", "csv"),
        (b"name\tsequence\na\tAC", None, "tsv"),
        (b"something else entirely", "x.fa", "fasta"),
    ],
)
def test_detection_content_first(head: bytes, name: str | None, expected: str) -> None:
    assert detect_format(head, name) == expected


def test_unknown_content_says_what_was_expected() -> None:
    with pytest.raises(ParseError) as err:
        detect_format(b"hello world", "notes.txt")
    assert err.value.code == "unsupported_format"
    assert "FASTA" in err.value.message and "CSV" in err.value.message


def test_empty_file() -> None:
    with pytest.raises(ParseError) as err:
        parse(b"", filename="x.fasta")
    assert err.value.code == "empty_file"


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_gzip_detected_whatever_the_name(chunk: int) -> None:
    assert parse(gzip.compress(FASTA), chunk=chunk, filename="x.fasta") == parse(FASTA)


def test_multi_member_gzip() -> None:
    data = gzip.compress(FASTA[:10]) + gzip.compress(FASTA[10:])
    assert parse(data, chunk=5) == parse(FASTA)


@pytest.mark.parametrize("cut", [5, 12, -8, -1])
def test_truncated_gzip_is_an_error(cut: int) -> None:
    with pytest.raises(ParseError) as err:
        parse(gzip.compress(FASTA * 50)[:cut])
    assert err.value.code in ("truncated_compression", "corrupt_compression")


@pytest.mark.parametrize("where", ["body", "crc", "size"])
def test_corrupt_gzip_is_an_error_with_its_code(where: str) -> None:
    data = bytearray(gzip.compress(FASTA * 50))
    data[{"body": 40, "crc": -6, "size": -2}[where]] ^= 0xFF
    with pytest.raises(ParseError) as err:
        parse(bytes(data))
    assert err.value.code == "corrupt_compression"


def test_zero_padding_between_members_is_skipped() -> None:
    data = gzip.compress(FASTA[:10]) + b"\0" * 7 + gzip.compress(FASTA[10:])
    assert parse(data, chunk=3) == parse(FASTA)


class _Inflater(Protocol):
    """What the engine uses of an inflater: zlib's ``decompressobj`` and ISA-L's alike."""

    @property
    def eof(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...
    @property
    def unconsumed_tail(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


def _inflate(inflater: _Inflater, data: bytes, max_length: int) -> tuple[bytes, int, bool, bytes]:
    """Inflate as the engine does (bounded output per call, the unconsumed tail fed back): the
    output, its largest piece, whether the member ended and what follows it."""
    pieces = []
    while data:
        pieces.append(inflater.decompress(data, max_length))
        if inflater.eof:
            return b"".join(pieces), max(map(len, pieces)), True, inflater.unused_data
        data = inflater.unconsumed_tail
    return b"".join(pieces), max(map(len, pieces)), False, b""


@pytest.mark.parametrize("max_length", [1, 100, 4096, 512 * 1024])
def test_the_inflater_inflates_like_zlib(max_length: int) -> None:
    """ISA-L's inflater stands in for zlib's: in bounded steps, the same content, no piece over
    the bound, the member's end at the same byte and the same bytes after it (another member).
    A truncated member never ends; ISA-L may hold back more of its last block than zlib does (it
    decodes a block once it has the block's end), so only a prefix of the content comes out."""
    rng = random.Random(max_length)
    content = b"".join(
        b">r%d\n" % i + bytes(rng.choice(b"ACGTN") for _ in range(rng.randrange(500))) + b"\n" for i in range(300)
    )
    # One compressed copy of the second member: its header holds the time, in seconds, of the call.
    second = gzip.compress(b">next\nAC\n")
    data = gzip.compress(content) + second
    inflated, largest, ended, after = _inflate(gzip_member_inflater(), data, max_length)
    assert (inflated, ended, after) == (content, True, second)
    assert _inflate(zlib.decompressobj(wbits=31), data, max_length)[::2] == (inflated, ended)
    assert largest <= max_length
    inflated, largest, ended, after = _inflate(gzip_member_inflater(), gzip.compress(content)[:-20], max_length)
    assert not ended and content.startswith(inflated) and largest <= max_length


@pytest.mark.parametrize("seed", range(12))
def test_a_gzip_stream_in_any_chunks_and_bounds_gives_its_content_back(seed: int) -> None:
    """Members at random places, random compression levels and zero padding, fed in chunks of
    random sizes with random output bounds: the inflater may keep input between calls, and the
    stream must still hand back every byte and end where the last member ends."""
    rng = random.Random(seed)
    content = bytes(rng.choice(b"ACGTN\n>") for _ in range(rng.choice([50, 3000, 40_000, 200_000])))
    cuts = sorted(rng.sample(range(1, len(content)), rng.randrange(3)))
    data = b"".join(
        gzip.compress(content[a:b], compresslevel=rng.choice([1, 6, 9])) + b"\0" * rng.choice([0, 0, 5])
        for a, b in zip([0, *cuts], [*cuts, len(content)], strict=True)
    )
    stream = GzipStream(Limits(output_chunk_bytes=rng.choice([64, 4096, 512 * 1024])))
    chunk = rng.choice([1, 3, 4096, 65536]) if len(data) < 20_000 else rng.choice([4096, 65536])
    out = [piece for at in range(0, len(data), chunk) for piece in stream.feed(data[at : at + chunk])]
    stream.finish()
    assert b"".join(out) == content


def test_the_inflater_raises_its_error_where_zlib_raises_its_own() -> None:
    data = bytearray(gzip.compress(FASTA * 50))
    data[-6] ^= 0xFF
    with pytest.raises(zlib.error):
        zlib.decompressobj(wbits=31).decompress(bytes(data))
    with pytest.raises(InflateError):
        gzip_member_inflater().decompress(bytes(data))


def test_decompression_bomb_is_stopped() -> None:
    bomb = gzip.compress(b">a\n" + b"A" * (20 * 1024 * 1024))
    with pytest.raises(ParseError) as err:
        parse(bomb, limits=Limits(max_decompressed_bytes=4 * 1024 * 1024))
    assert err.value.code == "decompression_limit"


def test_declared_format_wins() -> None:
    records = parse(b"name,sequence\nx,AC\n", fmt="csv", filename="x.fasta")
    assert records[0]["gene_name"] == "x"


def test_protein_alphabet() -> None:
    (record,) = parse(b">p\nMKV*\n", alphabet="protein")
    assert record["sequence"] == b"MKV*"
    with pytest.raises(ParseError):
        parse(b">p\nMKV*\n")

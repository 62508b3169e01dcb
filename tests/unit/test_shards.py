"""Shards of a FASTA: where the scanner cuts, and that parsing the shards from there gives what a
parse of the whole file gives (records, checksums, lines, error positions)."""

from __future__ import annotations

import gzip
import random
import zlib

import pytest

from shared.parsing.alphabet import get_alphabet
from shared.parsing.engine import GzipStream, Limits, Resume, SequenceStream
from shared.parsing.errors import ParseError
from shared.parsing.records import Event
from shared.parsing.shards import BgzfShardScanner, FastaShardScanner, ShardContent, ShardStart
from tests.builders import bgzip
from tests.unit.helpers import collect, events_of, random_fasta


def brute_force_starts(data: bytes, shard_bytes: int) -> list[ShardStart]:
    record_starts = [q for q in range(len(data)) if data[q] == 0x3E and (q == 0 or data[q - 1] == 0x0A)]
    starts = [ShardStart(0, 0, 1)]
    target = shard_bytes
    for ordinal, q in enumerate(record_starts):
        if q >= target:
            starts.append(ShardStart(q, ordinal, data.count(b"\n", 0, q) + 1))
            target = q + shard_bytes
    return starts


def scan(data: bytes, shard_bytes: int, chunk: int) -> FastaShardScanner:
    scanner = FastaShardScanner(shard_bytes)
    for i in range(0, len(data), chunk):
        scanner.feed(data[i : i + chunk])
    return scanner


@pytest.mark.parametrize("seed", range(12))
def test_the_scanner_finds_the_record_starts_a_byte_walk_finds(seed: int) -> None:
    rng = random.Random(seed)
    data = random_fasta(rng, rng.randrange(1, 300))
    shard_bytes = rng.choice([1, 50, 999, 4096, 20_000])
    expected = brute_force_starts(data, shard_bytes)
    for chunk in (1, 2, 7, 4096, len(data)):
        scanner = scan(data, shard_bytes, chunk)
        assert scanner.starts == expected, chunk
        assert scanner.records == data.count(b"\n>") + 1
        assert scanner.size == len(data)


def test_a_shard_is_at_least_shard_bytes_and_a_long_record_is_not_cut() -> None:
    data = b">a\n" + b"ACGT" * 1000 + b"\n>b\nAC\n>c\nGG\n"
    starts = scan(data, 100, 64).starts
    assert [s.offset for s in starts] == [0, data.index(b">b")]
    assert starts[1] == ShardStart(data.index(b">b"), 1, 3)


def test_only_a_file_starting_with_a_header_is_split() -> None:
    assert FastaShardScanner.splittable(b">x\nAC\n")
    assert not FastaShardScanner.splittable(b"\n>x\nAC\n")
    assert not FastaShardScanner.splittable(b"\xef\xbb\xbf>x\n")
    with pytest.raises(ValueError):
        FastaShardScanner(10).feed(b";c\n>x\n")


def shard_events(data: bytes, starts: list[ShardStart], chunk: int) -> list[Event]:
    events: list[Event] = []
    ends = [s.offset for s in starts[1:]] + [len(data)]
    for start, end in zip(starts, ends, strict=True):
        resume = None if start.offset == 0 else Resume(start.ordinal, start.line)
        stream = SequenceStream(get_alphabet("nucleotide"), "x.fa", "fasta", resume=resume)
        piece = data[start.offset : end]
        for i in range(0, len(piece), chunk):
            events.extend(stream.feed(piece[i : i + chunk]))
        events.extend(stream.finish())
    return events


@pytest.mark.parametrize("seed", range(6))
def test_shards_parsed_apart_give_the_records_of_the_whole_file(seed: int) -> None:
    rng = random.Random(100 + seed)
    data = random_fasta(rng, 200)
    starts = scan(data, rng.choice([500, 3000, 10_000]), 4096).starts
    assert len(starts) > 2
    whole = collect(events_of(data, 8192, fmt="fasta"))
    for chunk in (97, 8192):
        assert collect(shard_events(data, starts, chunk)) == whole


def test_an_error_in_a_later_shard_has_the_position_of_the_whole_file() -> None:
    rng = random.Random(7)
    data = bytearray(random_fasta(rng, 200))
    at = data.index(b"A", len(data) * 3 // 4)
    data[at : at + 1] = b"!"
    with pytest.raises(ParseError) as whole:
        events_of(bytes(data), 4096, fmt="fasta")
    starts = scan(bytes(data), 2000, 4096).starts
    with pytest.raises(ParseError) as sharded:
        shard_events(bytes(data), starts, 4096)
    assert (sharded.value.code, sharded.value.line, sharded.value.column) == (
        whole.value.code,
        whole.value.line,
        whole.value.column,
    )


def test_only_fasta_resumes() -> None:
    with pytest.raises(ValueError):
        SequenceStream(get_alphabet("nucleotide"), "x.fq", "fastq", resume=Resume(3, 9))


@pytest.mark.parametrize("seed", range(4))
def test_a_bgzip_file_splits_where_its_content_does(seed: int) -> None:
    rng = random.Random(200 + seed)
    data = random_fasta(rng, 400)
    packed = bgzip(data)
    scanner = BgzfShardScanner(20_000, 1 << 40, 1000)
    for chunk in (1000, 65536, 7):
        scanner = BgzfShardScanner(20_000, 1 << 40, 1000)
        for i in range(0, len(packed), chunk):
            scanner.feed(packed[i : i + chunk])
        scanner.finish()
        plain = scan(data, 20_000, 4096)
        assert [(s.content_offset, s.ordinal, s.line) for s in scanner.starts] == [
            (s.offset, s.ordinal, s.line) for s in plain.starts
        ]
        assert scanner.size == len(packed) and scanner.content.size == len(data)
    assert len(scanner.starts) > 1, "one shard: no start inside the file was checked"
    for start in scanner.starts[1:]:
        # The block named holds the record's first byte at ``within``: read from there alone.
        block = packed[start.block : start.block + start.block_size]
        assert zlib.decompress(block, wbits=31)[start.within :].startswith(data[start.content_offset :][:64])


def test_shard_content_is_cut_from_whole_blocks() -> None:
    data = random_fasta(random.Random(9), 400)
    packed = bgzip(data)
    scanner = BgzfShardScanner(30_000, 1 << 40, 1000)
    scanner.feed(packed)
    starts = scanner.starts
    assert len(starts) > 1, "one shard: no cut was checked"
    for first, after in zip(starts, [*starts[1:], None], strict=True):
        end = len(packed) if after is None else after.block + (after.block_size if after.within else 0)
        content_end = len(data) if after is None else after.content_offset
        cut = ShardContent(GzipStream(Limits()).feed, first.within, content_end - first.content_offset)
        got = b"".join(
            piece for i in range(first.block, end, 5000) for piece in cut.feed(packed[i : min(i + 5000, end)])
        )
        assert got == data[first.content_offset : content_end] and cut.complete


@pytest.mark.parametrize(
    "packed",
    [
        pytest.param(gzip.compress(b">a\nACGT\n" * 1000), id="plain gzip"),
        pytest.param(bgzip(b">a\nACGT\n" * 1000) + gzip.compress(b">b\nAC\n"), id="a plain member after BGZF"),
        pytest.param(bgzip(b"@r\nACGT\n+\nIIII\n" * 100), id="bgzip FASTQ"),
    ],
)
def test_what_is_not_bgzip_fasta_does_not_split(packed: bytes) -> None:
    scanner = BgzfShardScanner(100, 1 << 40, 1000)
    with pytest.raises(ValueError):
        scanner.feed(packed)
        scanner.finish()


def test_a_bgzip_bomb_stops_the_scan_at_the_limit() -> None:
    packed = bgzip(b">a\n" + b"A" * 3_000_000 + b"\n")
    scanner = BgzfShardScanner(100, 1_000_000, 1000)
    with pytest.raises(ValueError, match="decompression limits"):
        scanner.feed(packed)

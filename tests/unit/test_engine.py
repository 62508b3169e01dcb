from __future__ import annotations

import gzip

import pytest

from shared.parsing.engine import Limits, detect_format
from shared.parsing.errors import ParseError
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

from __future__ import annotations

import pytest

from shared.parsing.delimited import find_columns
from shared.parsing.errors import ParseError
from tests.unit.helpers import parse, parse_split_at

CSV = (
    b"\xef\xbb\xbfGene Name,Sequence,organism\r\n"
    b"BRCA1,ACGT acgt ,human\r\n"
    b'"TP53, p53","AC\r\nGT",human\r\n'
    b"\r\n"
    b'"say ""hi""",NNNN,mouse\r\n'
    b"last,A,rat"
)


def test_rows_become_records() -> None:
    records = parse(CSV)
    assert [r["attributes"] for r in records] == [{"organism": o} for o in ("human", "human", "mouse", "rat")]
    assert [r["gene_name"] for r in records] == ["BRCA1", "TP53, p53", 'say "hi"', "last"]
    assert [r["line_number"] for r in records] == [2, 3, 6, 7]
    assert [r["sequence"] for r in records] == [b"ACGTacgt", b"ACGT", b"NNNN", b"A"]


@pytest.mark.parametrize("cut", range(1, len(CSV)))
def test_a_chunk_boundary_anywhere_changes_nothing(cut: int) -> None:
    assert parse_split_at(CSV, cut) == parse(CSV)


def test_tsv() -> None:
    records = parse(b"name\tsequence\na\tACGT\nb\tGG\n")
    assert [r["sequence"] for r in records] == [b"ACGT", b"GG"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (["name", "sequence"], (0, 1)),
        (["sequence", "gene_name"], (1, 0)),
        (["Gene Name", "Sequence"], (0, 1)),
        (["id", "seq", "x"], (0, 1)),
        (["name", "value"], None),
    ],
)
def test_column_spellings(header: list[str], expected: tuple[int, int] | None) -> None:
    assert find_columns(header) == expected


def test_wrong_field_count_names_the_line() -> None:
    with pytest.raises(ParseError) as err:
        parse(b"name,sequence\na,ACGT\nb,AC,GT\n")
    assert (err.value.code, err.value.line) == ("wrong_field_count", 3)


def test_missing_sequence_column() -> None:
    with pytest.raises(ParseError) as err:
        parse(b"name,value\na,1\n", filename="x.csv")
    assert err.value.code == "missing_column"


def test_invalid_character_column_counts_from_the_line_start() -> None:
    with pytest.raises(ParseError) as err:
        parse(b"name,sequence\nabc,ACGZ\n")
    assert (err.value.line, err.value.column) == (2, 8)


@pytest.mark.parametrize("chunk", [3, 64, 1000])
def test_over_long_row_is_streamed(chunk: int) -> None:
    from shared.parsing.alphabet import get_alphabet
    from shared.parsing.delimited import DelimitedParser
    from shared.parsing.records import Residues
    from tests.unit.helpers import collect

    data = b"name,sequence\nbig," + b"ACGT" * 2000 + b"\nsmall,GG\n"
    parser = DelimitedParser(get_alphabet("nucleotide"), stream_threshold=500)
    events = []
    for i in range(0, len(data), chunk):
        events.extend(parser.feed(data[i : i + chunk]))
    events.extend(parser.finish())
    assert max(len(e.data) for e in events if isinstance(e, Residues)) < 2000
    records = collect(events)
    assert [r["sequence"] for r in records] == [b"ACGT" * 2000, b"GG"]
    assert [r["line_number"] for r in records] == [2, 3]


def test_unterminated_quote() -> None:
    with pytest.raises(ParseError) as err:
        parse(b'name,sequence\n"a,ACGT\n')
    assert err.value.code == "unterminated_quote"

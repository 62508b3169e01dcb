"""One list of formats and suffixes, one table of parsers: every format has a parser and a name."""

from __future__ import annotations

import pytest

from shared.parsing.alphabet import AlphabetName, get_alphabet
from shared.parsing.engine import PARSERS, Limits, make_parser
from shared.parsing.errors import ParseError, ParseErrorCode
from shared.parsing.formats import FORMAT_NAMES, SUFFIXES, Format, format_of_name


def test_every_format_has_a_parser_of_its_own_name() -> None:
    assert set(PARSERS) == set(Format)
    for fmt in Format:
        parser = make_parser(fmt.value, get_alphabet(AlphabetName.NUCLEOTIDE), Limits())
        assert parser.format == fmt.value


def test_every_format_is_named_by_at_least_one_suffix() -> None:
    assert set(SUFFIXES.values()) == set(Format)
    assert FORMAT_NAMES == ("fasta", "fastq", "csv", "tsv")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("reads.fq.gz", Format.FASTQ),
        ("GENOME.FA.BGZ", Format.FASTA),
        ("table.tab", Format.TSV),
        ("rows.csv", Format.CSV),
        ("notes.txt", None),
        ("no-suffix", None),
        ("", None),
        (None, None),
    ],
)
def test_a_file_name_suggests_a_format(name: str | None, expected: Format | None) -> None:
    assert format_of_name(name) == expected


def test_an_unknown_format_is_refused_with_its_code() -> None:
    with pytest.raises(ParseError) as refused:
        make_parser("genbank", get_alphabet(AlphabetName.NUCLEOTIDE), Limits())
    assert refused.value.code == ParseErrorCode.UNSUPPORTED_FORMAT

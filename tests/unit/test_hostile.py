"""Inputs built to hurt the engine: time linear in the input, memory flat, only ``ParseError`` raised.

Each family is generated at 1x, 4x and 16x its base size. A quadratic scan shows as a 16x input
taking ~256x the time; the bound below allows 4x slack over linear (plus a floor for timer noise),
so the test is not flaky and still catches a collapse.
"""

from __future__ import annotations

import contextlib
import gzip
import random
import time
import tracemalloc
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.parsing.alphabet import get_alphabet
from shared.parsing.engine import Limits, SequenceStream
from shared.parsing.errors import ParseError, ParseErrorCode
from shared.parsing.records import RecordStart, Residues, WholeRecord
from tests.unit.helpers import collect, events_of

KiB = 1024
MiB = 1024 * KiB


def run(data: bytes, chunk: int = 64 * KiB, limits: Limits | None = None, filename: str = "x") -> str:
    """Feed ``data`` in chunks; returns "ok" or the error code. Events are dropped as they come."""
    stream = SequenceStream(get_alphabet("nucleotide"), filename, None, limits)
    try:
        for i in range(0, len(data), chunk):
            for _ in stream.feed(data[i : i + chunk]):
                pass
        for _ in stream.finish():
            pass
    except ParseError as exc:
        return exc.code.value
    return "ok"


# family name -> (input of a given scale, the outcome every scale must have)
FAMILIES: dict[str, tuple[Callable[[int], bytes], str]] = {
    # one quote opened, then only newlines: every newline used to recount the row's quotes
    "csv open quote, newlines": (lambda n: b'name,sequence\n"' + b"\n" * (n * 256 * KiB), "unterminated_quote"),
    # many rows whose quoted cells span lines
    "csv quoted multi-line rows": (lambda n: b"name,sequence,note\n" + b'a,ACGT,"x\ny\nz"\n' * (n * 2 * KiB), "ok"),
    # a long quoted field of escaped quotes: each quote toggles the state (then the cell is too long)
    "csv escaped quotes": (
        lambda n: b'name,sequence,note\na,ACGT,"' + b'""' * (n * 72 * KiB) + b'"\n',
        "field_too_long",
    ),
    # a long row with no newline, arriving chunk by chunk (used to be re-searched every chunk)
    "csv long row": (lambda n: b"name,note,sequence\na,b," + b"ACGT" * (n * 128 * KiB) + b"\n", "ok"),
    "tsv long row": (lambda n: b"name\tnote\tsequence\na\tb\t" + b"ACGT" * (n * 128 * KiB) + b"\n", "ok"),
    "fasta large headers": (lambda n: (b">" + b"h" * 60_000 + b"\nACGT\n") * (n * 8), "ok"),
    "fasta one long line": (lambda n: b">a\n" + b"ACGT" * (n * 256 * KiB) + b"\n", "ok"),
    "fastq long titles": (lambda n: (b"@" + b"t" * 60_000 + b"\nACGT\n+\nIIII\n") * (n * 8), "ok"),
    "fastq short reads": (lambda n: b"@r\nACGT\n+\nIIII\n" * (n * 8 * KiB), "ok"),
}


def _seconds(data: bytes) -> tuple[float, str]:
    best, outcome = float("inf"), ""
    for _ in range(2):
        started = time.perf_counter()
        outcome = run(data)
        best = min(best, time.perf_counter() - started)
    return best, outcome


@pytest.mark.parametrize("family", list(FAMILIES))
def test_time_grows_linearly(family: str) -> None:
    make, expected = FAMILIES[family]
    t1, outcome1 = _seconds(make(1))
    t4, outcome4 = _seconds(make(4))
    t16, outcome16 = _seconds(make(16))
    assert outcome1 == outcome4 == outcome16 == expected
    assert t4 <= 4 * 4 * t1 + 0.2, (t1, t4)
    assert t16 <= 16 * 4 * t1 + 0.5, (t1, t4, t16)


def test_quotes_along_one_line_without_a_newline_are_linear() -> None:
    """Each quote closed outside a newline used to search the rest of the buffer for one again."""
    limits = Limits(output_chunk_bytes=64 * MiB)  # the whole line in one piece: the window of the old cost

    def seconds(n: int) -> float:
        data = b"name,sequence,note\na,ACGT," + b'"x"x' * (n * 64 * KiB)
        started = time.perf_counter()
        assert run(data, chunk=len(data), limits=limits) == "invalid_quoting"
        return time.perf_counter() - started

    t1, t16 = min(seconds(1) for _ in range(2)), min(seconds(16) for _ in range(2))
    assert t16 <= 16 * 4 * t1 + 0.2, (t1, t16)  # was ~t1 x 256: 0.22 s -> ~1 min


def _peak(data: bytes, limits: Limits | None = None) -> tuple[int, str]:
    tracemalloc.start()
    try:
        outcome = run(data, limits=limits)
        return tracemalloc.get_traced_memory()[1], outcome
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "family", ["csv quoted multi-line rows", "fasta large headers", "fastq long titles", "fastq short reads"]
)
def test_memory_stays_flat_for_streamed_records(family: str) -> None:
    make, expected = FAMILIES[family]
    small, outcome_small = _peak(make(1))
    large, outcome_large = _peak(make(6))
    assert outcome_small == outcome_large == expected
    assert large <= 2 * small + MiB, (small, large)


def test_an_open_quote_is_bounded_by_the_row_limit() -> None:
    """A pending row is held until its end, up to max_row_bytes; past that it fails, whatever the file size."""
    limits = Limits(max_row_bytes=256 * KiB)
    make, _ = FAMILIES["csv open quote, newlines"]
    small, outcome_small = _peak(make(1), limits)
    large, outcome_large = _peak(make(8), limits)
    assert outcome_small == outcome_large == "row_too_long"
    assert large <= 2 * small + MiB


def test_inflation_hands_on_bounded_pieces() -> None:
    """One compressed read that inflates to 16 MiB yields its events a piece at a time, never all at once."""
    residues = random.Random(1).randbytes(16 * MiB).translate(bytes(b"ACGT"[i % 4] for i in range(256)))
    compressed = gzip.compress(b">a\n" + residues, 1)
    stream = SequenceStream(get_alphabet("nucleotide"), "x", None, Limits(output_chunk_bytes=1 * MiB))
    sizes = [
        sum(len(e.data) for e in events if isinstance(e, Residues | WholeRecord))
        for events in stream.pieces(compressed)
    ]
    assert len(sizes) >= 16 and max(sizes) <= 2 * MiB and sum(sizes) <= 16 * MiB


def test_ratio_counts_only_the_input_consumed() -> None:
    """The ratio guard compares output with the compressed bytes inflated so far, not the whole chunk."""
    bomb = gzip.compress(b">a\n" + b"A" * (300 * MiB), 9)  # ~300 KiB compressed: ratio ~1000
    padding = gzip.compress(b">b\n" + bytes(range(256)) * 4096)  # incompressible-ish tail in the same chunk
    outcome = run(bomb + padding, chunk=len(bomb) + len(padding), limits=Limits(max_compression_ratio=100))
    assert outcome == "decompression_limit"


@pytest.mark.parametrize(
    ("data", "code", "line", "column"),
    [
        (b">a\x00b\nACGT\n", "invalid_character", 1, 3),
        (b">ok\nAC\n>bad\x01name\nGT\n", "invalid_character", 3, 5),
        (b"@r\x00\nACGT\n+\nIIII\n", "invalid_character", 1, 3),
        (b"@r\nACGT\n+\nIIII\n@s\x1b\nACGT\n+\nIIII\n", "invalid_character", 5, 3),
        (b"name,sequence\na\x00b,ACGT\n", "invalid_character", 2, 2),
        (b"name,sequence,note\na,ACGT,x\x7fy\n", "invalid_character", 2, 9),
        (b'name,sequence\n"a\nb",ACGT\n', "invalid_character", 2, None),  # a line break in a name
        (b'name,sequence,note\na,ACGT,"x\x00"\n', "invalid_character", 2, None),
        (b"name,note\x00,sequence\na,b,AC\n", "invalid_character", 1, 10),
    ],
)
def test_control_characters_in_names_titles_and_attributes(
    data: bytes, code: str, line: int, column: int | None
) -> None:
    with pytest.raises(ParseError) as err:
        events_of(data, filename="x.csv" if b"," in data else "x")
    assert (err.value.code, err.value.line) == (code, line)
    if column is not None:
        assert err.value.column == column


def test_tab_in_a_header_is_not_a_control_character() -> None:
    (record,) = [e for e in events_of(b">a\tb c\nACGT\n") if isinstance(e, WholeRecord | RecordStart)]
    assert record.gene_name == "a\tb c"


@pytest.mark.parametrize(
    ("data", "limits", "code"),
    [
        (b">" + b"h" * 2000 + b"\nAC\n", Limits(max_header_bytes=1000), "header_too_long"),
        (b"@" + b"t" * 2000 + b"\nAC\n+\nII\n", Limits(max_title_bytes=1000), "title_too_long"),
        (b"name,sequence,note\na,AC," + b"x" * 2000 + b"\n", Limits(max_field_bytes=1000), "field_too_long"),
        (b"name,sequence\n" + b"n" * 2000 + b",AC\n", Limits(max_field_bytes=1000), "field_too_long"),
    ],
)
def test_names_titles_and_cells_have_their_own_limits(data: bytes, limits: Limits, code: str) -> None:
    assert run(data, chunk=97, limits=limits) == code


def test_error_messages_are_bounded_excerpts() -> None:
    header = b",".join(b"column%d" % i for i in range(200_000))  # ~1.6 MB header naming neither column
    with pytest.raises(ParseError) as err:
        events_of(header + b"\na,b\n", filename="x.csv", fmt="csv")
    assert err.value.code == ParseErrorCode.MISSING_COLUMN
    assert len(err.value.message.encode()) <= 1024 and "column0" in err.value.message
    assert len(str(ParseError(ParseErrorCode.EMPTY_FILE, "x" * 10_000)).encode()) <= 1100


SMALL_CASES = [
    b'name,sequence,note\n"a,b",AC,"x""y"\nc,GT,"line\nbreak"\n',
    b'name\tsequence\n"q"\tACGT\n',
    b">a d\nAC\r\nGT\n>b\n\nA\n",
    b"@r1\nACGT\n+\nIIII\n@r2\nA\n+r2\nI\n",
]


@pytest.mark.parametrize("data", SMALL_CASES)
def test_every_chunk_boundary_gives_the_same_events(data: bytes) -> None:
    name = "x.csv" if b"," in data.split(b"\n")[0] else "x.tsv" if b"\t" in data.split(b"\n")[0] else "x"
    whole = collect(events_of(data, filename=name))
    for cut in range(1, len(data)):
        stream = SequenceStream(get_alphabet("nucleotide"), name)
        split = collect([*stream.feed(data[:cut]), *stream.feed(data[cut:]), *stream.finish()])
        assert split == whole, cut
    assert collect(events_of(data, chunk=1, filename=name)) == whole


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=st.sampled_from([b"", b">", b"@", b"name,sequence\n", b"name\tsequence\n", b'name,sequence\n"']),
    body=st.binary(max_size=600),
    chunk=st.integers(min_value=1, max_value=64),
    compress=st.booleans(),
)
def test_any_input_raises_nothing_but_parse_error(prefix: bytes, body: bytes, chunk: int, compress: bool) -> None:
    data = prefix + body
    if compress:
        data = gzip.compress(data)[: len(data) // 2 + 10] if body[:1] == b"\x00" else gzip.compress(data)
    with contextlib.suppress(ParseError):
        events_of(data, chunk=chunk, filename="x.csv")


def test_a_read_of_tiny_records_is_parsed_in_bounded_pieces() -> None:
    """One 4 MiB read of 17-byte rows: the events of the whole read are never held at once."""
    data = b"name,sequence,note\n" + b"a,ACGT,x\n" * (4 * MiB // 9)
    stream = SequenceStream(get_alphabet("nucleotide"), "x.csv")
    most = max(len(events) for events in stream.pieces(data))
    assert most <= 512 * KiB // 9 + 1  # one piece's records, not the read's ~466,000


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"@" + b"t" * (3 * MiB) + b"\nACGT\n+\nIIII\n", "title_too_long"),  # longer than any line may be
        (b"@r\n" + b"A" * (3 * MiB) + b"\n+\n", "read_too_long"),
    ],
)
def test_an_unfinished_fastq_line_fails_with_its_own_code(data: bytes, code: str) -> None:
    """Before its newline arrives, a title or read past every limit is named as such, not 'line'."""
    assert run(data, chunk=256 * KiB, limits=Limits(max_read_bytes=MiB - 1)) == code

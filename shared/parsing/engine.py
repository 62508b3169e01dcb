"""The engine's front door: bytes of one file in any supported form, record events out.

Compression and format are decided from the first bytes of the content, the file name only
breaks a tie. Nothing here does I/O; the parser service feeds chunks it read from S3.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from shared.parsing.alphabet import Alphabet
from shared.parsing.delimited import DelimitedParser, find_columns
from shared.parsing.errors import ParseError, ParseErrorCode
from shared.parsing.fasta import FastaParser
from shared.parsing.fastq import FastqParser
from shared.parsing.formats import FORMAT_NAMES, Format, format_of_name
from shared.parsing.inflate import InflateError, gzip_member_inflater
from shared.parsing.records import Event
from shared.parsing.workers import pool

GZIP_MAGIC = b"\x1f\x8b"
DETECT_BYTES = 64 * 1024
FORMATS = FORMAT_NAMES


@dataclass(frozen=True)
class Limits:
    """Every bound the engine enforces, each failing with its own code (docs/architecture.md: "Limits").

    Names, titles and cells are bounded so that a record's metadata stays small beside a batch;
    sequences are never bounded (they stream), FASTQ reads are (stored whole with their quality).
    """

    max_header_bytes: int = 64 * 1024  # FASTA header: header_too_long
    max_title_bytes: int = 64 * 1024  # FASTQ title: title_too_long
    max_field_bytes: int = 64 * 1024  # CSV/TSV name, attribute or column name: field_too_long
    max_attributes_bytes: int = 1024 * 1024  # CSV/TSV extra columns of one row together: attributes_too_long
    max_row_bytes: int = 64 * 1024 * 1024  # CSV/TSV row not streamable: row_too_long
    max_line_bytes: int = 64 * 1024 * 1024  # FASTQ line: line_too_long
    # FASTQ reads are kept whole with their quality, so they must fit in one stored part.
    max_read_bytes: int = 1024 * 1024 - 1
    max_records: int = 1_000_000_000
    max_decompressed_bytes: int = 64 * 1024**3
    max_compression_ratio: int = 1000
    # Content parsed at a time, inflated or not: the events of one piece are held together, and a
    # piece of tiny records holds many (a 4 MiB read of 17-byte CSV rows was ~250,000 events).
    output_chunk_bytes: int = 512 * 1024


@dataclass(frozen=True)
class Resume:
    """Where a shard of a file begins: its first record's ordinal and line (a shard starts at a
    record's first byte, see ``shared/parsing/shards.py``). Records and error positions of the
    shard are then numbered as in a parse of the whole file."""

    ordinal: int
    line: int


class FormatParser(Protocol):
    format: str

    @property
    def record_count(self) -> int: ...

    def feed(self, chunk: bytes) -> list[Event]: ...

    def finish(self) -> list[Event]: ...


def detect_format(head: bytes, filename: str | None = None) -> str:
    """Name the format of decompressed content from its first bytes (and the name as a fallback)."""
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text.startswith((b">", b";")):
        return "fasta"
    if text.startswith(b"@"):
        return "fastq"
    first_line = text.split(b"\n", 1)[0].decode("utf-8", "replace")
    for delimiter, name in (("\t", "tsv"), (",", "csv")):
        if delimiter in first_line and find_columns(first_line.split(delimiter)) is not None:
            return name
    named = format_of_name(filename)
    if named is not None and text:
        return named.value
    if not head:
        raise ParseError(ParseErrorCode.EMPTY_FILE, "the file is empty", 1, 1)
    raise ParseError(
        ParseErrorCode.UNSUPPORTED_FORMAT,
        "not a supported format: expected FASTA (first line starting with '>'), FASTQ (starting with '@') "
        "or CSV/TSV with a header row naming a name and a sequence column",
        1,
        1,
    )


def _delimited(delimiter: bytes) -> Callable[[Alphabet, Limits], FormatParser]:
    def make(alphabet: Alphabet, limits: Limits) -> FormatParser:
        return DelimitedParser(
            alphabet,
            delimiter=delimiter,
            max_row_bytes=limits.max_row_bytes,
            max_records=limits.max_records,
            max_field_bytes=limits.max_field_bytes,
            max_attributes_bytes=limits.max_attributes_bytes,
        )

    return make


# Each format's parser, made from the alphabet and the limits: the one table a new format joins.
PARSERS: dict[Format, Callable[[Alphabet, Limits], FormatParser]] = {
    Format.FASTA: lambda alphabet, limits: FastaParser(
        alphabet, max_header_bytes=limits.max_header_bytes, max_records=limits.max_records
    ),
    Format.FASTQ: lambda alphabet, limits: FastqParser(
        alphabet, limits.max_line_bytes, limits.max_read_bytes, limits.max_records, limits.max_title_bytes
    ),
    Format.CSV: _delimited(b","),
    Format.TSV: _delimited(b"\t"),
}


def make_parser(fmt: str, alphabet: Alphabet, limits: Limits) -> FormatParser:
    try:
        make = PARSERS[Format(fmt)]
    except ValueError:
        raise ParseError(
            ParseErrorCode.UNSUPPORTED_FORMAT, f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}"
        ) from None
    return make(alphabet, limits)


# The compressed bytes handed to the inflater at once (see ``GzipStream._inflate``).
INPUT_SLICE = 64 * 1024


class GzipStream:
    """Multi-member gzip (and so bgzip) decompression with bounded output per step.

    A truncated or corrupt stream is an error, never a silent partial result, and output beyond
    the ratio or size limit stops a decompression bomb before it fills memory or disk.
    """

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._d = gzip_member_inflater()
        self._member_open = False
        self._in = 0
        self._out = 0

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Inflate ``data`` in bounded pieces, each inflated on a worker thread one piece ahead of
        the caller (the inflater releases the GIL), so that parsing and decompression share two cores."""
        steps = self._inflate(data)
        pending = pool().submit(next, steps, None)
        while True:
            piece = pending.result()
            if piece is None:
                return
            pending = pool().submit(next, steps, None)
            yield piece

    def _inflate(self, chunk: bytes) -> Iterator[bytes]:
        # The inflater copies the input it leaves unread into ``unconsumed_tail`` (after each
        # bounded output step) or ``unused_data`` (after each member): fed a whole read, it would
        # copy the rest of the read once per step and once per member -- for bgzip's 64 KiB blocks,
        # a hundred times over per 4 MiB read. Fed in slices of ``INPUT_SLICE``, each copy is at
        # most a slice.
        for at in range(0, len(chunk), INPUT_SLICE):
            yield from self._inflate_slice(chunk[at : at + INPUT_SLICE])

    def _inflate_slice(self, data: bytes) -> Iterator[bytes]:
        while data:
            if not self._member_open:
                # Between members (multi-member gzip, bgzip blocks) zero padding is skipped, also
                # where it runs on from one chunk into the next.
                data = data.lstrip(b"\x00")
                if not data:
                    return
            self._member_open = True
            try:
                out = self._d.decompress(data, self._limits.output_chunk_bytes)
            except InflateError:
                # A fixed message: the inflater's own words (its error numbers) say nothing to a user.
                raise ParseError(
                    ParseErrorCode.CORRUPT_COMPRESSION, "gzip data is corrupt (a bad deflate block or checksum)"
                ) from None
            if self._d.eof:
                self._member_open = False
                rest = self._d.unused_data
                self._d = gzip_member_inflater()
            else:
                rest = self._d.unconsumed_tail
            # The ratio guard counts what was inflated so far, not the whole chunk: a bomb at the
            # start of a large read is caught before the rest of the read can hide it.
            self._in += len(data) - len(rest)
            if out:
                self._count(len(out))
                yield out
            data = rest

    @property
    def inflated_bytes(self) -> int:
        """Content inflated so far, over every member."""
        return self._out

    def finish(self) -> None:
        if self._member_open:
            raise ParseError(ParseErrorCode.TRUNCATED_COMPRESSION, "gzip stream ends in the middle of a member")

    def _count(self, produced: int) -> None:
        self._out += produced
        limits = self._limits
        if self._out > limits.max_decompressed_bytes or (
            self._out > 64 * 1024 * 1024 and self._out > self._in * limits.max_compression_ratio
        ):
            raise ParseError(
                ParseErrorCode.DECOMPRESSION_LIMIT,
                f"decompressed size exceeds the limit ({limits.max_decompressed_bytes} bytes or "
                f"{limits.max_compression_ratio}x the compressed size)",
            )


class SequenceStream:
    """Drives one file through decompression, detection and the format parser."""

    def __init__(
        self,
        alphabet: Alphabet,
        filename: str | None = None,
        fmt: str | None = None,
        limits: Limits | None = None,
        resume: Resume | None = None,
    ) -> None:
        if resume is not None and fmt != "fasta":
            raise ValueError("only FASTA can be parsed from the middle of a file")
        self._resume = resume
        self._alphabet = alphabet
        self._filename = filename
        self._declared = fmt
        self._limits = limits or Limits()
        self._gzip: GzipStream | None = None
        self._parser: FormatParser | None = None
        self._head = b""
        self._detect_buffer = b""
        self._decided_compression = False
        self.compressed = False

    @property
    def format(self) -> str | None:
        return self._parser.format if self._parser else None

    @property
    def record_count(self) -> int:
        return self._parser.record_count if self._parser else 0

    @property
    def inflated_bytes(self) -> int:
        """gzip content inflated so far (0 for input that is not compressed)."""
        return self._gzip.inflated_bytes if self._gzip is not None else 0

    def feed(self, chunk: bytes) -> Iterator[Event]:
        """The events of ``chunk``, produced a piece at a time as they are iterated (see ``pieces``)."""
        for events in self.pieces(chunk):
            yield from events

    def pieces(self, chunk: bytes) -> Iterator[list[Event]]:
        """The events of ``chunk``, one list per piece of at most ``output_chunk_bytes`` of content.

        A small compressed chunk can inflate to gigabytes: parsing one bounded piece at a time, and
        only when the caller asks for the next, keeps the memory of one step bounded whatever the
        ratio (a piece may hold no events). The caller may check its time budget between pieces.
        """
        if not self._decided_compression:
            self._head += chunk
            if len(self._head) < 2:
                return
            chunk, self._head = self._head, b""
            self._decided_compression = True
            if chunk.startswith(GZIP_MAGIC):
                self.compressed = True
                self._gzip = GzipStream(self._limits)
        if self._gzip is None:
            step = self._limits.output_chunk_bytes
            for start in range(0, len(chunk), step):
                yield self._parse(chunk[start : start + step] if len(chunk) > step else chunk)
            return
        for piece in self._gzip.feed(chunk):
            yield self._parse(piece)

    def finish(self) -> list[Event]:
        events: list[Event] = []
        if not self._decided_compression:
            chunk, self._head = self._head, b""
            self._decided_compression = True
            events.extend(self._parse(chunk))
        if self._gzip is not None:
            self._gzip.finish()
        if self._parser is None:
            events.extend(self._parse(b"", final=True))
        if self._parser is None:
            detect_format(b"", self._filename)  # raises the right error for an empty file
        assert self._parser is not None
        events.extend(self._parser.finish())
        return events

    def _parse(self, data: bytes, final: bool = False) -> list[Event]:
        if self._parser is None:
            # Detection needs the first whole line (or plenty of bytes), whatever the chunking.
            self._detect_buffer += data
            head = self._detect_buffer
            if not final and b"\n" not in head.lstrip() and len(head) < DETECT_BYTES:
                return []
            if not head:
                return []
            fmt = self._declared or detect_format(head[:DETECT_BYTES], self._filename)
            self._parser = make_parser(fmt, self._alphabet, self._limits)
            if self._resume is not None:
                assert isinstance(self._parser, FastaParser)
                self._parser.resume(self._resume.ordinal, self._resume.line)
            data, self._detect_buffer = head, b""
        return self._parser.feed(data)

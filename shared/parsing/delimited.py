"""Streaming CSV/TSV with a header row naming the name and sequence columns.

Rows without quotes take a fast path (``bytes.split``); quoted rows (RFC 4180, also spanning
lines) go through the standard ``csv`` module one logical row at a time. A row longer than
``stream_threshold`` whose sequence is the last column is streamed like a FASTA sequence line, so
a chromosome in a CSV cell is never held whole; any other over-long row is an error.

Finding where a row ends is linear whatever the quoting: the scan keeps its place and its quote
state (``_Scan``) across lines and chunks, so no byte is looked at twice, and the unfinished row
waits in a ``bytearray`` that grows by appending instead of being copied on every chunk.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from shared.parsing.alphabet import Alphabet
from shared.parsing.errors import ParseError, ParseErrorCode
from shared.parsing.records import CONTROL_BYTES, Event, ParserBase

NAME_COLUMNS = frozenset(
    {"name", "gene name", "genename", "gene", "id", "identifier", "sequence name", "seq name", "header"}
)
SEQUENCE_COLUMNS = frozenset({"sequence", "seq", "residues", "dna", "sequence data"})
_QUOTE = b'"'
# Inside a quoted field: everything up to its closing quote, escaped quotes ("") included.
_QUOTED_TEXT = re.compile(rb'[^"]*(?:""[^"]*)*')
# Control characters other than TAB may not appear in a name or a column name (CONTROL_BYTES, as in
# a FASTA header); a quoted attribute may also hold line breaks (RFC 4180 allows them, JSON keeps them).
_CONTROL_TEXT = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CONTROL_TEXT_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# An error quotes at most this much of the input.
_EXCERPT_CHARS = 200
# The csv module's own cap on a field (128 KiB by default) would end a long streamed-free row with
# its own error: rows are bounded by max_row_bytes here instead, which may be larger.
csv.field_size_limit(2**31 - 1)


def _column_key(raw: str) -> str:
    return raw.strip().strip('"').lstrip("\ufeff").strip().lower().replace("_", " ").replace("-", " ")


def find_columns(header: list[str]) -> tuple[int, int] | None:
    """Indexes of the name and sequence columns, or None when the header names neither."""
    keys = [_column_key(h) for h in header]
    name = next((i for i, k in enumerate(keys) if k in NAME_COLUMNS), None)
    seq = next((i for i, k in enumerate(keys) if k in SEQUENCE_COLUMNS), None)
    if name is None or seq is None or name == seq:
        return None
    return name, seq


@dataclass
class _Scan:
    """How far the unfinished row at the start of the buffer has been scanned, and what was seen.

    ``cursor`` is relative to the row's start; ``newline`` is the next newline at or after it
    (relative too), or -1 if none was found yet.
    """

    cursor: int = 0
    inside: bool = False  # within a quoted field
    quoted: bool = False  # the row has a quote somewhere (it goes through the csv module)
    newline: int = -1


def _row_end(data: bytes | bytearray, start: int, scan: _Scan) -> int:
    """The newline that ends the row starting at ``start`` (outside quotes), or -1 if not in ``data``.

    Resumes from ``scan`` and leaves it where it stopped; each byte is searched once by ``find``:
    inside quotes only for the closing quote, outside for the next quote before the next newline.
    The next newline is remembered (``n`` when ``data`` has none after the cursor), so quotes on a
    long line never search that line again.
    """
    n = len(data)
    cursor = start + scan.cursor
    newline = start + scan.newline if scan.newline >= 0 else -1
    while True:
        if scan.inside:
            # The rest of a quoted field, escaped quotes ("") included, in one C-speed match.
            q = _QUOTED_TEXT.match(data, cursor).end()  # type: ignore[union-attr]  # always matches
            if q >= n - 1:
                # At the end: no closing quote yet, or a last '"' that may be the first of a "" pair.
                scan.cursor = q - start
                return -1
            cursor, scan.inside = q + 1, False
            continue
        if newline < cursor:
            newline = data.find(b"\n", cursor)
            if newline < 0:
                newline = n
        q = data.find(_QUOTE, cursor, newline)
        if q >= 0:
            cursor, scan.inside, scan.quoted = q + 1, True, True
            continue
        if newline == n:  # no newline yet: the rest of the row is in a later chunk
            scan.cursor, scan.newline = n - start, -1
            return -1
        scan.newline = newline - start
        return newline


def _field_starts(fields: list[bytes]) -> list[int]:
    """The 1-based column at which each field of a split row starts."""
    starts = [1]
    for field in fields[:-1]:
        starts.append(starts[-1] + len(field) + 1)
    return starts


def _control_column(text: bytes | str, multiline: bool = False) -> int:
    """0-based index of the first control character (not TAB; nor CR, LF if ``multiline``), or -1."""
    if isinstance(text, bytes):
        found_bytes = CONTROL_BYTES.search(text)
        return found_bytes.start() if found_bytes else -1
    found = (_CONTROL_TEXT_MULTILINE if multiline else _CONTROL_TEXT).search(text)
    return found.start() if found else -1


class DelimitedParser(ParserBase):
    def __init__(
        self,
        alphabet: Alphabet,
        delimiter: bytes = b",",
        max_row_bytes: int = 64 * 1024 * 1024,
        stream_threshold: int = 4 * 1024 * 1024,
        max_records: int = 1 << 62,
        max_field_bytes: int = 64 * 1024,
        max_attributes_bytes: int = 1024 * 1024,
    ) -> None:
        self.format = "csv" if delimiter == b"," else "tsv"
        self._delim = delimiter
        super().__init__(alphabet, max_records)
        self._extra: list[tuple[int, str]] = []  # (index, name) of columns kept as attributes
        self._max_row = max_row_bytes
        self._max_field = max_field_bytes
        self._max_attributes = max_attributes_bytes
        self._stream_threshold = stream_threshold
        self._tail = bytearray()  # the unfinished row, scanned as far as ``_scan`` says
        self._scan = _Scan()
        self._stream_tried = False  # streaming the unfinished row was considered (once per row)
        self._line = 1  # line where the tail starts
        self._ncols = 0
        self._name_col = -1
        self._seq_col = -1
        self._streaming = False  # inside the last (sequence) field of an over-long row
        self._stream_line = 0
        self._stream_column = 0

    def feed(self, chunk: bytes) -> list[Event]:
        self._bytes += len(chunk)
        if self._streaming:
            chunk = self._continue_stream(chunk)
            if self._streaming:
                return self._drain()
        self._tail += chunk
        pos = self._rows(self._tail, final=False)
        if pos:
            del self._tail[:pos]  # only the unfinished row stays (moved once, when rows before it end)
        if len(self._tail) > self._stream_threshold and not self._stream_tried:
            self._stream_tried = True
            self._start_stream()
        if len(self._tail) > self._max_row:
            raise ParseError(ParseErrorCode.ROW_TOO_LONG, f"row longer than {self._max_row} bytes", self._line, 1)
        return self._drain()

    def finish(self) -> list[Event]:
        if self._bytes == 0:
            raise ParseError(ParseErrorCode.EMPTY_FILE, "the file is empty", 1, 1)
        if self._streaming:
            self._streaming = False
            self._rec.end()
        elif self._tail:
            data, self._tail = self._tail + b"\n", bytearray()
            self._rows(data, final=True)
        if self._ncols == 0:
            raise ParseError(ParseErrorCode.MISSING_HEADER, "no header row naming the name and sequence columns", 1, 1)
        return self._drain()

    def _rows(self, data: bytes | bytearray, final: bool) -> int:
        """Handle every complete row in ``data``; returns where the unfinished one starts."""
        pos = 0
        scan = self._scan
        while pos < len(data):
            end = _row_end(data, pos, scan)
            if end < 0:
                if final and scan.inside:
                    raise ParseError(ParseErrorCode.UNTERMINATED_QUOTE, "a quoted field is never closed", self._line, 1)
                break
            if scan.quoted:
                self._quoted_row(bytes(data[pos:end]), self._line)
                self._line += data.count(b"\n", pos, end + 1)
            else:
                self._plain_row(bytes(data[pos:end]))
                self._line += 1
            pos = end + 1
            scan = self._scan = _Scan()
            self._stream_tried = False
        return pos

    def _plain_row(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        delim = self._delim
        if self._ncols == 0:
            self._header_row(line.decode("utf-8", "replace").split(delim.decode()))
            return
        if not line.strip():
            return
        fields = line.split(delim)
        if len(fields) != self._ncols:
            raise ParseError(
                ParseErrorCode.WRONG_FIELD_COUNT,
                f"row has {len(fields)} fields, the header has {self._ncols}",
                self._line,
                1,
            )
        starts = _field_starts(fields)
        attributes = None
        if self._extra:
            attributes = {}
            for i, name in self._extra:
                self._check_field(fields[i], self._line, starts[i])
                try:
                    attributes[name] = fields[i].decode("utf-8").strip()
                except UnicodeDecodeError:
                    raise ParseError(ParseErrorCode.INVALID_ENCODING, "row is not valid UTF-8", self._line, 1) from None
        name_col = self._name_col
        self._record(
            fields[name_col], fields[self._seq_col], self._line, starts[self._seq_col], attributes, starts[name_col]
        )

    def _check_field(self, field: bytes | str, line: int, column: int | None, multiline: bool = False) -> None:
        """A name or attribute cell: bounded, and free of control characters."""
        if len(field) > self._max_field:
            raise ParseError(
                ParseErrorCode.FIELD_TOO_LONG,
                f"a name or attribute field is longer than {self._max_field} bytes",
                line,
                column,
            )
        at = _control_column(field, multiline)
        if at >= 0:
            char = field[at]
            shown = f"0x{char if isinstance(char, int) else ord(char):02x}"
            raise ParseError(
                ParseErrorCode.INVALID_CHARACTER,
                f"control character {shown} in a name or attribute",
                line,
                None if column is None else column + at,
            )

    def _quoted_row(self, raw: bytes, line: int) -> None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError(ParseErrorCode.INVALID_ENCODING, "row is not valid UTF-8", line, exc.start + 1) from None
        try:
            rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=self._delim.decode(), strict=True))
        except csv.Error as exc:
            raise ParseError(
                ParseErrorCode.INVALID_QUOTING, f"the row's quoting is not valid CSV: {exc}", line, 1
            ) from None
        if not rows:
            return
        fields = rows[0]
        if self._ncols == 0:
            self._header_row(fields)
            return
        if len(fields) != self._ncols:
            raise ParseError(
                ParseErrorCode.WRONG_FIELD_COUNT, f"row has {len(fields)} fields, the header has {self._ncols}", line, 1
            )
        seq = fields[self._seq_col]
        column = max(text.find(seq), 0) + 1 if seq else 1
        attributes = None
        if self._extra:
            attributes = {}
            for i, name in self._extra:
                self._check_field(fields[i], line, None, multiline=True)  # a quoted cell's column is not known
                attributes[name] = fields[i].strip()
        self._record(fields[self._name_col].encode(), seq.encode(), line, column, attributes, None)

    def _header_row(self, fields: list[str]) -> None:
        column = 1
        for f in fields:
            self._check_field(f, self._line, column)
            column += len(f.encode()) + 1
        cols = find_columns(fields)
        if cols is None:
            shown = ", ".join(repr(f.strip()[:40]) for f in fields[:10]) + (", ..." if len(fields) > 10 else "")
            raise ParseError(
                ParseErrorCode.MISSING_COLUMN,
                "the header row must name a name column (e.g. 'name') and a 'sequence' column; "
                f"found {len(fields)} columns: {shown[: _EXCERPT_CHARS * 2]}",
                self._line,
                1,
            )
        self._ncols = len(fields)
        self._name_col, self._seq_col = cols
        self._extra = [(i, f.strip().strip('"').lstrip("\ufeff")) for i, f in enumerate(fields) if i not in cols]

    def _record(
        self,
        name: bytes,
        seq: bytes,
        line: int,
        column: int,
        attributes: dict[str, str] | None,
        name_column: int | None,
    ) -> None:
        self._check_field(name, line, name_column)
        self._check_attributes(attributes, line)
        name = name.strip()
        if name.startswith(_QUOTE) and name.endswith(_QUOTE) and len(name) >= 2:
            name = name[1:-1]
        if not name:
            raise ParseError(ParseErrorCode.MISSING_NAME, "row has an empty name", line, 1)
        self._rec.whole(name, line, seq, line, column, attributes=attributes)

    def _check_attributes(self, attributes: dict[str, str] | None, line: int) -> None:
        """Each cell is bounded by ``_check_field``; together they must fit beside a batch too."""
        if attributes and sum(len(v) for v in attributes.values()) > self._max_attributes:
            raise ParseError(
                ParseErrorCode.ATTRIBUTES_TOO_LONG,
                f"the row's extra columns hold more than {self._max_attributes} bytes together",
                line,
                1,
            )

    def _start_stream(self) -> None:
        """Begin streaming an over-long row whose sequence is its last, unquoted column."""
        if self._ncols == 0 or self._seq_col != self._ncols - 1 or self._scan.quoted:
            return
        fields = bytes(self._tail).split(self._delim, self._ncols - 1)
        if len(fields) != self._ncols:
            return
        starts = _field_starts(fields)
        column = starts[-1]
        for i in (self._name_col, *(i for i, _ in self._extra)):
            self._check_field(fields[i], self._line, starts[i])
        name = fields[self._name_col].strip()
        if not name:
            raise ParseError(ParseErrorCode.MISSING_NAME, "row has an empty name", self._line, 1)
        attributes = None
        if self._extra:
            attributes = {n: fields[i].decode("utf-8", "replace").strip() for i, n in self._extra}
        self._check_attributes(attributes, self._line)
        self._rec.start(name, self._line, attributes)
        self._stream_line = self._line
        self._stream_column = column
        self._streaming = True
        self._tail = bytearray()
        self._scan = _Scan()
        self._stream_tried = False  # for the row after this one
        self._continue_stream(fields[-1])

    def _continue_stream(self, chunk: bytes) -> bytes:
        """Feed sequence bytes of the streamed row; returns what follows its end."""
        nl = chunk.find(b"\n")
        piece = chunk if nl < 0 else chunk[:nl]
        if self._delim in piece:
            raise ParseError(
                ParseErrorCode.WRONG_FIELD_COUNT, f"row has more than {self._ncols} fields", self._stream_line, 1
            )
        self._rec.add(piece, self._stream_line, self._stream_column)
        self._stream_column += len(piece)
        if nl < 0:
            return b""
        self._rec.end()
        self._streaming = False
        self._line = self._stream_line + 1
        return chunk[nl + 1 :]

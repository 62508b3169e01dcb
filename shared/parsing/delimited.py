"""Streaming CSV/TSV with a header row naming the name and sequence columns.

Rows without quotes take a fast path (``bytes.split``); quoted rows (RFC 4180, also spanning
lines) go through the standard ``csv`` module one logical row at a time. A row longer than
``stream_threshold`` whose sequence is the last column is streamed like a FASTA sequence line, so
a chromosome in a CSV cell is never held whole; any other over-long row is an error.
"""

from __future__ import annotations

import csv
import io

from shared.parsing.alphabet import Alphabet
from shared.parsing.errors import ParseError, ParseErrorCode
from shared.parsing.records import Event, ParserBase

NAME_COLUMNS = frozenset(
    {"name", "gene name", "genename", "gene", "id", "identifier", "sequence name", "seq name", "header"}
)
SEQUENCE_COLUMNS = frozenset({"sequence", "seq", "residues", "dna", "sequence data"})
_QUOTE = b'"'


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


class DelimitedParser(ParserBase):
    def __init__(
        self,
        alphabet: Alphabet,
        delimiter: bytes = b",",
        max_row_bytes: int = 64 * 1024 * 1024,
        stream_threshold: int = 4 * 1024 * 1024,
        max_records: int = 1 << 62,
    ) -> None:
        self.format = "csv" if delimiter == b"," else "tsv"
        self._delim = delimiter
        super().__init__(alphabet, max_records)
        self._extra: list[tuple[int, str]] = []  # (index, name) of columns kept as attributes
        self._max_row = max_row_bytes
        self._stream_threshold = stream_threshold
        self._tail = b""
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
        data = self._tail + chunk if self._tail else chunk
        pos = self._rows(data, final=False)
        self._tail = data[pos:]
        if len(self._tail) > self._stream_threshold:
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
            data, self._tail = self._tail, b""
            self._rows(data + b"\n", final=True)
        if self._ncols == 0:
            raise ParseError(ParseErrorCode.MISSING_HEADER, "no header row naming the name and sequence columns", 1, 1)
        return self._drain()

    def _rows(self, data: bytes, final: bool) -> int:
        pos = 0
        n = len(data)
        next_quote = data.find(_QUOTE)
        delim = self._delim
        while pos < n:
            nl = data.find(b"\n", pos)
            if nl < 0:
                break
            if 0 <= next_quote < pos:
                next_quote = data.find(_QUOTE, pos)
            if 0 <= next_quote < nl:
                end = self._quoted_row_end(data, pos)
                if end < 0:
                    if final:
                        raise ParseError(
                            ParseErrorCode.UNTERMINATED_QUOTE, "a quoted field is never closed", self._line, 1
                        )
                    break
                self._quoted_row(data[pos:end], self._line)
                self._line += data.count(b"\n", pos, end + 1)
                pos = end + 1
                continue
            line = data[pos:nl]
            if line.endswith(b"\r"):
                line = line[:-1]
            if self._ncols == 0:
                self._header_row(line.decode("utf-8", "replace").split(delim.decode()))
            elif line.strip():
                fields = line.split(delim)
                if len(fields) != self._ncols:
                    raise ParseError(
                        ParseErrorCode.WRONG_FIELD_COUNT,
                        f"row has {len(fields)} fields, the header has {self._ncols}",
                        self._line,
                        1,
                    )
                column = 1 + sum(len(f) + 1 for f in fields[: self._seq_col])
                attributes = None
                if self._extra:
                    try:
                        attributes = {name: fields[i].decode("utf-8").strip() for i, name in self._extra}
                    except UnicodeDecodeError:
                        raise ParseError(
                            ParseErrorCode.INVALID_ENCODING, "row is not valid UTF-8", self._line, 1
                        ) from None
                self._record(fields[self._name_col], fields[self._seq_col], self._line, column, attributes)
            self._line += 1
            pos = nl + 1
        return pos

    def _quoted_row_end(self, data: bytes, pos: int) -> int:
        """Index of the newline ending the logical row starting at ``pos``, or -1 if not in ``data``."""
        nl = data.find(b"\n", pos)
        while nl >= 0:
            if data.count(_QUOTE, pos, nl) % 2 == 0:
                return nl
            nl = data.find(b"\n", nl + 1)
        return -1

    def _quoted_row(self, raw: bytes, line: int) -> None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError(ParseErrorCode.INVALID_ENCODING, "row is not valid UTF-8", line, exc.start + 1) from None
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=self._delim.decode(), strict=True))
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
        attributes = {name: fields[i].strip() for i, name in self._extra} if self._extra else None
        self._record(fields[self._name_col].encode(), seq.encode(), line, column, attributes)

    def _header_row(self, fields: list[str]) -> None:
        cols = find_columns(fields)
        if cols is None:
            raise ParseError(
                ParseErrorCode.MISSING_COLUMN,
                "the header row must name a name column (e.g. 'name') and a 'sequence' column; "
                f"found {[f.strip() for f in fields]}",
                self._line,
                1,
            )
        self._ncols = len(fields)
        self._name_col, self._seq_col = cols
        self._extra = [(i, f.strip().strip('"').lstrip("\ufeff")) for i, f in enumerate(fields) if i not in cols]

    def _record(
        self, name: bytes, seq: bytes, line: int, column: int, attributes: dict[str, str] | None = None
    ) -> None:
        name = name.strip()
        if name.startswith(_QUOTE) and name.endswith(_QUOTE) and len(name) >= 2:
            name = name[1:-1]
        if not name:
            raise ParseError(ParseErrorCode.MISSING_NAME, "row has an empty name", line, 1)
        self._rec.whole(name, line, seq, line, column, attributes=attributes)

    def _start_stream(self) -> None:
        """Begin streaming an over-long row whose sequence is its last, unquoted column."""
        if self._ncols == 0 or self._seq_col != self._ncols - 1 or _QUOTE in self._tail:
            return
        fields = self._tail.split(self._delim, self._ncols - 1)
        if len(fields) != self._ncols:
            return
        column = 1 + sum(len(f) + 1 for f in fields[:-1])
        name = fields[self._name_col].strip()
        if not name:
            raise ParseError(ParseErrorCode.MISSING_NAME, "row has an empty name", self._line, 1)
        attributes = None
        if self._extra:
            attributes = {n: fields[i].decode("utf-8", "replace").strip() for i, n in self._extra}
        self._rec.start(name, self._line, attributes)
        self._stream_line = self._line
        self._stream_column = column
        self._streaming = True
        self._tail = b""
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

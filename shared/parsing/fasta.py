"""Streaming FASTA: byte chunks in, record events out, memory bounded by the chunk size.

Only a header line is ever buffered across chunks (bounded by ``max_header_bytes``); sequence
lines of any length are handed on as they arrive, so a single-line chromosome costs no more than
a wrapped one. ``>`` starts a record only at a line start and ``;`` lines are comments.
"""

from __future__ import annotations

from shared.parsing.alphabet import Alphabet
from shared.parsing.errors import ParseError
from shared.parsing.records import Event, ParserBase

_GT = 0x3E
_SEMI = 0x3B
_BLANK = b" \t\r\v\f"


class FastaParser(ParserBase):
    format = "fasta"

    def __init__(self, alphabet: Alphabet, max_header_bytes: int = 64 * 1024, max_records: int = 1 << 62) -> None:
        super().__init__(alphabet, max_records)
        self._max_header = max_header_bytes
        self._line = 1  # line of the next unread byte
        self._column = 1  # column of the next unread byte
        self._header: bytearray | None = None  # header line still being read
        self._header_line = 0
        self._in_comment = False

    def feed(self, chunk: bytes) -> list[Event]:
        self._bytes += len(chunk)
        pos = 0
        n = len(chunk)
        # Where the next "\n;" is: scanned once per chunk, not once per record.
        next_comment = chunk.find(b"\n;")
        while pos < n:
            if self._header is not None:
                pos = self._continue_header(chunk, pos)
                continue
            if self._in_comment:
                nl = chunk.find(b"\n", pos)
                if nl < 0:
                    return self._drain()
                self._in_comment = False
                pos = self._newline_at(nl)
                continue
            if self._column == 1:
                first = chunk[pos]
                if first == _GT:
                    # Fast path: whole records (header and sequence lines) inside this chunk.
                    pos = self._whole_records(chunk, pos, next_comment)
                    if pos >= n or chunk[pos] != _GT:
                        continue
                    self._header = bytearray()
                    self._header_line = self._line
                    pos += 1
                    continue
                if first == _SEMI:
                    self._in_comment = True
                    continue
            if not self._rec.open:
                pos = self._before_first_record(chunk, pos)
                continue
            # Sequence text up to the next line that starts a header or a comment.
            end = chunk.find(b"\n>", pos)
            if 0 <= next_comment < pos:
                next_comment = chunk.find(b"\n;", pos)
            if end < 0 or (0 <= next_comment < end):
                end = next_comment
            end = n if end < 0 else end + 1
            block = chunk[pos:end]
            self._rec.add(block, self._line, self._column)
            newlines = block.count(b"\n")
            if newlines:
                self._line += newlines
                self._column = len(block) - block.rfind(b"\n")
            else:
                self._column += len(block)
            pos = end
        return self._drain()

    def finish(self) -> list[Event]:
        if self._header is not None:
            self._start_record()
        if self._bytes == 0:
            raise ParseError("empty_file", "the file is empty", 1, 1)
        if not self._rec.open and self._rec.record_count == 0:
            raise ParseError("no_records", "no FASTA record found (a record starts with '>')", self._line, 1)
        self._rec.end()
        return self._drain()

    def _whole_records(self, chunk: bytes, pos: int, next_comment: int) -> int:
        """Consume complete records from ``pos`` (a '>' at a line start); return where it stopped."""
        find = chunk.find
        whole = self._rec.whole
        line = self._line
        max_header = self._max_header
        if 0 <= next_comment < pos:
            next_comment = find(b"\n;", pos)
        limit = next_comment if next_comment >= 0 else len(chunk)
        while True:
            nl = find(b"\n", pos)
            if nl < 0 or nl - pos > max_header:
                break
            nxt = find(b"\n>", nl, limit)
            if nxt < 0:
                break
            block = chunk[nl + 1 : nxt + 1]
            whole(chunk[pos + 1 : nl].rstrip(b"\r"), line, block, line + 1)
            line += 1 + block.count(b"\n")
            pos = nxt + 1
        self._line = line
        return pos

    def _newline_at(self, nl: int) -> int:
        self._line += 1
        self._column = 1
        return nl + 1

    def _continue_header(self, chunk: bytes, pos: int) -> int:
        assert self._header is not None
        nl = chunk.find(b"\n", pos)
        stop = len(chunk) if nl < 0 else nl
        self._header += chunk[pos:stop]
        if len(self._header) > self._max_header:
            raise ParseError(
                "header_too_long",
                f"header longer than {self._max_header} bytes",
                self._header_line,
                self._max_header + 2,
            )
        if nl < 0:
            return len(chunk)
        self._start_record()
        return self._newline_at(nl)

    def _start_record(self) -> None:
        assert self._header is not None
        header = bytes(self._header)
        self._header = None
        self._rec.start(header.rstrip(b"\r"), self._header_line)

    def _before_first_record(self, chunk: bytes, pos: int) -> int:
        """Only blank lines may come before the first header."""
        nl = chunk.find(b"\n", pos)
        stop = len(chunk) if nl < 0 else nl
        text = chunk[pos:stop]
        stripped = text.lstrip(_BLANK)
        if stripped:
            column = self._column + len(text) - len(stripped)
            raise ParseError("missing_header", "text before the first FASTA header ('>' expected)", self._line, column)
        if nl < 0:
            self._column += len(text)
            return len(chunk)
        return self._newline_at(nl)

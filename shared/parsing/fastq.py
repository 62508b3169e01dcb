"""Streaming FASTQ: four-line and multi-line records, qualities kept.

Lines are read one at a time (only a partial last line is carried between chunks, bounded by
``max_line_bytes``). Multi-line quality is read by length, not by its first character, so
quality lines that begin with ``@`` or ``+`` are handled. A read is emitted whole with its
quality; reads longer than ``max_read_bytes`` are refused with a clear error rather than held.
"""

from __future__ import annotations

from shared.parsing import native
from shared.parsing.alphabet import Alphabet
from shared.parsing.errors import ParseError, ParseErrorCode
from shared.parsing.records import Event, ParserBase, WholeRecord

_QUALITY = bytes(range(0x21, 0x7F))
_HEADER, _SEQUENCE, _QUALITY_LINES = 0, 1, 2


class FastqParser(ParserBase):
    format = "fastq"

    def __init__(
        self,
        alphabet: Alphabet,
        max_line_bytes: int,
        max_read_bytes: int,
        max_records: int = 1 << 62,
        max_title_bytes: int = 64 * 1024,
    ) -> None:
        super().__init__(alphabet, max_records)
        # No line can be longer than a read or a title (plus '@' or '+' and CR): an unfinished line
        # waits in the buffer at most that long, so re-searching it per chunk stays linear.
        self._max_line = min(max_line_bytes, max(max_read_bytes, max_title_bytes) + 2)
        self._max_read = max_read_bytes
        self._max_title = max_title_bytes
        self._tail = b""
        self._line = 1  # number of the next line to be read
        self._state = _HEADER
        self._title = b""
        self._title_line = 0
        self._seq: list[bytes] = []
        self._seq_len = 0
        self._qual: list[bytes] = []
        self._qual_len = 0

    def feed(self, chunk: bytes) -> list[Event]:
        self._bytes += len(chunk)
        data = self._tail + chunk if self._tail else chunk
        pos = 0
        find = data.find
        on_line = self._on_line
        while True:
            if self._state == _HEADER and data.startswith(b"@", pos):
                pos = self._four_line_records(data, pos)
            nl = find(b"\n", pos)
            if nl < 0:
                break
            on_line(data[pos : nl - 1] if nl > pos and data[nl - 1] == 0x0D else data[pos:nl])
            self._line += 1
            pos = nl + 1
        self._tail = data[pos:]
        self._check_unfinished_line()
        return self._drain()

    def _check_unfinished_line(self) -> None:
        """An unfinished line fails as soon as it is longer than what it can be, with that limit's code."""
        pending = len(self._tail)
        if self._state == _HEADER and pending > self._max_title + 2:  # '@', the title and a CR
            raise ParseError(
                ParseErrorCode.TITLE_TOO_LONG,
                f"title longer than {self._max_title} bytes",
                self._line,
                self._max_title + 2,
            )
        if self._state == _SEQUENCE and pending > max(self._max_read, self._max_title) + 2:
            raise ParseError(
                ParseErrorCode.READ_TOO_LONG, f"read longer than {self._max_read} bases", self._title_line, None
            )
        if pending > self._max_line:
            raise ParseError(ParseErrorCode.LINE_TOO_LONG, f"line longer than {self._max_line} bytes", self._line, 1)

    def finish(self) -> list[Event]:
        if self._bytes == 0:
            raise ParseError(ParseErrorCode.EMPTY_FILE, "the file is empty", 1, 1)
        if self._tail:
            tail, self._tail = self._tail, b""
            self._on_line(tail.removesuffix(b"\r"))
            self._line += 1
        if self._state != _HEADER:
            raise ParseError(
                ParseErrorCode.TRUNCATED_RECORD,
                f"the file ends inside the record that starts at line {self._title_line}",
                self._line - 1,
                None,
            )
        if self._rec.record_count == 0:
            raise ParseError(ParseErrorCode.NO_RECORDS, "no FASTQ record found (a record starts with '@')", 1, 1)
        return self._drain()

    def _four_line_records(self, data: bytes, pos: int) -> int:
        """Fast path: consume well-formed four-line records from ``pos``; return where it stopped.

        Anything unusual (multi-line, a mismatch, an error) stops it, and the line-by-line path
        takes over and reports the problem with its position.
        """
        find = data.find
        rec = self._rec
        whole = rec.whole
        line = self._line
        max_read = self._max_read
        max_title = self._max_title
        accelerator = native.accelerator
        while True:
            if accelerator is not None:
                # C takes the plain records (shared/parsing/_native.c); the code below takes the
                # one it stopped at, if it can.
                ordinal, max_ordinal = rec.take_over()
                pos, line, ordinal = accelerator.fastq_records(
                    data, pos, line, ordinal, max_ordinal, max_read, max_title, rec.letter_table, self._out, WholeRecord
                )
                rec.hand_back(ordinal)
            if not data.startswith(b"@", pos):
                break
            n1 = find(b"\n", pos)
            n2 = find(b"\n", n1 + 1) if n1 >= 0 else -1
            if n2 < 0 or data[n2 + 1 : n2 + 2] != b"+":
                break
            n3 = find(b"\n", n2 + 1)
            n4 = find(b"\n", n3 + 1) if n3 >= 0 else -1
            if n4 < 0:
                break
            title = data[pos + 1 : n1].removesuffix(b"\r")
            seq = data[n1 + 1 : n2].removesuffix(b"\r")
            plus = data[n2 + 2 : n3].removesuffix(b"\r")
            qual = data[n3 + 1 : n4].removesuffix(b"\r")
            if (
                len(seq) != len(qual)
                or len(seq) > max_read
                or len(title) > max_title
                or (plus and plus != title)
                or b" " in seq
                or b"\t" in seq
                or qual.translate(None, _QUALITY)
            ):
                break
            whole(title, line, seq, line + 1, 1, quality=qual)
            line += 4
            pos = n4 + 1
        self._line = line
        return pos

    def _on_line(self, line: bytes) -> None:
        state = self._state
        if state == _HEADER:
            if not line.strip():
                return  # blank lines between records
            if line[0] != 0x40:  # '@'
                raise ParseError(
                    ParseErrorCode.MISSING_HEADER, "expected a FASTQ header starting with '@'", self._line, 1
                )
            if len(line) - 1 > self._max_title:
                raise ParseError(
                    ParseErrorCode.TITLE_TOO_LONG,
                    f"title longer than {self._max_title} bytes",
                    self._line,
                    self._max_title + 2,
                )
            self._title = line[1:]
            self._title_line = self._line
            self._seq = []
            self._seq_len = 0
            self._state = _SEQUENCE
        elif state == _SEQUENCE:
            if line[:1] == b"+":
                title = line[1:]
                if title and title != self._title:
                    raise ParseError(
                        ParseErrorCode.PLUS_TITLE_MISMATCH,
                        "the '+' line repeats a different title than the '@' line",
                        self._line,
                        2,
                    )
                self._qual = []
                self._qual_len = 0
                self._state = _QUALITY_LINES
                if self._seq_len == 0:
                    self._emit()
                return
            self._check_no_space(line, "sequence")
            self._seq.append(line)
            self._seq_len += len(line)
            if self._seq_len > self._max_read:
                raise ParseError(
                    ParseErrorCode.READ_TOO_LONG, f"read longer than {self._max_read} bases", self._title_line, None
                )
        else:
            self._check_no_space(line, "quality")
            if line.translate(None, _QUALITY):
                bad = next(i for i, b in enumerate(line) if b not in _QUALITY)
                raise ParseError(
                    ParseErrorCode.INVALID_QUALITY,
                    f"quality character 0x{line[bad]:02x} outside '!'..'~'",
                    self._line,
                    bad + 1,
                )
            self._qual.append(line)
            self._qual_len += len(line)
            if self._qual_len >= self._seq_len:
                if self._qual_len > self._seq_len:
                    raise ParseError(
                        ParseErrorCode.QUALITY_LENGTH,
                        f"quality is {self._qual_len} characters, the sequence {self._seq_len}",
                        self._line,
                        None,
                    )
                self._emit()

    def _check_no_space(self, line: bytes, what: str) -> None:
        for space in (b" ", b"\t"):
            at = line.find(space)
            if at >= 0:
                raise ParseError(
                    ParseErrorCode(f"whitespace_in_{what}"), f"whitespace inside a {what} line", self._line, at + 1
                )

    def _emit(self) -> None:
        self._rec.whole(
            self._title,
            self._title_line,
            b"\n".join(self._seq),
            self._title_line + 1,
            1,
            quality=b"".join(self._qual),
        )
        self._state = _HEADER

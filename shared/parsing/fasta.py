"""Streaming FASTA: byte chunks in, record events out, memory bounded by the chunk size.

Only a header line is ever buffered across chunks (bounded by ``max_header_bytes``); sequence
lines of any length are handed on as they arrive, so a single-line chromosome costs no more than
a wrapped one. ``>`` starts a record only at a line start and ``;`` lines are comments.
"""

from __future__ import annotations

from binascii import b2a_base64

from shared.parsing import native
from shared.parsing.alphabet import Alphabet
from shared.parsing.errors import ParseError, ParseErrorCode
from shared.parsing.records import URLSAFE, Event, ParserBase, WholeRecord, new_whole

_GT = 0x3E
_SEMI = 0x3B
_BLANK = b" \t\r\v\f"


def newline_before(chunk: bytes, mark: int, start: int, end: int) -> int:
    """``chunk.find(b"\\n" + mark, start, end)``, several times faster on sequence text.

    A two-byte search crawls through text with a newline every 60 bytes; ``mark`` alone (``>``
    or ``;``) is found with memchr, and hardly ever occurs outside a line start.
    """
    i = chunk.find(mark, start + 1, end)
    while i > 0 and chunk[i - 1] != 0x0A:
        i = chunk.find(mark, i + 1, end)
    return i - 1 if i > 0 else -1


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

    def resume(self, ordinal: int, line: int) -> None:
        """Start at a record that begins on ``line`` and is the ``ordinal``-th of its file (a
        shard's first record): before any byte is fed."""
        assert self._bytes == 0, "resume before the first chunk"
        self._line = line
        self._rec.hand_back(ordinal - 1)

    def feed(self, chunk: bytes) -> list[Event]:
        self._bytes += len(chunk)
        pos = 0
        n = len(chunk)
        view = memoryview(chunk)
        # Where the next "\n;" is: scanned once per chunk, not once per record.
        next_comment = newline_before(chunk, _SEMI, 0, n)
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
            end = newline_before(chunk, _GT, pos, n)
            if 0 <= next_comment < pos:
                next_comment = newline_before(chunk, _SEMI, pos, n)
            if end < 0 or (0 <= next_comment < end):
                end = next_comment
            end = n if end < 0 else end + 1
            # A view, not a copy: the text is read once more, by the cleaning.
            newlines = self._rec.add(view[pos:end], self._line, self._column)
            if newlines:
                self._line += newlines
                self._column = end - chunk.rfind(b"\n", pos, end)
            else:
                self._column += end - pos
            pos = end
        return self._drain()

    def finish(self) -> list[Event]:
        if self._header is not None:
            self._start_record()
        if self._bytes == 0:
            raise ParseError(ParseErrorCode.EMPTY_FILE, "the file is empty", 1, 1)
        if not self._rec.open and self._rec.record_count == 0:
            raise ParseError(
                ParseErrorCode.NO_RECORDS, "no FASTA record found (a record starts with '>')", self._line, 1
            )
        self._rec.end()
        return self._drain()

    def _whole_records(self, chunk: bytes, pos: int, next_comment: int) -> int:
        """Consume complete records from ``pos`` (a '>' at a line start); return where it stopped.

        The hot loop of files of many short records, so it is written flat: a record whose text
        holds nothing but letters of the alphabet and newlines, with an ASCII header, is checked,
        hashed and emitted right here; anything else (CR, gaps, other whitespace, an invalid
        character or header, the record limit) goes through ``RecordBuilder.whole``, which cleans
        it or raises the error with its position.
        """
        find = chunk.find
        rec = self._rec
        whole = rec.whole
        append = self._out.append
        letters = rec.letters
        md5_copy = rec.md5_seed.copy
        sha_copy = rec.sha512_seed.copy
        line = self._line
        max_header = self._max_header
        if 0 <= next_comment < pos:
            next_comment = newline_before(chunk, _SEMI, pos, len(chunk))
        limit = next_comment if next_comment >= 0 else len(chunk)
        ordinal, max_ordinal = rec.take_over()
        fast = native.accelerator.whole_records if native.accelerator is not None else None
        while True:
            if fast is not None:
                # C takes the plain records; the loop below takes the one it stopped at, if any.
                pos, line, ordinal = fast(
                    chunk, pos, limit, line, ordinal, max_ordinal, max_header, rec.letter_table, self._out, WholeRecord
                )
            nl = find(b"\n", pos)
            if nl < 0 or nl - pos > max_header:
                break
            nxt = newline_before(chunk, _GT, nl, limit)
            if nxt < 0:
                break
            block = chunk[nl + 1 : nxt + 1]
            header = chunk[pos + 1 : nl]
            data = block.replace(b"\n", b"")
            if (
                ordinal >= max_ordinal
                or data.translate(None, letters)
                or not header.isascii()
                or header.endswith(b"\r")
            ):
                rec.hand_back(ordinal)
                whole(header.rstrip(b"\r"), line, block, line + 1)
                ordinal = rec.last_ordinal
            else:
                gene_name = header.decode("ascii")
                parts = gene_name.split(None, 1)
                norm = data.upper()
                md5 = md5_copy()
                md5.update(norm)
                sha = sha_copy()
                sha.update(norm)
                ordinal += 1
                append(
                    new_whole(
                        WholeRecord,
                        (
                            ordinal,
                            line,
                            gene_name,
                            parts[0] if parts else "",
                            parts[1].strip() if len(parts) > 1 else "",
                            data,
                            md5.hexdigest(),
                            "SQ." + b2a_base64(sha.digest()[:24], newline=False).translate(URLSAFE).decode(),
                            None,
                            None,
                        ),
                    )
                )
            line += 1 + block.count(b"\n")
            pos = nxt + 1
        rec.hand_back(ordinal)
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
                ParseErrorCode.HEADER_TOO_LONG,
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
            raise ParseError(
                ParseErrorCode.MISSING_HEADER, "text before the first FASTA header ('>' expected)", self._line, column
            )
        if nl < 0:
            self._column += len(text)
            return len(chunk)
        return self._newline_at(nl)

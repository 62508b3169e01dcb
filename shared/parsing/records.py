"""What the engine yields, and the one place that turns raw sequence bytes into checked residues.

A record is announced by ``RecordStart``, its residues follow as ``Residues`` slices of any size,
and ``RecordEnd`` closes it with length and checksums. A consumer never needs a whole sequence.
"""

from __future__ import annotations

import hashlib
import re
from binascii import b2a_base64
from typing import NamedTuple

from shared.parsing import native
from shared.parsing.alphabet import Alphabet
from shared.parsing.errors import ParseError, ParseErrorCode
from shared.parsing.workers import HashInBackground

# Below this, the Python calls are as quick as the C one.
NATIVE_CLEAN_MIN_BYTES = 4096

WHITESPACE = b" \t\r\n\v\f"


class RecordStart(NamedTuple):
    ordinal: int
    line_number: int
    gene_name: str
    seq_id: str
    description: str
    attributes: dict[str, str] | None = None  # extra CSV/TSV columns


class Residues(NamedTuple):
    ordinal: int
    data: bytes


class RecordEnd(NamedTuple):
    ordinal: int
    length: int
    md5: str
    refget: str


class WholeRecord(NamedTuple):
    """A record that fitted in one chunk: start, residues and end in one event (the common case)."""

    ordinal: int
    line_number: int
    gene_name: str
    seq_id: str
    description: str
    data: bytes
    md5: str
    refget: str
    quality: bytes | None = None  # FASTQ only, as long as ``data``
    attributes: dict[str, str] | None = None  # extra CSV/TSV columns


Event = RecordStart | Residues | RecordEnd | WholeRecord

URLSAFE = bytes.maketrans(b"+/", b"-_")
# Builds a WholeRecord without NamedTuple's Python-level __new__ (a hot path: one per short record).
new_whole = tuple.__new__


def refget_digest(sha512_digest: bytes) -> str:
    return "SQ." + b2a_base64(sha512_digest[:24], newline=False).translate(URLSAFE).decode("ascii")


# Control characters other than TAB may not appear in a name: they break every consumer of it
# (a NUL cannot even be stored in a Postgres text column).
CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def split_header(header: bytes, line: int, column: int | None = 2) -> tuple[str, str, str]:
    """``gene_name`` (the whole header), ``seq_id`` (its first word) and ``description`` (the rest).

    ``column`` is where the header starts in its line (after '>' or '@'), for error positions.
    """
    control = CONTROL_BYTES.search(header)
    if control is not None:
        raise ParseError(
            ParseErrorCode.INVALID_CHARACTER,
            f"control character 0x{header[control.start()]:02x} in a name",
            line,
            None if column is None else column + control.start(),
        )
    try:
        gene_name = header.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(
            ParseErrorCode.INVALID_HEADER_ENCODING,
            "header is not valid UTF-8",
            line,
            None if column is None else column + exc.start,
        ) from None
    parts = gene_name.split(None, 1)
    return gene_name, parts[0] if parts else "", parts[1].strip() if len(parts) > 1 else ""


class RecordBuilder:
    """Checks, counts and hashes residues as they stream past, and emits the record events.

    Shared by every format so that validation, checksums and error positions behave the same.
    Each piece of raw text costs a newline removal, one ``bytes.translate`` validation pass, an
    upper-casing for the checksum input and the two hashes (see ``_clean``).
    """

    __slots__ = (
        "_allowed",
        "_length",
        "_letters",
        "_max_records",
        "_md5",
        "_non_letters",
        "_ordinal",
        "_out",
        "_scratch",
        "_sha",
        "_turn",
        "letter_table",
        "letters",
        "md5_seed",
        "open",
        "sha512_seed",
    )  # fmt: skip

    def __init__(self, alphabet: Alphabet, out: list[Event], max_records: int = 1 << 62) -> None:
        self._max_records = max_records
        self._allowed = alphabet.allowed
        self._non_letters = alphabet.non_letters
        self._letters = bytes(c for c in alphabet.allowed if c not in alphabet.non_letters)
        self._out = out
        self._ordinal = -1
        self._length = 0
        self._md5 = HashInBackground(hashlib.md5(usedforsecurity=False))
        self._sha = HashInBackground(hashlib.sha512())
        self.open = False
        # For a format's own fast path (FASTA's run of whole records): the letters whose text needs
        # no cleaning, and empty hashes to copy (cheaper than a constructor with keywords).
        self.letters = self._letters
        self.letter_table = bytes(1 if c in self._letters else 0 for c in range(256))
        self._scratch = [bytearray() for _ in range(HashInBackground.DEPTH + 1)]
        self._turn = 0
        self.md5_seed = hashlib.md5(usedforsecurity=False)
        self.sha512_seed = hashlib.sha512()

    @property
    def record_count(self) -> int:
        return self._ordinal + 1

    @property
    def last_ordinal(self) -> int:
        """The ordinal of the last record begun (-1 before the first)."""
        return self._ordinal

    def take_over(self) -> tuple[int, int]:
        """For a fast path that numbers records itself: close any open record and hand over
        (last ordinal, highest ordinal allowed); ``hand_back`` returns the numbering."""
        if self.open:
            self.end()
        return self._ordinal, self._max_records - 1

    def hand_back(self, last_ordinal: int) -> None:
        self._ordinal = last_ordinal

    def whole(
        self,
        header: bytes,
        line: int,
        raw: bytes,
        raw_line: int,
        raw_column: int = 1,
        quality: bytes | None = None,
        attributes: dict[str, str] | None = None,
    ) -> None:
        """A complete record: its header (at ``line``) and all its sequence text (at ``raw_line``).

        The hot path for files of many short records: one event instead of three.
        """
        if self.open:
            self.end()
        gene_name, seq_id, description = split_header(header, line)
        data, norm = self._clean(raw, raw_line, raw_column)
        self._count(line)
        self._out.append(
            new_whole(
                WholeRecord,
                (
                    self._ordinal,
                    line,
                    gene_name,
                    seq_id,
                    description,
                    data,
                    hashlib.md5(norm, usedforsecurity=False).hexdigest(),
                    refget_digest(hashlib.sha512(norm).digest()),
                    quality,
                    attributes,
                ),
            )
        )

    def _clean(self, raw: bytes, line: int, column: int, native_first: bool = True) -> tuple[bytes, bytes]:
        """Residues (whitespace removed, case kept) and the checksum input (upper-cased, letters only).

        Common case first: after removing plain newlines (memchr speed), one ``translate`` against
        the alphabet's letters proves there is nothing else to remove; only when something is left
        do the slower passes run (other whitespace, gaps, or an invalid character to locate).
        """
        accelerator = native.accelerator
        if native_first and accelerator is not None and len(raw) >= NATIVE_CLEAN_MIN_BYTES:
            cleaned: tuple[bytes, bytes] | None = accelerator.clean(raw, self.letter_table)
            if cleaned is not None:
                return cleaned
        data = raw.replace(b"\n", b"")
        if not data.translate(None, self._letters):
            return data, data.upper()
        data = data.translate(None, WHITESPACE)
        if data.translate(None, self._allowed):
            raise self._invalid(raw, line, column)
        return data, data.upper().translate(None, self._non_letters)

    def start(self, header: bytes, line: int, attributes: dict[str, str] | None = None) -> None:
        if self.open:
            self.end()
        gene_name, seq_id, description = split_header(header, line)
        self._count(line)
        self._length = 0
        self._md5 = HashInBackground(hashlib.md5(usedforsecurity=False))
        self._sha = HashInBackground(hashlib.sha512())
        self.open = True
        self._out.append(RecordStart(self._ordinal, line, gene_name, seq_id, description, attributes))

    def _count(self, line: int) -> None:
        if self._ordinal + 1 >= self._max_records:
            raise ParseError(ParseErrorCode.TOO_MANY_RECORDS, f"more than {self._max_records} records", line, 1)
        self._ordinal += 1

    def add(self, raw: bytes | memoryview, line: int, column: int) -> int:
        """Take raw sequence text (may span lines) that starts at ``line``/``column`` (1-based).

        Returns the number of newlines in it (the caller's line count).
        """
        accelerator = native.accelerator
        if accelerator is not None and len(raw) >= NATIVE_CLEAN_MIN_BYTES:
            # The checksum input goes to reusable buffers taken in turn, one more than the pieces
            # a HashInBackground may have pending: the one taken now was last read by a hash that
            # had to finish before the previous piece could be handed over.
            scratch = self._scratch[self._turn]
            if len(scratch) < len(raw):
                scratch = self._scratch[self._turn] = bytearray(len(raw))
            plain: tuple[bytes, int] | None = accelerator.clean_into(raw, self.letter_table, scratch)
            if plain is not None:
                self._turn = (self._turn + 1) % len(self._scratch)
                data, newlines = plain
                if data:
                    self._hash_piece(data, memoryview(scratch)[: len(data)])
                return newlines
        text = bytes(raw)
        data, norm = self._clean(text, line, column, native_first=False)
        if data:
            self._hash_piece(data, norm)
        return text.count(b"\n")

    def _hash_piece(self, data: bytes, norm: bytes | memoryview) -> None:
        self._length += len(data)
        self._md5.update(norm)
        self._sha.update(norm)
        self._out.append(Residues(self._ordinal, data))

    def end(self) -> None:
        if not self.open:
            return
        self.open = False
        self._out.append(
            RecordEnd(
                self._ordinal, self._length, self._md5.result().hexdigest(), refget_digest(self._sha.result().digest())
            )
        )

    def _invalid(self, raw: bytes, line: int, column: int) -> ParseError:
        allowed = set(self._allowed) | set(WHITESPACE)
        for byte in raw:
            if byte == 0x0A:
                line += 1
                column = 1
                continue
            if byte not in allowed:
                shown = chr(byte) if 0x20 < byte < 0x7F else f"0x{byte:02x}"
                return ParseError(
                    ParseErrorCode.INVALID_CHARACTER, f"invalid character {shown!r} in sequence", line, column
                )
            column += 1
        raise AssertionError("invalid byte not found")  # pragma: no cover


class ParserBase:
    """What every format parser shares: the record builder and the events it collects per feed."""

    format: str

    def __init__(self, alphabet: Alphabet, max_records: int) -> None:
        self._out: list[Event] = []
        self._rec = RecordBuilder(alphabet, self._out, max_records)
        self._bytes = 0  # fed so far, to tell an empty file

    @property
    def record_count(self) -> int:
        return self._rec.record_count

    def _drain(self) -> list[Event]:
        events = self._out[:]
        self._out.clear()
        return events

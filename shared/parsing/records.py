"""What the engine yields, and the one place that turns raw sequence bytes into checked residues.

A record is announced by ``RecordStart``, its residues follow as ``Residues`` slices of any size,
and ``RecordEnd`` closes it with length and checksums. A consumer never needs a whole sequence.
"""

from __future__ import annotations

import base64
import hashlib
from typing import NamedTuple

from shared.parsing.alphabet import Alphabet
from shared.parsing.errors import ParseError

WHITESPACE = b" \t\r\n\v\f"


class RecordStart(NamedTuple):
    ordinal: int
    line_number: int
    gene_name: str
    seq_id: str
    description: str


class Residues(NamedTuple):
    ordinal: int
    data: bytes


class RecordEnd(NamedTuple):
    ordinal: int
    length: int
    md5: str
    refget: str


Event = RecordStart | Residues | RecordEnd


def refget_digest(sha512_digest: bytes) -> str:
    return "SQ." + base64.urlsafe_b64encode(sha512_digest[:24]).decode("ascii")


class RecordBuilder:
    """Checks, counts and hashes residues as they stream past, and emits the record events.

    Shared by every format so that validation, checksums and error positions behave the same.
    """

    __slots__ = ("_allowed", "_length", "_md5", "_non_letters", "_ordinal", "_out", "_sha", "open")

    def __init__(self, alphabet: Alphabet, out: list[Event]) -> None:
        self._allowed = alphabet.allowed
        self._non_letters = alphabet.non_letters
        self._out = out
        self._ordinal = -1
        self._length = 0
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha = hashlib.sha512()
        self.open = False

    @property
    def record_count(self) -> int:
        return self._ordinal + 1

    def start(self, header: bytes, line: int) -> None:
        if self.open:
            self.end()
        try:
            gene_name = header.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError("invalid_header_encoding", "header is not valid UTF-8", line, exc.start + 2) from None
        gene_name = gene_name.rstrip("\r\n")
        parts = gene_name.split(None, 1)
        seq_id = parts[0] if parts else ""
        description = parts[1].strip() if len(parts) > 1 else ""
        self._ordinal += 1
        self._length = 0
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha = hashlib.sha512()
        self.open = True
        self._out.append(RecordStart(self._ordinal, line, gene_name, seq_id, description))

    def add(self, raw: bytes, line: int, column: int) -> None:
        """Take raw sequence text (may span lines) that starts at ``line``/``column`` (1-based)."""
        data = raw.translate(None, WHITESPACE)
        if not data:
            return
        if data.translate(None, self._allowed):
            raise self._invalid(raw, line, column)
        self._length += len(data)
        norm = data.upper()
        if self._non_letters:
            norm = norm.translate(None, self._non_letters)
        self._md5.update(norm)
        self._sha.update(norm)
        self._out.append(Residues(self._ordinal, data))

    def end(self) -> None:
        if not self.open:
            return
        self.open = False
        self._out.append(
            RecordEnd(self._ordinal, self._length, self._md5.hexdigest(), refget_digest(self._sha.digest()))
        )

    def _invalid(self, raw: bytes, line: int, column: int) -> ParseError:
        allowed = set(self._allowed) | set(WHITESPACE)
        for _index, byte in enumerate(raw):
            if byte == 0x0A:
                line += 1
                column = 1
                continue
            if byte not in allowed:
                shown = chr(byte) if 0x20 < byte < 0x7F else f"0x{byte:02x}"
                return ParseError("invalid_character", f"invalid character {shown!r} in sequence", line, column)
            column += 1
        raise AssertionError("invalid byte not found")  # pragma: no cover

"""Where a large FASTA can be cut so that several parsers share it: the shards' starts in one pass.

A FASTA record begins at a ``>`` at the start of a line, and such a ``>`` always begins a record
(a header is one line; no sequence or comment line starts with ``>``). So the record starts at or
after every ``shard_bytes`` step are found by searching for ``"\\n>"``, and counting ``"\\n>"`` and
``"\\n"`` before each one gives the ordinal and line its shard's parse resumes at
(``engine.Resume``): every record, checksum and error position comes out as in a parse of the
whole file. FASTQ (``@`` may begin a quality line) and CSV/TSV (a header row, quoted newlines)
have no such mark, so they are never split.

Linear and in constant memory: each chunk is searched once from where the last count stopped;
only its last byte is kept across chunks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ShardStart:
    """A shard begins at a record: its ``>`` at byte ``offset``, its ordinal, its line."""

    offset: int
    ordinal: int
    line: int


class FastaShardScanner:
    """Feed a FASTA file's bytes in order; ``starts`` are the shards' first records.

    Every shard but the last is at least ``shard_bytes`` long: the next one begins at the first
    record starting ``shard_bytes`` or more after the previous start. Only a file whose first byte
    is ``>`` can be split (``splittable``): anything before the first header is the whole file's
    parse to judge.
    """

    def __init__(self, shard_bytes: int) -> None:
        if shard_bytes <= 0:
            raise ValueError("shard_bytes must be positive")
        self._shard_bytes = shard_bytes
        self._offset = 0  # bytes fed
        self._records = 0  # records starting before ``_offset``
        self._lines = 0  # newlines before ``_offset``
        self._last = b""  # the byte before ``_offset``
        self._target = shard_bytes
        self.starts: list[ShardStart] = [ShardStart(0, 0, 1)]

    @staticmethod
    def splittable(head: bytes) -> bool:
        return head.startswith(b">")

    @property
    def records(self) -> int:
        """Records starting in the bytes fed so far."""
        return self._records

    @property
    def size(self) -> int:
        return self._offset

    def feed(self, chunk: bytes) -> None:
        base, n = self._offset, len(chunk)
        if n == 0:
            return
        if base == 0 and not self.splittable(chunk):
            raise ValueError("a FASTA file can be split only if its first byte is '>'")
        # A '>' at the chunk's first byte starts a record if a newline (or nothing) came before.
        first_starts = chunk[0] == 0x3E and (base == 0 or self._last == b"\n")
        pos = 0  # bytes of the chunk counted so far
        while True:
            lo = self._target - base
            if lo >= n:
                break
            if lo <= 0 and first_starts and pos == 0:
                start = 0
            else:
                found = chunk.find(b"\n>", max(lo - 1, 0))
                if found < 0:
                    break  # the target falls inside a record that goes on: the next start is later
                start = found + 1
            self._count(chunk, pos, start, first_starts)
            pos = start
            self.starts.append(ShardStart(base + start, self._records, self._lines + 1))
            self._target = base + start + self._shard_bytes
        self._count(chunk, pos, n, first_starts)
        self._offset = base + n
        self._last = chunk[-1:]

    def _count(self, chunk: bytes, pos: int, end: int, first_starts: bool) -> None:
        """Add the record starts and newlines of ``chunk[pos:end]``."""
        if pos == 0:
            self._records += (first_starts and end > 0) + chunk.count(b"\n>", 0, end)
        else:  # the '>' at ``pos`` itself is counted: the pair before it lies in the range
            self._records += chunk.count(b"\n>", pos - 1, end)
        self._lines += chunk.count(b"\n", pos, end)

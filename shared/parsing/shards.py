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

A bgzip file (BGZF: a series of gzip members of at most 64 KiB, each with its size in its header)
is split through its blocks: its content is scanned block by block, and a shard starts at the
block holding its first record, skipping that record's offset into the block. Plain gzip has no
such points to start from and is parsed whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from shared.parsing.inflate import InflateError, gzip_member_inflater


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


# --- bgzip (BGZF): gzip members of at most 64 KiB each, whose sizes are in their headers ----------

BGZF_MAX_BLOCK = 65536  # compressed and inflated size bound of one block (SAM/BAM spec, section 4.1)


def bgzf_block_size(data: bytes | memoryview, pos: int) -> int | None:
    """The size of the BGZF block at ``pos`` from its header; None while the header is incomplete.

    Raises ``ValueError`` for a member that is not a BGZF block (no ``BC`` subfield): a plain gzip
    file, or one whose later members are plain gzip, cannot be entered in the middle.
    """
    if len(data) - pos < 12:
        return None
    if data[pos] != 0x1F or data[pos + 1] != 0x8B or data[pos + 2] != 8 or not data[pos + 3] & 0x04:
        raise ValueError("not a BGZF block (no gzip header with an extra field)")
    xlen = data[pos + 10] | data[pos + 11] << 8
    if len(data) - pos < 12 + xlen:
        return None
    sub = pos + 12
    while sub + 4 <= pos + 12 + xlen:
        slen = data[sub + 2] | data[sub + 3] << 8
        if data[sub] == 0x42 and data[sub + 1] == 0x43 and slen == 2:
            return (data[sub + 4] | data[sub + 5] << 8) + 1
        sub += 4 + slen
    raise ValueError("not a BGZF block (no BC subfield)")


@dataclass(frozen=True)
class BgzfShardStart:
    """A shard's first record in a bgzip file: the block it lies in (``block``, a byte offset in
    the compressed file; ``block_size``), its offset inside that block's content (``within``), and
    in the whole content (``content_offset``), with its ordinal and line."""

    block: int
    block_size: int
    within: int
    content_offset: int
    ordinal: int
    line: int


class BgzfShardScanner:
    """``FastaShardScanner`` over the content of a bgzip file, fed its compressed bytes in order.

    Every block is inflated (at most 64 KiB, checked) and handed to the FASTA scanner on its own,
    so a shard start found is always inside the block just fed. Memory: one block carried across
    chunks. ``limit`` and ``ratio`` bound the content inflated as the parse's decompression limits
    do (``ValueError``: the whole parse then refuses the file with its own error).
    """

    def __init__(self, shard_bytes: int, limit: int, ratio: int) -> None:
        self.content = FastaShardScanner(shard_bytes)
        self._limit = limit
        self._ratio = ratio
        self._rest = b""
        self.size = 0  # compressed bytes fed
        self.starts: list[BgzfShardStart] = [BgzfShardStart(0, 0, 0, 0, 0, 1)]

    def feed(self, chunk: bytes) -> None:
        data = self._rest + chunk if self._rest else chunk
        pos = 0
        while True:
            size = bgzf_block_size(data, pos)
            if size is None or len(data) - pos < size:
                break
            if size > BGZF_MAX_BLOCK:
                raise ValueError("a BGZF block larger than 64 KiB")
            block = data[pos : pos + size]
            inflater = gzip_member_inflater()
            try:
                content = inflater.decompress(block, BGZF_MAX_BLOCK + 1)
            except InflateError as exc:
                raise ValueError(f"a corrupt BGZF block: {exc}") from None
            if not inflater.eof or inflater.unused_data or len(content) > BGZF_MAX_BLOCK:
                raise ValueError("a BGZF block that is not one whole gzip member of at most 64 KiB")
            before = len(self.content.starts)
            offset = self.content.size
            if content:
                self.content.feed(content)
            inflated = self.content.size
            if inflated > self._limit or (inflated > 64 * 1024 * 1024 and inflated > (self.size + pos) * self._ratio):
                raise ValueError("content beyond the decompression limits")
            for start in self.content.starts[before:]:
                self.starts.append(
                    BgzfShardStart(
                        self.size + pos, size, start.offset - offset, start.offset, start.ordinal, start.line
                    )
                )
            pos += size
        self._rest = data[pos:]
        self.size += pos

    def finish(self) -> None:
        if self._rest:
            raise ValueError("the bgzip file ends inside a block")


class ShardContent:
    """The content of one bgzip shard from its compressed bytes: the first ``skip`` bytes of the
    first block dropped, ``length`` bytes kept, the rest of the last block ignored. Inflated by the
    engine's ``GzipStream`` (bounded pieces, decompression limits)."""

    def __init__(self, inflate: Callable[[bytes], Iterator[bytes]], skip: int, length: int) -> None:
        self._inflate = inflate
        self._skip = skip
        self._left = length

    @property
    def complete(self) -> bool:
        return self._left == 0

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        for piece in self._inflate(chunk):
            if self._skip:
                cut = min(self._skip, len(piece))
                piece, self._skip = piece[cut:], self._skip - cut
            if not self._left:
                return
            if piece:
                if len(piece) > self._left:
                    piece = piece[: self._left]
                self._left -= len(piece)
                yield piece

from typing import Any

def whole_records(
    chunk: bytes,
    pos: int,
    limit: int,
    line: int,
    ordinal: int,
    max_ordinal: int,
    max_header: int,
    letters: bytes,
    out: list[Any],
    record_type: type[tuple[Any, ...]],
    /,
) -> tuple[int, int, int]: ...
def clean(raw: bytes, letters: bytes, /) -> tuple[bytes, bytes] | None: ...
def clean_into(raw: bytes | memoryview, letters: bytes, checksum_buffer: bytearray, /) -> tuple[bytes, int] | None: ...
def share_malloc_arena() -> None: ...
def fastq_records(
    data: bytes,
    pos: int,
    line: int,
    ordinal: int,
    max_ordinal: int,
    max_read: int,
    max_title: int,
    letters: bytes,
    out: list[Any],
    record_type: type[tuple[Any, ...]],
    /,
) -> tuple[int, int, int]: ...
def pair_digest(name: str, length: int, /) -> str | None: ...

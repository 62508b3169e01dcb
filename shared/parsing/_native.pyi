def whole_records(
    chunk: bytes,
    pos: int,
    limit: int,
    line: int,
    ordinal: int,
    max_ordinal: int,
    max_header: int,
    letters: bytes,
    out: list[object],
    record_type: type[tuple[object, ...]],
    /,
) -> tuple[int, int, int]: ...
def clean(raw: bytes, letters: bytes, /) -> tuple[bytes, bytes] | None: ...
def clean_into(raw: bytes | memoryview, letters: bytes, checksum_buffer: bytearray, /) -> tuple[bytes, int] | None: ...
def share_malloc_arena() -> None: ...

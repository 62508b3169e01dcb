from collections.abc import Callable
from typing import Any

def take_whole(
    events: list[Any],
    start: int,
    whole_type: type,
    record_type: type,
    part_bytes: int,
    overhead: int,
    bytes_now: int,
    batch_bytes: int,
    max_records: int,
    rows: list[Any],
    pair_native: Callable[[str, int], str | None] | None,
    pair_fallback: Callable[[str, int], str],
    /,
) -> tuple[int, int, bool]: ...

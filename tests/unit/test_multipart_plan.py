"""How large uploads are cut into parts: within S3's bounds for every size up to 5 TiB."""

from __future__ import annotations

import pytest

from shared.domain.multipart import MAX_PARTS, S3_MIN_PART, MiB, plan


@pytest.mark.parametrize("size", [1, 64 * MiB + 1, 10 * 1024 * MiB, 160 * 1024 * MiB, 5 * 1024**4])
def test_parts_cover_the_file_within_s3s_bounds(size: int) -> None:
    parts = plan(size, 16 * MiB)
    assert parts.count <= MAX_PARTS and parts.part_size % MiB == 0 and parts.part_size >= S3_MIN_PART
    assert sum(parts.length(n) for n in (1, parts.count)) <= size + parts.part_size
    assert parts.part_size * (parts.count - 1) + parts.length(parts.count) == size
    assert 0 < parts.length(parts.count) <= parts.part_size


def test_the_part_size_grows_with_the_file() -> None:
    assert plan(100 * MiB, 16 * MiB).part_size == 16 * MiB
    assert plan(5 * 1024**4, 16 * MiB).part_size == 525 * MiB  # 5 TiB / 10,000 parts, rounded up to a MiB
    with pytest.raises(ValueError):
        plan(100 * MiB, 16 * MiB).length(8)

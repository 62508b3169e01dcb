"""How a large upload is cut into parts: S3's bounds, and a part size that grows with the file.

Pure. S3 allows at most 10,000 parts per upload, each of 5 MiB to 5 GiB (the last may be
smaller), and objects up to 5 TiB. A part size of at least ``min_part`` that keeps the count
under 10,000 -- a whole number of MiB -- covers every size up to the 5 TiB limit.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024
MAX_PARTS = 10_000
S3_MIN_PART = 5 * MiB
S3_MAX_PART = 5 * 1024 * MiB


@dataclass(frozen=True)
class PartPlan:
    size: int  # the object's size
    part_size: int  # every part but the last
    count: int

    def length(self, number: int) -> int:
        """The size of part ``number`` (1-based), as the store must receive it."""
        if not 1 <= number <= self.count:
            raise ValueError(f"part numbers run from 1 to {self.count}")
        return self.part_size if number < self.count else self.size - self.part_size * (self.count - 1)


def plan(size: int, min_part: int) -> PartPlan:
    part = max(min_part, S3_MIN_PART, -(-size // MAX_PARTS))
    part = -(-part // MiB) * MiB  # a whole number of MiB
    if part > S3_MAX_PART:
        raise ValueError("larger than S3 allows (10,000 parts of at most 5 GiB)")
    return PartPlan(size, part, max(1, -(-size // part)))

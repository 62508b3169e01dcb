"""Deterministic benchmark input: ~1 GiB FASTA of twenty ~40 MB records and a million ~200 bp ones.

60-column lines and ~2.3 % N, as in ../shared/perf-envelope.md. The file is written once per
(seed, shape) and reused.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

# 256-entry table: random bytes -> bases, ~2.3 % N (6 of 256 byte values).
_TABLE = bytes(b"N"[0] if i < 6 else b"ACGT"[i % 4] for i in range(256))


def _bases(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n).translate(_TABLE)


def _wrap(seq: bytes, width: int = 60) -> bytes:
    return b"\n".join(seq[i : i + width] for i in range(0, len(seq), width))


def generate(path: Path, big: int = 20, big_len: int = 40_000_000, small: int = 1_000_000, seed: int = 42) -> Path:
    if path.exists():
        return path
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    with tmp.open("wb") as out:
        for i in range(big):
            out.write(b">chr%d synthetic chromosome %d\n" % (i + 1, i + 1))
            out.write(_wrap(_bases(rng, big_len)) + b"\n")
        pool = _bases(rng, 64 * 1024 * 1024)
        offset = 0
        lines: list[bytes] = []
        for i in range(small):
            length = rng.randint(150, 250)
            if offset + length > len(pool):
                offset = rng.randint(0, 1000)
            seq = pool[offset : offset + length]
            offset += length
            lines.append(b">read%d sample=bench len=%d\n%s\n" % (i, length, _wrap(seq)))
            if len(lines) >= 10_000:
                out.write(b"".join(lines))
                lines.clear()
        out.write(b"".join(lines))
    tmp.replace(path)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--big", type=int, default=20)
    parser.add_argument("--small", type=int, default=1_000_000)
    args = parser.parse_args()
    print(generate(args.path, big=args.big, small=args.small))

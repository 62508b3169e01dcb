"""A mixed, deterministic workload of uploads: the formats, compressions and sizes users send,
some of them invalid. Used by ``bench/load.py`` and by the fault suite's load test
(``tests/faults/test_load.py``), which checks every record of every result.
"""

from __future__ import annotations

import gzip
import random
from dataclasses import dataclass

_BASES = bytes(b"ACGT"[i % 4] if i >= 6 else ord("N") for i in range(256))


@dataclass(frozen=True)
class Job:
    filename: str
    data: bytes
    fmt: str  # the format the status reports once parsed ("fasta.gz", ...)
    valid: bool  # False: the upload must fail, with invalid_character at (line, column)
    error_at: tuple[int, int] | None = None


def _sequence(rng: random.Random, length: int) -> bytes:
    return rng.randbytes(length).translate(_BASES)


def fasta(rng: random.Random, size: int, prefix: str) -> bytes:
    out, total, i = [], 0, 0
    while total < size:
        length = rng.choice([0, 1, 60, 150, 250, 1000, 5000, 70_000])
        seq = _sequence(rng, length)
        width = rng.choice([60, 70, 80])
        lines = [seq[j : j + width] for j in range(0, length, width)]
        record = b">%s%d sample=%d\n" % (prefix.encode(), i, i) + b"".join(line + b"\n" for line in lines)
        out.append(record)
        total += len(record)
        i += 1
    return b"".join(out)


def fastq(rng: random.Random, size: int, prefix: str) -> bytes:
    out, total, i = [], 0, 0
    while total < size:
        length = rng.choice([36, 100, 150, 151, 250])
        qual = bytes(33 + rng.randrange(41) for _ in range(length))
        record = b"@%s%d/1\n%s\n+\n%s\n" % (prefix.encode(), i, _sequence(rng, length), qual)
        out.append(record)
        total += len(record)
        i += 1
    return b"".join(out)


def delimited(rng: random.Random, size: int, prefix: str) -> bytes:
    out, total, i = [b"name,sequence,organism\n"], 0, 0
    while total < size:
        row = b"%s%d,%s,Mus musculus\n" % (prefix.encode(), i, _sequence(rng, rng.choice([10, 200, 3000])))
        out.append(row)
        total += len(row)
        i += 1
    return b"".join(out)


def invalid(rng: random.Random, size: int, prefix: str) -> tuple[bytes, tuple[int, int]]:
    """A valid FASTA with one '!' in a sequence line: the upload fails at that line and column."""
    data = fasta(rng, size, prefix)
    lines = data.split(b"\n")
    candidates = [n for n, line in enumerate(lines) if line and not line.startswith(b">")]
    n = candidates[len(candidates) // 2] if candidates else 0
    column = len(lines[n]) // 2
    lines[n] = lines[n][:column] + b"!" + lines[n][column + 1 :]
    return b"\n".join(lines), (n + 1, column + 1)


def jobs(count: int, seed: int = 13, max_bytes: int = 1_000_000, fixed_bytes: int | None = None) -> list[Job]:
    """``count`` uploads: FASTA, FASTQ and CSV, plain and gzip, from a few KB to ``max_bytes``, one in
    ten invalid. ``fixed_bytes``: plain FASTA of that size only (the small-file latency run)."""
    rng = random.Random(seed)
    out: list[Job] = []
    for i in range(count):
        prefix = f"u{i}_"
        if fixed_bytes is not None:
            out.append(Job(f"fixed-{i}.fasta", fasta(rng, fixed_bytes, prefix)[:fixed_bytes], "fasta", True))
            continue
        size = int(rng.choice([2_000, 20_000, 200_000, max_bytes]) * rng.uniform(0.5, 1.0))
        kind = i % 10
        if kind == 9:
            data, at = invalid(rng, size, prefix)
            out.append(Job(f"bad-{i}.fasta", data, "fasta", False, at))
        elif kind in (0, 1, 2):
            out.append(Job(f"genes-{i}.fasta", fasta(rng, size, prefix), "fasta", True))
        elif kind == 3:
            out.append(Job(f"genes-{i}.fa.gz", gzip.compress(fasta(rng, size, prefix), 1), "fasta.gz", True))
        elif kind in (4, 5):
            out.append(Job(f"reads-{i}.fastq", fastq(rng, size, prefix), "fastq", True))
        elif kind == 6:
            out.append(Job(f"reads-{i}.fq.gz", gzip.compress(fastq(rng, size, prefix), 1), "fastq.gz", True))
        else:
            out.append(Job(f"table-{i}.csv", delimited(rng, size, prefix), "csv", True))
    return out

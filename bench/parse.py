"""Parsing engine against Biopython, one process per run, on the benchmark files.

For each input (the ~1 GiB FASTA of bench/generate.py, its CSV and FASTQ siblings, and gzip
versions) it prints MB/s of sequence and peak RSS for:

* ``engine``: the project's engine as the parser service runs it (detection, decompression,
  validation against the alphabet, MD5 and refget of every record);
* ``biopython``: Biopython's ``SimpleFastaParser`` / ``FastqGeneralIterator`` alone (no checks);
* ``biopython+checks``: the same plus the work the engine does per record (validation, MD5,
  refget), for a like-for-like figure.

Each reader runs ``--repeat`` times (3), interleaved with the others; the fastest run is reported
and the highest peak RSS.

Then the hostile families (inputs built to make a parser superlinear or hold memory), each at
three sizes, through the engine: MB/s of input and peak RSS. A linear engine keeps its MB/s as the
size grows; a superlinear one collapses (the old CSV quote scan fell ~4x per doubling).
Not a test: it asserts nothing. Its figures, with their targets and ratios, go to
docs/bench/parse-*.json (bench/report.py), from which ``python -m bench.table`` makes the table.
``python -m bench.parse [--small N] [--big N] [--repeat N] [--only ordinary|hostile] [--inputs ...]``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.generate import generate
from bench.report import Figure, Target, run_name, write_figures

ALLOWED = b"ACGTURYKMSWBDHVNacgturykmswbdhvn-."
CHUNK = 4 * 1024 * 1024
# The engine's speed against Biopython's reader alone, at least, by input (CSV has no Biopython).
RATIO_TARGETS = {"fasta": 1.5, "fasta.gz": 1.3, "fastq": 1.0, "fastq.gz": 1.3}
# The engine's peak RSS, whatever the record sizes.
RSS_TARGET_MIB = 150.0
# A hostile family's speed at its largest size against its smallest, at least: a linear engine
# keeps it (1x); tests/unit/test_hostile.py allows four times the time per byte at 16x the size.
HOSTILE_SPEED_TARGET = 0.25


def siblings(fasta: Path) -> dict[str, Path]:
    """CSV and FASTQ versions of the FASTA (same records) and gzip versions of all, made once."""
    out = {"fasta": fasta, "csv": fasta.with_suffix(".csv"), "fastq": fasta.with_suffix(".fastq")}
    if not out["csv"].exists() or not out["fastq"].exists():
        from Bio.SeqIO.FastaIO import SimpleFastaParser

        with fasta.open() as src, out["csv"].open("w") as csv_out, out["fastq"].open("w") as fq_out:
            csv_out.write("name,sequence\n")
            for title, seq in SimpleFastaParser(src):
                csv_out.write(f"{title.split()[0]},{seq}\n")
                if len(seq) < 1_000_000:  # reads, not chromosomes
                    fq_out.write(f"@{title}\n{seq}\n+\n{'I' * len(seq)}\n")
    for name in list(out):
        gz = out[name].with_name(out[name].name + ".gz")
        if not gz.exists():
            with out[name].open("rb") as src, gzip.open(gz, "wb", compresslevel=1) as dst:
                while block := src.read(CHUNK):
                    dst.write(block)
        out[name + ".gz"] = gz
    return out


MiB = 1024 * 1024
# family -> (writes the input at a scale of ``n`` MiB into a file; its name tells the format)
HOSTILE: dict[str, tuple[str, Callable[[int], Iterator[bytes]]]] = {
    "csv open quote, newlines (gz)": (
        "quote.csv.gz",
        lambda n: iter([gzip.compress(b'name,sequence\n"' + b"\n" * (n * MiB), 6)]),
    ),
    "csv quoted multi-line rows": (
        "multiline.csv",
        lambda n: itertools.chain(
            [b"name,sequence,note\n"],
            itertools.repeat((b"a," + b"ACGT" * 50 + b',"' + b"a note of three lines\n" * 3 + b'"\n') * 1024, n * 4),
        ),
    ),
    "csv escaped quotes in cells": (
        "quotes.csv",
        lambda n: itertools.chain(
            [b"name,sequence,note\n"], itertools.repeat(b'a,ACGT,"' + b'""' * 2000 + b'"\n', n * 260)
        ),
    ),
    "fasta 60 KB headers": ("headers.fasta", lambda n: itertools.repeat(b">" + b"h" * 60_000 + b"\nACGT\n", n * 17)),
    "fastq 60 KB titles": (
        "titles.fastq",
        lambda n: itertools.repeat(b"@" + b"t" * 60_000 + b"\nACGT\n+\nIIII\n", n * 17),
    ),
}
HOSTILE_SCALES = (16, 64, 256)


def hostile_files(folder: Path) -> dict[str, list[tuple[int, Path]]]:
    """Each hostile family written at each scale (made once)."""
    out: dict[str, list[tuple[int, Path]]] = {}
    for family, (name, make) in HOSTILE.items():
        for scale in HOSTILE_SCALES:
            path = folder / f"hostile-{scale}-{name}"
            if not path.exists():
                with path.open("wb") as f:
                    for block in make(scale):
                        f.write(block)
            out.setdefault(family, []).append((scale, path))
    return out


def run_engine_input(path: Path) -> int:
    """The engine over a file whatever its outcome; returns the bytes read (hostile inputs may fail)."""
    from shared.parsing.alphabet import get_alphabet
    from shared.parsing.engine import SequenceStream
    from shared.parsing.errors import ParseError

    stream = SequenceStream(get_alphabet("nucleotide"), path.name)
    read = 0
    try:
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                read += len(chunk)
                for _ in stream.feed(chunk):
                    pass
        for _ in stream.finish():
            pass
    except ParseError:
        pass
    return path.stat().st_size


def run_engine(path: Path) -> int:
    from shared.parsing.alphabet import get_alphabet
    from shared.parsing.engine import SequenceStream
    from shared.parsing.records import Residues, WholeRecord

    stream = SequenceStream(get_alphabet("nucleotide"), path.name)
    bases = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            for events in stream.pieces(chunk):  # as the parser service takes them: bounded lists
                for event in events:
                    if type(event) is WholeRecord or type(event) is Residues:
                        bases += len(event.data)
    for event in stream.finish():
        if type(event) is WholeRecord or type(event) is Residues:
            bases += len(event.data)
    return bases


def run_biopython(path: Path, checks: bool) -> int:
    from Bio.SeqIO.FastaIO import SimpleFastaParser
    from Bio.SeqIO.QualityIO import FastqGeneralIterator

    opener = gzip.open if path.name.endswith(".gz") else open
    fastq = ".fastq" in path.name
    bases = 0
    with opener(path, "rt") as handle:  # type: ignore[operator]
        records = FastqGeneralIterator(handle) if fastq else SimpleFastaParser(handle)
        for record in records:
            seq = record[1].encode()
            if checks:
                if seq.translate(None, ALLOWED):
                    raise ValueError("invalid character")
                norm = seq.upper()
                hashlib.md5(norm).hexdigest()
                hashlib.sha512(norm).digest()
            bases += len(seq)
    return bases


def child(kind: str, path: Path) -> None:
    started = time.perf_counter()
    if kind == "engine-input":
        bases = run_engine_input(path)
    else:
        bases = run_engine(path) if kind == "engine" else run_biopython(path, checks=kind == "biopython+checks")
    seconds = time.perf_counter() - started
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would report its parent's peak.
    status = Path("/proc/self/status").read_text()
    peak = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024
    print(json.dumps({"bases": bases, "seconds": seconds, "peak_mib": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--file", type=Path, default=Path("/tmp/genobase-bench/bench-1g.fasta"))
    parser.add_argument("--small", type=int, default=1_000_000)
    parser.add_argument("--big", type=int, default=20)
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each reader, interleaved; the fastest is reported"
    )
    parser.add_argument("--only", choices=["ordinary", "hostile"], help="run one of the two tables")
    parser.add_argument("--inputs", help="comma-separated inputs of the ordinary table (e.g. fastq,fastq.gz)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    if args.only != "hostile":
        figures = ordinary(args)
        write_figures(run_name("parse", args.file.stem, args.inputs or "all"), figures)
    if args.only != "ordinary":
        figures = hostile(args.file.parent, args.repeat)
        write_figures(run_name("parse", "hostile"), figures)


def _child_run(kind: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.parse", "--child", kind, str(path)], check=True, capture_output=True, text=True
    ).stdout
    result: dict[str, float] = json.loads(out)
    return result


def hostile(folder: Path, repeat: int) -> list[Figure]:
    figures: list[Figure] = []
    folder.mkdir(parents=True, exist_ok=True)
    print(
        f"\n{'hostile family (content MB/s)':<32} " + " ".join(f"{f'{s} MiB: MB/s, RSS':>20}" for s in HOSTILE_SCALES)
    )
    for family, sized in hostile_files(folder).items():
        cells = []
        speeds: list[float] = []
        peaks: list[float] = []
        for scale, path in sized:
            runs = [_child_run("engine-input", path) for _ in range(repeat)]
            best = min(runs, key=lambda r: r["seconds"])
            peak = max(r["peak_mib"] for r in runs)
            # MB/s of content (what the family holds at this scale, inflated): a compressed bomb's
            # few kilobytes of input would say nothing.
            speeds.append(scale * MiB / 1e6 / best["seconds"])
            peaks.append(peak)
            cells.append(f"{speeds[-1]:8.0f} {peak:6.0f} MiB")
        print(f"{family:<32} " + " ".join(f"{c:>20}" for c in cells), flush=True)
        largest, smallest = sized[-1][0], sized[0][0]
        figures.append(
            Figure(
                f"hostile {family}: engine at {largest} MiB",
                speeds[-1],
                "MB/s",
                Target(">=", HOSTILE_SPEED_TARGET, of="ratio"),
                ratio=speeds[-1] / speeds[0],
                baseline=f"at {smallest} MiB",
            )
        )
        figures.append(
            Figure(f"hostile {family}: engine peak RSS, any size", max(peaks), "MiB", Target("<=", RSS_TARGET_MIB))
        )
    return figures


def ordinary(args: argparse.Namespace) -> list[Figure]:
    figures: list[Figure] = []
    files = siblings(generate(args.file, big=args.big, small=args.small))
    # The figures name the file, so that a run on a small file does not stand for the 1 GiB one.
    source = f"{args.big} long + {args.small:,} short records"
    print(f"{'input':<12} {'reader':<18} {'MB/s':>8} {'peak RSS':>10} {'engine ratio':>13}")
    wanted = set(args.inputs.split(",")) if args.inputs else set(files)
    for name, path in files.items():
        if name not in wanted:
            continue
        kinds = ["engine", "biopython", "biopython+checks"] if not name.startswith("csv") else ["engine"]
        runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
        # Interleaved, so that a noisy minute on a shared machine hits every reader alike.
        for _ in range(args.repeat):
            for kind in kinds:
                runs[kind].append(_child_run(kind, path))
        speed: dict[str, float] = {}
        for kind in kinds:
            best = min(runs[kind], key=lambda r: r["seconds"])
            peak = max(r["peak_mib"] for r in runs[kind])
            speed[kind] = best["bases"] / 1e6 / best["seconds"]
            ratio = f"{speed['engine'] / speed[kind]:.2f}x" if kind != "engine" else ""
            print(f"{name:<12} {kind:<18} {speed[kind]:8.0f} {peak:8.0f} MiB {ratio:>13}", flush=True)
            if kind == "engine":
                engine_peak = peak
        label = f"parse {name.upper().replace('.GZ', '.gz')} ({source})"
        if "biopython" in speed:
            target = Target(">=", RATIO_TARGETS[name], of="ratio") if name in RATIO_TARGETS else None
            figures.append(
                Figure(
                    f"{label}: engine",
                    speed["engine"],
                    "MB/s",
                    target,
                    ratio=speed["engine"] / speed["biopython"],
                    baseline="Biopython",
                )
            )
            figures.append(
                Figure(
                    f"{label}: engine, like for like",
                    speed["engine"],
                    "MB/s",
                    ratio=speed["engine"] / speed["biopython+checks"],
                    baseline="Biopython + checks",
                )
            )
        else:
            figures.append(Figure(f"{label}: engine", speed["engine"], "MB/s"))
        figures.append(Figure(f"{label}: engine peak RSS", engine_peak, "MiB", Target("<=", RSS_TARGET_MIB)))
    return figures


if __name__ == "__main__":
    main()

"""The supported formats and the file-name suffixes that name them: one list for everyone.

The engine detects a format from the content and uses a suffix only to break a tie; the intake's
request model offers the same names for a caller who wants to skip detection, and the CLI and the
upload page the same choices. Each of them reads this module, so a new format is added here once
(and its parser class in ``engine.PARSERS``).
"""

from __future__ import annotations

from enum import StrEnum


class Format(StrEnum):
    FASTA = "fasta"
    FASTQ = "fastq"
    CSV = "csv"
    TSV = "tsv"


FORMAT_NAMES: tuple[str, ...] = tuple(fmt.value for fmt in Format)

SUFFIXES: dict[str, Format] = {
    ".fasta": Format.FASTA, ".fa": Format.FASTA, ".fna": Format.FASTA, ".faa": Format.FASTA,
    ".ffn": Format.FASTA, ".fas": Format.FASTA,
    ".fastq": Format.FASTQ, ".fq": Format.FASTQ,
    ".csv": Format.CSV, ".tsv": Format.TSV, ".tab": Format.TSV,
}  # fmt: skip

# Suffixes of compressed forms, stripped before the format's suffix is read.
COMPRESSED_SUFFIXES = (".gz", ".bgz")


def format_of_name(filename: str | None) -> Format | None:
    """The format a file name suggests (``reads.fq.gz`` -> FASTQ), or None."""
    if not filename:
        return None
    name = filename.lower()
    for compressed in COMPRESSED_SUFFIXES:
        name = name.removesuffix(compressed)
    dot = name.rfind(".")
    return SUFFIXES.get(name[dot:]) if dot >= 0 else None

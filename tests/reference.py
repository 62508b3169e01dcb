"""Independent reading of test inputs, to compare the pipeline's output against.

Deliberately not the project's engine: Biopython for FASTA and the standard ``csv`` module for
CSV, with the checksums computed directly from the GA4GH refget definition.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
from typing import Any

from Bio.SeqIO.FastaIO import SimpleFastaParser
from Bio.SeqIO.QualityIO import FastqGeneralIterator


def checksums(sequence: str) -> tuple[str, str]:
    norm = "".join(c for c in sequence.upper() if c.isalpha()).encode()
    md5 = hashlib.md5(norm).hexdigest()
    refget = "SQ." + base64.urlsafe_b64encode(hashlib.sha512(norm).digest()[:24]).decode()
    return md5, refget


def _record(ordinal: int, line: int, name: str, sequence: str) -> dict[str, Any]:
    md5, refget = checksums(sequence)
    words = name.split(None, 1)
    return {
        "ordinal": ordinal,
        "line_number": line,
        "gene_name": name,
        "id": words[0] if words else "",
        "description": words[1].strip() if len(words) > 1 else "",
        "length": len(sequence),
        "md5": md5,
        "refget": refget,
        "sequence": sequence,
    }


def fasta_records(data: bytes) -> list[dict[str, Any]]:
    text = data.decode()
    header_lines = [i + 1 for i, line in enumerate(text.splitlines()) if line.startswith(">")]
    records = []
    for ordinal, (title, seq) in enumerate(SimpleFastaParser(io.StringIO(text))):
        sequence = "".join(seq.split())
        records.append(_record(ordinal, header_lines[ordinal], title.rstrip("\r"), sequence))
    return records


def fastq_records(data: bytes) -> list[dict[str, Any]]:
    text = data.decode()
    records = []
    line = 1
    for ordinal, (title, seq, qual) in enumerate(FastqGeneralIterator(io.StringIO(text))):
        record = _record(ordinal, line, title, seq)
        record["quality"] = qual
        records.append(record)
        line += 4  # the test inputs are four-line records
    return records


def csv_records(data: bytes, delimiter: str = ",") -> list[dict[str, Any]]:
    text = data.decode()
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader)
    records = []
    for row in reader:
        if not row:
            continue
        start = reader.line_num - row[1].count("\n")  # a quoted field may span lines
        record = _record(len(records), start, row[0].strip(), "".join(row[1].split()))
        if len(header) > 2:
            record["attributes"] = {h.strip(): v.strip() for h, v in zip(header[2:], row[2:], strict=True)}
        records.append(record)
    return records

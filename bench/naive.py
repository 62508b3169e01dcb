"""The naive baseline: the same job as the pipeline, as one sequential loop in one process.

What a competent engineer writes first, honestly: ranged 8 MiB GETs of the object → a chunked
FASTA/FASTQ parser (``bytes.find``/``split``/``join``, upper-casing and an alphabet check, each
record's MD5 and refget digest with hashlib, as the pipeline computes them) → one ``COPY`` into
one table (a record per row, its sequence in one ``text`` column) → read back in order through a
server-side cursor → ``orjson`` per record → a multipart PUT of 8 MiB parts into the results
bucket. Memory is bounded by the largest record (a chromosome is held whole, a few times over),
never by the file. Each step runs after the one before it finishes.

Two variants of the table, as in ``../shared/perf-envelope.md``: Postgres defaults (the sequence
column TOAST-compressed with pglz) and ``STORAGE EXTERNAL`` (stored uncompressed).
The tables live in a schema of their own, dropped afterwards.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from base64 import urlsafe_b64encode
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg

from shared.s3.store import ObjectStore

RANGE_BYTES = 8 * 1024 * 1024
PART_BYTES = 8 * 1024 * 1024
_NUCLEOTIDES = b"ACGTURYKMSWBDHVN-.*"
_UPPER = bytes.maketrans(b"acgturykmswbdhvn", b"ACGTURYKMSWBDHVN")


@dataclass
class NaiveRecord:
    line_number: int
    header: str
    sequence: bytes
    quality: bytes | None = None


@dataclass
class NaiveTimes:
    """Seconds per step (reads and parsing interleave, so they are timed inside the loop)."""

    steps: dict[str, float] = field(default_factory=dict)
    records: int = 0
    result_bytes: int = 0
    # CPU seconds (all, in the kernel) of the chain's Postgres backend, read just before its
    # connection closes: an exited backend is gone from /proc, so a reading taken after the run
    # would leave the server's share out. None where the server is not on this machine.
    backend_cpu: tuple[float, float] | None = None

    def add(self, step: str, seconds: float) -> None:
        self.steps[step] = self.steps.get(step, 0.0) + seconds

    @property
    def total(self) -> float:
        return sum(self.steps.values())


def process_cpu(pid: int) -> tuple[float, float] | None:
    """A process's CPU seconds so far (user + system, system), or None if it is not on this machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    user, system = int(fields[11]) / tick, int(fields[12]) / tick
    return user + system, system


def ranged_reads(store: ObjectStore, bucket: str, key: str, size: int, times: NaiveTimes) -> Iterator[bytes]:
    for start in range(0, size, RANGE_BYTES):
        t = time.monotonic()
        end = min(start + RANGE_BYTES, size) - 1
        body = store.client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")["Body"].read()
        times.add("GET", time.monotonic() - t)
        yield body


def _lines(chunks: Iterator[bytes]) -> Iterator[list[bytes]]:
    """Whole lines, a chunk's worth at a time (the unfinished last line carried over)."""
    carry = b""
    for chunk in chunks:
        data = carry + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            carry = data
            continue
        carry = data[cut + 1 :]
        yield data[:cut].split(b"\n")
    if carry:
        yield [carry]


def _checked(sequence: bytes, line: int) -> bytes:
    sequence = sequence.translate(_UPPER)
    if sequence.translate(None, _NUCLEOTIDES):
        raise ValueError(f"invalid residue in the record at line {line}")
    return sequence


def parse_fasta(chunks: Iterator[bytes], times: NaiveTimes) -> Iterator[NaiveRecord]:
    """Records split at each newline followed by '>' (``bytes.find``), lines joined by ``replace``:
    the fast pure-Python way. A record's text is held whole, never more than one record."""
    tail: list[bytes] = []  # the text of the record not finished yet, from its '>'
    line = 1

    def record(text: bytes) -> NaiveRecord:
        nonlocal line
        if not text.startswith(b">"):
            if text.strip():
                raise ValueError(f"line {line}: sequence before the first header")
            line += text.count(b"\n")
            return NaiveRecord(0, "", b"")
        end = text.find(b"\n")
        end = len(text) if end < 0 else end
        header = text[1:end].rstrip(b"\r").decode()
        sequence = _checked(text[end + 1 :].replace(b"\n", b"").replace(b"\r", b""), line)
        found = NaiveRecord(line, header, sequence)
        line += text.count(b"\n")
        return found

    for chunk in chunks:
        t = time.monotonic()
        out: list[NaiveRecord] = []
        start = 0
        if chunk.startswith(b">") and tail and tail[-1].endswith(b"\n"):
            out.append(record(b"".join(tail)))
            tail = []
        while True:
            at = chunk.find(b"\n>", start)
            if at < 0:
                tail.append(chunk[start:])
                break
            tail.append(chunk[start : at + 1])
            out.append(record(b"".join(tail)))
            tail = []
            start = at + 1
        times.add("parse", time.monotonic() - t)
        yield from (r for r in out if r.line_number)
    if tail:
        last = record(b"".join(tail))
        if last.line_number:
            yield last


def parse_fastq(chunks: Iterator[bytes], times: NaiveTimes) -> Iterator[NaiveRecord]:
    pending: list[bytes] = []
    line_no = 0
    for lines in _lines(chunks):
        t = time.monotonic()
        pending.extend(lines)
        whole = len(pending) - len(pending) % 4
        out: list[NaiveRecord] = []
        for i in range(0, whole, 4):
            head, seq, plus, qual = pending[i : i + 4]
            if not head.startswith(b"@") or not plus.startswith(b"+") or len(seq) != len(qual):
                raise ValueError(f"line {line_no + i + 1}: not a FASTQ record")
            out.append(NaiveRecord(line_no + i + 1, head[1:].decode(), _checked(seq, line_no + i + 1), qual))
        line_no += whole
        del pending[:whole]
        times.add("parse", time.monotonic() - t)
        yield from out
    if pending:
        raise ValueError(f"line {line_no + 1}: truncated FASTQ record")


def _digests(sequence: bytes) -> tuple[str, str]:
    md5 = hashlib.md5(sequence).hexdigest()
    refget = "SQ." + urlsafe_b64encode(hashlib.sha512(sequence).digest()[:24]).decode()
    return md5, refget


def create_table(conn: psycopg.Connection, schema: str, compressed: bool) -> None:
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(
        f"CREATE TABLE {schema}.records (upload_id uuid, ordinal bigint, line_number bigint, header text, "
        "md5 text, refget text, length bigint, sequence text, quality text, PRIMARY KEY (upload_id, ordinal))"
    )
    if not compressed:
        conn.execute(f"ALTER TABLE {schema}.records ALTER COLUMN sequence SET STORAGE EXTERNAL")
        conn.execute(f"ALTER TABLE {schema}.records ALTER COLUMN quality SET STORAGE EXTERNAL")
    conn.commit()


def run(
    store: ObjectStore,
    dsn: str,
    bucket: str,
    key: str,
    size: int,
    results_bucket: str,
    fastq: bool,
    compressed: bool,
) -> NaiveTimes:
    """The whole chain for one object; returns each step's seconds. Leaves its result object and
    drops its schema."""
    times = NaiveTimes()
    upload_id = uuid.uuid4()
    schema = f"naive_{upload_id.hex[:12]}"
    with psycopg.connect(dsn) as conn:
        backend = conn.info.backend_pid
        create_table(conn, schema, compressed)
        try:
            _load(conn, store, schema, upload_id, bucket, key, size, fastq, times)
            _write_result(conn, store, schema, upload_id, results_bucket, f"naive/{upload_id}.json", times)
            times.backend_cpu = process_cpu(backend)
        finally:
            conn.rollback()
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
            conn.commit()
    store.client.delete_object(Bucket=results_bucket, Key=f"naive/{upload_id}.json")
    return times


def _load(
    conn: psycopg.Connection,
    store: ObjectStore,
    schema: str,
    upload_id: uuid.UUID,
    bucket: str,
    key: str,
    size: int,
    fastq: bool,
    times: NaiveTimes,
) -> None:
    parse = parse_fastq if fastq else parse_fasta
    records = parse(ranged_reads(store, bucket, key, size, times), times)
    with conn.cursor() as cur, cur.copy(f"COPY {schema}.records FROM STDIN") as copy:
        for ordinal, record in enumerate(records):
            t = time.monotonic()
            md5, refget = _digests(record.sequence)
            times.add("parse", time.monotonic() - t)
            t = time.monotonic()
            copy.write_row(
                (
                    upload_id,
                    ordinal,
                    record.line_number,
                    record.header,
                    md5,
                    refget,
                    len(record.sequence),
                    record.sequence.decode(),
                    None if record.quality is None else record.quality.decode(),
                )
            )
            times.add("COPY", time.monotonic() - t)
            times.records += 1
    t = time.monotonic()
    conn.commit()
    times.add("COPY", time.monotonic() - t)


def _bounded_fetches(cur: psycopg.Cursor[Any], times: NaiveTimes, started: float) -> Iterator[tuple[Any, ...]]:
    """The server-side cursor's rows, fetched about ``PART_BYTES`` at a time: one row at first, then
    as many as the last fetch's row size allows (a chromosome alone, a thousand reads at once)."""
    size, t = 1, started
    while True:
        rows = cur.fetchmany(size)
        times.add("read back", time.monotonic() - t)
        if not rows:
            return
        fetched = sum(len(row[5]) for row in rows) or 1
        size = max(1, min(1000, PART_BYTES * len(rows) // fetched))
        yield from rows
        t = time.monotonic()


def _write_result(
    conn: psycopg.Connection,
    store: ObjectStore,
    schema: str,
    upload_id: uuid.UUID,
    results_bucket: str,
    key: str,
    times: NaiveTimes,
) -> None:
    multipart = store.client.create_multipart_upload(Bucket=results_bucket, Key=key)["UploadId"]
    parts: list[dict[str, object]] = []
    buffer: list[bytes] = [orjson.dumps({"upload_id": str(upload_id)})[:-1] + b',"records":[']
    buffered = len(buffer[0])

    def put(data: bytes) -> None:
        t = time.monotonic()
        number = len(parts) + 1
        etag = store.client.upload_part(
            Bucket=results_bucket, Key=key, UploadId=multipart, PartNumber=number, Body=data
        )["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
        times.result_bytes += len(data)
        times.add("PUT", time.monotonic() - t)

    with conn.cursor(name="result") as cur:
        t = time.monotonic()
        cur.execute(
            f"SELECT line_number, header, md5, refget, length, sequence, quality FROM {schema}.records "
            "WHERE upload_id = %s ORDER BY ordinal",
            (upload_id,),
        )
        first = True
        for row in _bounded_fetches(cur, times, t):
            t = time.monotonic()
            line_number, header, md5, refget, length, sequence, quality = row
            document = {
                "line_number": line_number,
                "gene_name": header,
                "md5": md5,
                "refget": refget,
                "length": length,
                "sequence": sequence,
            }
            if quality is not None:
                document["quality"] = quality
            piece = (b"\n" if first else b",\n") + orjson.dumps(document)
            first = False
            buffer.append(piece)
            buffered += len(piece)
            times.add("JSON", time.monotonic() - t)
            if buffered >= PART_BYTES:
                data = b"".join(buffer)
                buffer, buffered = [], 0
                put(data)
    buffer.append(b"\n]}\n")
    put(b"".join(buffer))
    t = time.monotonic()
    store.client.complete_multipart_upload(
        Bucket=results_bucket, Key=key, UploadId=multipart, MultipartUpload={"Parts": parts}
    )
    times.add("PUT", time.monotonic() - t)

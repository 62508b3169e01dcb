"""Bad input ends in ``failed`` with a specific code (and position where one applies); no consumer dies.

The corpus is generated here, not committed.
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.runtime.settings import Settings
from shared.s3.store import ObjectStore
from tests.conftest import Pipeline
from tests.faults.conftest import FaultLedger

pytestmark = pytest.mark.e2e

FASTA = b">a\nACGT\n>b\nGGCC\n" * 50
# Binary garbage, fixed so that it never starts like a format by chance ('>' or ';' is FASTA, '@'
# FASTQ, 1f 8b gzip: each would be a different, equally right, answer).
GARBAGE = b"\x00\x9c" + random.Random(4096).randbytes(4094).translate(bytes.maketrans(b">@;", b"???"))

CORPUS: list[tuple[str, bytes, str, tuple[int, int] | None]] = [
    ("empty.fasta", b"", "empty_file", (1, 1)),
    ("garbage.bin", GARBAGE, "unsupported_format", (1, 1)),
    ("bad-header.fasta", b">ok\nACGT\n>caf\xe9\nACGT\n", "invalid_header_encoding", (3, 5)),
    ("notes.txt", b"just some notes, nothing more\n", "unsupported_format", (1, 1)),
    ("truncated.fasta.gz", gzip.compress(FASTA)[:-20], "truncated_compression", None),
    ("corrupt.fasta", gzip.compress(FASTA)[:30] + b"\x00" * 64, "corrupt_compression", None),
    ("missing-column.csv", b"name,value\na,1\n", "missing_column", (1, 1)),
    ("short-row.csv", b"name,sequence\na,ACGT\nb\n", "wrong_field_count", (3, 1)),
    ("truncated.fastq", b"@r\nACGT\n+\nII", "truncated_record", None),
    ("before-header.fasta", b"ACGT\n>a\nAC\n", "missing_header", (1, 1)),
]


@pytest.mark.parametrize(("filename", "data", "code", "where"), CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_input_fails_clearly(
    pipeline: Pipeline, ledger: FaultLedger, filename: str, data: bytes, code: str, where: tuple[int, int] | None
) -> None:
    before = pipeline.pids()
    ticket = ledger.upload(pipeline, filename, data, "failed")
    ledger.inject("bad input")
    status: dict[str, Any] = pipeline.wait_for(ticket["id"])
    assert status["state"] == "failed", status
    assert status["error"]["code"] == code, status["error"]
    assert status["error"]["message"]
    if where is not None:
        assert (status["error"]["line"], status["error"]["column"]) == where
    assert pipeline.pids() == before  # nobody crashed
    ledger.survive("bad input")


def test_gzip_bomb_is_stopped(pipeline: Pipeline, ledger: FaultLedger) -> None:
    # 256 MiB of one letter compresses ~1000:1; the ratio limit stops it long before it is inflated.
    bomb = gzip.compress(b">a\n" + b"A" * (256 * 1024 * 1024), compresslevel=9)
    ticket = ledger.upload(pipeline, "bomb.fasta.gz", bomb, "failed")
    ledger.inject("bad input")
    status = pipeline.wait_for(ticket["id"])
    assert status["state"] == "failed"
    assert status["error"]["code"] == "decompression_limit"
    ledger.survive("bad input")


def test_one_line_of_two_gigabytes_fails_at_its_start(
    pipeline: Pipeline, settings: Settings, ledger: FaultLedger
) -> None:
    """A 2 GiB file without a newline: the parser buffers a header only up to its limit."""
    size = 2 * 1024**3
    block = b"A" * (8 * 1024 * 1024)

    def body() -> Iterator[bytes]:
        yield b">"
        left = size - 1
        while left:
            yield block[: min(left, len(block))]
            left -= min(left, len(block))

    before = pipeline.pids()
    response = pipeline.http.post("/uploads", json={"filename": "one-line.fasta", "size": size})
    ticket = response.raise_for_status().json()
    ledger.attempt(ticket["id"], "failed")
    ledger.inject("bad input")
    put = httpx.put(
        ticket["upload_url"],
        content=body(),
        headers={**ticket["upload_headers"], "Content-Length": str(size)},
        timeout=600,
    )
    assert put.status_code == 200, put.text
    try:
        status = pipeline.wait_for(ticket["id"], timeout=300)
        assert status["state"] == "failed", status
        assert status["error"]["code"] == "header_too_long"
        assert status["error"]["line"] == 1
        assert pipeline.pids() == before
    finally:
        ObjectStore(settings).client.delete_object(Bucket=ticket["bucket"], Key=ticket["key"])  # 2 GiB of RAM
    ledger.survive("bad input")


@pytest.mark.parametrize("filename", ["my reads ü.fa", "../../etc/passwd.fa", "a b/c d.fasta"])
def test_awkward_file_names_are_processed(pipeline: Pipeline, ledger: FaultLedger, filename: str) -> None:
    ticket = ledger.upload(pipeline, filename, FASTA, "done", 100)
    # <owner>/<upload id>/<name>: the name cannot climb out of its place
    assert "/../" not in ticket["key"] and ticket["key"].count("/") == 2
    status = pipeline.wait_for(ticket["id"])
    assert status["state"] == "done", status
    assert status["result"]["records"] == 100

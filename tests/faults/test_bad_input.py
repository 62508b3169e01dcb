"""Bad input ends in ``failed`` with a specific code (and position where one applies); no consumer dies.

The corpus is generated here, not committed.
"""

from __future__ import annotations

import gzip
import os
from typing import Any

import pytest

from genobase import stack
from tests.conftest import Pipeline
from tests.e2e.test_pipeline import upload_via_intake

pytestmark = pytest.mark.e2e

FASTA = b">a\nACGT\n>b\nGGCC\n" * 50

CORPUS: list[tuple[str, bytes, str, tuple[int, int] | None]] = [
    ("empty.fasta", b"", "empty_file", (1, 1)),
    ("garbage.bin", os.urandom(4096).replace(b">", b"?").replace(b"@", b"?"), "unsupported_format", (1, 1)),
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
    pipeline: Pipeline, filename: str, data: bytes, code: str, where: tuple[int, int] | None
) -> None:
    before = {name: pipeline.processes.pid(name) for name in stack.SERVICES}
    ticket = upload_via_intake(pipeline, filename, data)
    status: dict[str, Any] = pipeline.wait_for(ticket["id"])
    assert status["state"] == "failed", status
    assert status["error"]["code"] == code, status["error"]
    assert status["error"]["message"]
    if where is not None:
        assert (status["error"]["line"], status["error"]["column"]) == where
    assert {name: pipeline.processes.pid(name) for name in stack.SERVICES} == before  # nobody crashed


def test_gzip_bomb_is_stopped(pipeline: Pipeline) -> None:
    # 256 MiB of one letter compresses ~1000:1; the ratio limit stops it long before it is inflated.
    bomb = gzip.compress(b">a\n" + b"A" * (256 * 1024 * 1024), compresslevel=9)
    ticket = upload_via_intake(pipeline, "bomb.fasta.gz", bomb)
    status = pipeline.wait_for(ticket["id"])
    assert status["state"] == "failed"
    assert status["error"]["code"] == "decompression_limit"


@pytest.mark.parametrize("filename", ["my reads ü.fa", "../../etc/passwd.fa", "a b/c d.fasta"])
def test_awkward_file_names_are_processed(pipeline: Pipeline, filename: str) -> None:
    ticket = upload_via_intake(pipeline, filename, FASTA)
    assert "/../" not in ticket["key"] and ticket["key"].count("/") == 1
    status = pipeline.wait_for(ticket["id"])
    assert status["state"] == "done", status
    assert status["result"]["records"] == 100

"""Inputs built to hurt the pipeline, through the whole running stack (issue: hostile input).

Each one ends ``done`` with exactly its records or ``failed`` with its own code, within seconds of
the parse starting, with no consumer restarted; and no service's peak RSS (VmHWM, reset before the
first case) passes 200 MiB while they run. The cases run in file order; the last test reads the peaks.
"""

from __future__ import annotations

import gzip
import hashlib
import random
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from genobase import stack
from tests.conftest import Pipeline
from tests.faults.conftest import FaultLedger
from tests.helpers import assert_same_records, download
from tests.reference import fasta_records

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
RSS_LIMIT_MIB = 200
FAULT = "hostile input"


def _vmhwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


@pytest.fixture(scope="module")
def watched(pipeline: Pipeline) -> dict[str, int]:
    """The services' pids, their peak RSS reset now (``clear_refs`` 5 resets VmHWM)."""
    pids = pipeline.pids()
    for pid in pids.values():
        assert pid is not None
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    return {name: pid for name, pid in pids.items() if pid is not None}


def _wait(pipeline: Pipeline, ticket: dict[str, Any]) -> dict[str, Any]:
    status = pipeline.wait_for(ticket["id"])
    times = {k: datetime.fromisoformat(v) for k, v in status["times"].items() if v}
    if "parsing_started_at" in times and "finished_at" in times:
        took = (times["finished_at"] - times["parsing_started_at"]).total_seconds()
        assert took < 60, f"{took:.0f} s from the first read to the end: {status}"
    return status


def _fails(
    pipeline: Pipeline, ledger: FaultLedger, watched: dict[str, int], name: str, data: bytes, code: str
) -> dict[str, Any]:
    ticket = ledger.upload(pipeline, name, data, "failed")
    ledger.inject(FAULT)
    status = _wait(pipeline, ticket)
    assert status["state"] == "failed", status
    assert status["error"]["code"] == code, status["error"]
    assert len(status["error"]["message"].encode()) <= 1024
    assert pipeline.pids() == watched  # no consumer died or was restarted
    ledger.survive(FAULT)
    return status


def test_quote_bomb_fails_at_once(pipeline: Pipeline, ledger: FaultLedger, watched: dict[str, int]) -> None:
    """A 4 KiB gzip: one quote, then 4 MiB of newlines (the quadratic scan made this hours)."""
    bomb = gzip.compress(b'name,sequence\n"' + b"\n" * (4 * MiB), 9)
    assert len(bomb) < 8 * 1024
    status = _fails(pipeline, ledger, watched, "quote-bomb.csv.gz", bomb, "unterminated_quote")
    assert status["error"]["line"] == 2


def test_large_headers_are_stored_in_bounded_batches(
    pipeline: Pipeline, ledger: FaultLedger, watched: dict[str, int]
) -> None:
    """60 KB headers: ~17 MiB that used to travel as one 34 MiB message."""
    data = b"".join(b">r%d " % i + b"h" * 60_000 + b"\nACGTACGT\n" for i in range(280))
    expected = fasta_records(data)
    ticket = ledger.upload(pipeline, "large-headers.fasta", data, "done", len(expected))
    ledger.inject(FAULT)
    status = _wait(pipeline, ticket)
    assert status["state"] == "done", status
    assert_same_records(download(status), expected)
    assert pipeline.pids() == watched
    ledger.survive(FAULT)


def test_fastq_titles_have_their_own_limit(pipeline: Pipeline, ledger: FaultLedger, watched: dict[str, int]) -> None:
    data = b"@" + b"t" * (2 * MiB) + b"\nACGT\n+\nIIII\n"
    status = _fails(pipeline, ledger, watched, "long-title.fastq", data, "title_too_long")
    assert status["error"]["line"] == 1


def test_a_huge_csv_header_gives_a_short_error(
    pipeline: Pipeline, ledger: FaultLedger, watched: dict[str, int]
) -> None:
    header = b",".join(b"column%d" % i for i in range(200_000))  # 1.6 MB naming neither column
    status = _fails(pipeline, ledger, watched, "huge-header.csv", header + b"\na,b\n", "missing_column")
    assert "column0" in status["error"]["message"]


@pytest.mark.parametrize(
    ("name", "data", "where"),
    [
        ("nul-header.fasta", b">ok\nACGT\n>bad\x00name\nACGT\n", (3, 5)),
        ("nul-attribute.csv", b"name,sequence,note\na,ACGT,x\x00y\n", (2, 9)),
        ("escape-title.fastq", b"@r\x1b[31m\nACGT\n+\nIIII\n", (1, 3)),
    ],
)
def test_control_characters_are_refused_where_they_are(
    pipeline: Pipeline, ledger: FaultLedger, watched: dict[str, int], name: str, data: bytes, where: tuple[int, int]
) -> None:
    """A NUL used to pass the parser and then fail five COPYs in a row with the raw Postgres error."""
    status = _fails(pipeline, ledger, watched, name, data, "invalid_character")
    assert (status["error"]["line"], status["error"]["column"]) == where


def test_high_ratio_gzip_streams_in_bounded_pieces(
    pipeline: Pipeline, ledger: FaultLedger, watched: dict[str, int]
) -> None:
    """~400 KiB of gzip inflating to ~100 MiB (a ratio under the limit): one record, exactly."""
    rng = random.Random(7)
    blocks = [bytes(rng.choice(b"ACGT") for _ in range(2048)) + b"A" * (340 * 1024) for _ in range(300)]
    sequence = b"".join(blocks)
    data = gzip.compress(b">compressed\n" + sequence + b"\n", 9)
    assert len(data) < 2 * MiB and len(sequence) > 100 * MiB
    ticket = ledger.upload(pipeline, "high-ratio.fasta.gz", data, "done", 1)
    ledger.inject(FAULT)
    status = _wait(pipeline, ticket)
    assert status["state"] == "done", status
    (record,) = download(status)["records"]
    assert record["length"] == len(sequence)
    assert record["md5"] == hashlib.md5(sequence).hexdigest()
    assert pipeline.pids() == watched
    ledger.survive(FAULT)


def test_intake_refuses_what_cannot_be_stored(pipeline: Pipeline) -> None:
    for body in (
        {"filename": "a\x00b.fasta"},
        {"filename": "x.fasta", "size": 2**63},
        {"filename": "\U0001f600" * 200},
    ):
        assert pipeline.http.post("/uploads", json=body).status_code == 422, body
    assert pipeline.http.post("/uploads", content=b"x" * (1024 * 1024)).status_code == 413


def test_services_stayed_under_200_mib(ledger: FaultLedger, watched: dict[str, int]) -> None:
    peaks = {name: _vmhwm_mib(pid) for name, pid in watched.items()}
    ledger.peak_rss_mib = peaks  # printed with the fault-run figures
    assert set(peaks) == set(stack.SERVICES)
    assert all(v < RSS_LIMIT_MIB for v in peaks.values()), peaks

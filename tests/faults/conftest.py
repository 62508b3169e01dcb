"""The fault run's ledger: every upload the fault suite makes and every fault it injects.

At the end of the run each upload is looked up in Postgres and counted as completed, failed with a
reason, or lost (never finished, or failed without one); its stored rows are compared with the
records of its input, which gives the records lost and duplicated. The figures are printed after
the test summary (and are the ones quoted in docs/testing.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from shared.runtime.settings import Settings
from tests.conftest import Pipeline
from tests.helpers import upload_via_intake


@dataclass
class Attempt:
    upload_id: str
    expect: str  # "done" or "failed"
    records: int | None  # records in the input, for an upload that must complete


@dataclass
class FaultLedger:
    attempts: list[Attempt] = field(default_factory=list)
    injected: Counter[str] = field(default_factory=Counter)
    survived: Counter[str] = field(default_factory=Counter)
    figures: dict[str, int] = field(default_factory=dict)
    peak_rss_mib: dict[str, float] = field(default_factory=dict)  # during the hostile cases

    def upload(self, pipeline: Pipeline, filename: str, data: bytes, expect: str, records: int | None = None) -> Any:
        ticket = upload_via_intake(pipeline, filename, data)
        self.attempt(ticket["id"], expect, records)
        return ticket

    def attempt(self, upload_id: str, expect: str, records: int | None = None) -> None:
        self.attempts.append(Attempt(str(upload_id), expect, records))

    def inject(self, kind: str) -> None:
        self.injected[kind] += 1

    def survive(self, kind: str) -> None:
        """Called once the upload the fault hit was checked record by record."""
        self.survived[kind] += 1

    def tally(self, settings: Settings) -> None:
        figures = Counter(attempted=len(self.attempts))
        with psycopg.connect(settings.pg_dsn.get_secret_value()) as conn:
            for attempt in self.attempts:
                row = conn.execute(
                    "SELECT u.state, u.error_code, (SELECT count(*) FROM sequence_records r WHERE r.upload_id = u.id) "
                    "FROM uploads u WHERE u.id = %s",
                    (attempt.upload_id,),
                ).fetchone()
                state, code, rows = row if row else ("missing", None, 0)
                if state == "done":
                    figures["completed"] += 1
                elif state == "failed" and code:
                    figures["failed with a reason"] += 1
                else:
                    figures["lost"] += 1
                if state != attempt.expect:
                    figures["unexpected outcome"] += 1
                if state == "done" and attempt.records is not None:
                    figures["records duplicated"] += max(0, rows - attempt.records)
                    figures["records lost"] += max(0, attempt.records - rows)
        for key in ("completed", "failed with a reason", "lost", "unexpected outcome", "records duplicated"):
            figures.setdefault(key, 0)
        figures.setdefault("records lost", 0)
        self.figures = dict(figures)


LEDGER = FaultLedger()


@pytest.fixture(scope="session")
def ledger(settings: Settings) -> Iterator[FaultLedger]:
    yield LEDGER
    LEDGER.tally(settings)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not LEDGER.figures:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fault-injection figures")
    for key, value in LEDGER.figures.items():
        write(f"{key:<24} {value:>6}")
    write("")
    write(f"{'fault':<50} {'injected':>8} {'survived':>8}")
    for kind in sorted(LEDGER.injected):
        write(f"{kind:<50} {LEDGER.injected[kind]:>8} {LEDGER.survived[kind]:>8}")
    if LEDGER.peak_rss_mib:
        write("")
        write(
            "peak RSS during the hostile cases (MiB): "
            + ", ".join(f"{n} {v:.0f}" for n, v in LEDGER.peak_rss_mib.items())
        )

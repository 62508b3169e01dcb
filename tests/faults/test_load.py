"""Load with replicas: 60 mixed uploads from 6 clients, two processes of every consuming stage, and
a replica of the parser and of the assembler SIGKILLed in the middle of it.

Every result is checked record by record against its input (nothing lost, doubled or out of
order), every invalid upload fails at its line and column, and each replica did part of the work
(the queues were really shared).
"""

from __future__ import annotations

import functools
import gzip
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from bench.load import Outcome, run
from bench.workload import Job, jobs
from genobase import stack
from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings
from tests.conftest import Pipeline
from tests.faults.conftest import FaultLedger
from tests.helpers import assert_same_records, download
from tests.reference import csv_records, fasta_records, fastq_records

pytestmark = pytest.mark.e2e
REPLICATED = ("parser", "persister", "assembler", "watchdog")


def expected_records(job: Job) -> list[dict[str, Any]]:
    data = gzip.decompress(job.data) if job.fmt.endswith(".gz") else job.data
    if job.fmt.startswith("fastq"):
        return fastq_records(data)
    if job.fmt.startswith("csv"):
        return csv_records(data)
    return fasta_records(data)


def _consuming(pipeline: Pipeline, name: str, since: int) -> bool:
    log = pipeline.processes.log_file(name)
    return log.exists() and b'"event": "consuming"' in log.read_bytes()[since:]


@pytest.fixture
def replicas(pipeline: Pipeline) -> Iterator[list[str]]:
    """A second process of each consuming stage, consuming before the test starts; stopped after."""
    names = [stack.instance_names(service, 2)[1] for service in REPLICATED]
    sizes = {}
    for name in names:
        log = pipeline.processes.log_file(name)
        sizes[name] = log.stat().st_size if log.exists() else 0
        pipeline.processes.start(name, {"GENOBASE_METRICS_PORT": str(stack.free_port())})
    try:
        started = time.monotonic()
        for name in names:
            if name.startswith("watchdog"):
                continue  # no queue: it sweeps
            poll_until(
                functools.partial(_consuming, pipeline, name, sizes[name]),
                timeout=max(60 - (time.monotonic() - started), 0.2),  # 60 s for them all
                interval=0.2,
                what=f"{name} consuming its queue",
            )
        yield names
    finally:
        for name in names:
            pipeline.processes.stop(name)


def _worked(pipeline: Pipeline, name: str, markers: tuple[bytes, ...], ids: set[str]) -> int:
    """How many of ``ids`` the process logged one of ``markers`` for."""
    seen = set()
    for line in pipeline.processes.log_file(name).read_bytes().splitlines():
        if any(marker in line for marker in markers):
            for upload_id in ids:
                if upload_id.encode() in line:
                    seen.add(upload_id)
    return len(seen)


def test_sixty_uploads_from_six_clients_with_two_replicas_of_each_stage_and_replicas_killed(
    pipeline: Pipeline, settings: Settings, ledger: FaultLedger, replicas: list[str]
) -> None:
    work = jobs(60, seed=5, max_bytes=400_000)

    def make_client() -> httpx.Client:
        return httpx.Client(
            base_url=pipeline.settings.status_base_url,
            timeout=30,
            headers={"Authorization": f"Bearer {pipeline.api_key}"},
        )

    # Halfway through, a replica of the parser and of the assembler die (SIGKILL) and come back:
    # their unacknowledged messages go to the other replica.
    fault = "parser+assembler replica SIGKILLed under load"
    killed: list[str] = []
    killer_errors: list[BaseException] = []

    def kill_replicas() -> None:
        try:
            time.sleep(4)
            ledger.inject(fault)
            for name in ("parser-2", "assembler-2"):
                pipeline.processes.stop(name, sig=signal.SIGKILL)
                pipeline.processes.start(name, {"GENOBASE_METRICS_PORT": str(stack.free_port())})
                killed.append(name)
        except BaseException as exc:  # a thread's exception is lost: hand it to the test
            killer_errors.append(exc)

    killer = threading.Thread(target=kill_replicas)
    killer.start()
    try:
        outcomes, _ = run(make_client, work, clients=6)
    finally:
        killer.join()  # before the replicas fixture stops them: nothing restarted after it
    # the fault happened: each replica was killed and started again, or the test says why not
    assert killer_errors == [] and killed == ["parser-2", "assembler-2"], killer_errors

    for outcome in outcomes:
        expected = expected_records(outcome.job) if outcome.job.valid else None
        ledger.attempt(outcome.upload_id, "done" if outcome.job.valid else "failed", expected and len(expected))
    unexpected = [(o.job.filename, o.status["state"], o.status.get("error")) for o in outcomes if not o.as_expected]
    assert unexpected == [], pipeline.logs()
    for outcome in outcomes:
        check(outcome, settings)
    ids = {o.upload_id for o in outcomes}
    # Both processes of each queue-consuming stage did part of the work. The persist queue carries
    # a small upload's one batch and then its end, alternately: dispatched round-robin, one
    # persister may take every batch and the other every end, and both count.
    for service, markers in (
        ("parser", (b'"parsing"',)),
        ("persister", (b'"event": "batch"', b'"event": "parse completed"')),
        ("assembler", (b'"result written"',)),
    ):
        names = stack.instance_names(service, 2)
        counts = [_worked(pipeline, name, markers, ids) for name in names]
        idle = [name for name, count in zip(names, counts, strict=True) if not count]
        tails = "\n".join(
            f"--- {name} ---\n" + "\n".join(pipeline.processes.log_file(name).read_text().splitlines()[-30:])
            for name in idle
        )
        assert not idle, f"{service} processes {counts}: one did no work\n{tails}"
    ledger.survive(fault)


def check(outcome: Outcome, settings: Settings) -> None:
    if not outcome.job.valid:
        assert outcome.status["result"] is None
        return
    expected = expected_records(outcome.job)
    document = download(outcome.status)
    assert document["record_count"] == len(expected) == outcome.status["result"]["records"]
    assert_same_records(document, expected)
    with psycopg.connect(settings.pg_dsn.get_secret_value()) as conn:
        counts = conn.execute(
            "SELECT count(*), count(DISTINCT ordinal) FROM sequence_records WHERE upload_id = %s",
            (outcome.upload_id,),
        ).fetchone()
    assert counts == (len(expected), len(expected))

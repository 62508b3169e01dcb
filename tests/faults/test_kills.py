"""Faults against the real stack: services SIGKILLed mid-work and objects overwritten.

Each test checks the finished result record by record against the input: nothing lost, nothing
doubled, the same document as an undisturbed run.
"""

from __future__ import annotations

import hashlib
import random
import signal
import time
from typing import Any

import orjson
import psycopg
import pytest

from shared.runtime.settings import Settings
from shared.s3.store import UPLOAD_CONTENT_TYPE, ObjectStore
from tests import http
from tests.conftest import Pipeline
from tests.e2e.test_pipeline import download
from tests.faults.conftest import FaultLedger
from tests.reference import fasta_records

pytestmark = pytest.mark.e2e


def many_records(megabytes: int, seed: int) -> bytes:
    """Short records (the slow kind to parse, persist and assemble), ~``megabytes`` MB."""
    rng = random.Random(seed)
    pool = rng.randbytes(1 << 20).translate(bytes(b"ACGT"[i % 4] for i in range(256)))
    out = []
    size = 0
    i = 0
    while size < megabytes * 1_000_000:
        n = rng.randint(150, 250)
        start = rng.randint(0, len(pool) - n)
        record = b">r%d kill test\n%s\n" % (i, pool[start : start + n])
        out.append(record)
        size += len(record)
        i += 1
    return b"".join(out)


def fingerprint(records: list[dict[str, Any]]) -> str:
    digest = hashlib.sha256()
    for r in records:
        digest.update(orjson.dumps(r, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()


def record_count(data: bytes) -> int:
    """Records of a ``many_records`` file (its headers hold no other ``>``)."""
    return data.count(b">")


def wait_until(pipeline: Pipeline, upload_id: str, predicate: Any, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = pipeline.status(upload_id)
        if predicate(status):
            return status
        assert status["state"] not in ("done", "failed"), f"finished before the fault could be injected: {status}"
        assert time.monotonic() < deadline, f"never reached the point to inject the fault: {status}"
        time.sleep(0.02)


def kill_and_restart(pipeline: Pipeline, service: str) -> None:
    pid = pipeline.processes.pid(service)
    assert pid is not None
    pipeline.processes.stop(service, sig=signal.SIGKILL)
    assert pipeline.processes.pid(service) is None
    pipeline.processes.start(service)


def assert_exact_result(pipeline: Pipeline, settings: Settings, upload_id: str, data: bytes) -> None:
    status = pipeline.wait_for(upload_id, timeout=300)
    assert status["state"] == "done", (status, pipeline.logs())
    expected = fasta_records(data)
    doc = download(status)
    assert doc["record_count"] == len(expected) == status["result"]["records"]
    assert fingerprint(doc["records"]) == fingerprint(expected)
    with psycopg.connect(settings.pg_dsn.get_secret_value()) as conn:
        counts = conn.execute(
            "SELECT count(*), count(DISTINCT ordinal) FROM sequence_records WHERE upload_id = %s", (upload_id,)
        ).fetchone()
    assert counts == (len(expected), len(expected))


def assert_no_orphaned_multipart(pipeline: Pipeline, settings: Settings, upload_id: str) -> None:
    """No unfinished multipart upload of the upload's result key is left (listed by exact key)."""
    key = pipeline.status(upload_id)["result"]["key"]
    assert ObjectStore(settings).multipart_uploads(settings.results_bucket, key) == []


@pytest.mark.parametrize(
    ("service", "point"),
    [
        ("parser", lambda s: s["state"] == "parsing" and s["progress"]["records_done"] > 0),
        ("persister", lambda s: s["progress"]["records_done"] > 0),
        ("assembler", lambda s: s["state"] == "assembling"),
    ],
)
def test_service_killed_mid_upload_finishes_identically(
    pipeline: Pipeline, settings: Settings, ledger: FaultLedger, service: str, point: Any
) -> None:
    data = many_records(60, seed=sum(service.encode()))
    ticket = ledger.upload(pipeline, f"kill-{service}.fasta", data, "done", record_count(data))
    wait_until(pipeline, ticket["id"], point)
    fault = f"{service} SIGKILLed mid-upload, restarted"
    ledger.inject(fault)
    kill_and_restart(pipeline, service)
    assert_exact_result(pipeline, settings, ticket["id"], data)
    assert_no_orphaned_multipart(pipeline, settings, ticket["id"])  # no orphaned multipart upload
    ledger.survive(fault)


def test_overwritten_object_is_a_new_generation(pipeline: Pipeline, settings: Settings, ledger: FaultLedger) -> None:
    first = many_records(1, seed=11)
    second = many_records(1, seed=12)
    ticket = ledger.upload(pipeline, "overwrite.fasta", first, "done", record_count(second))
    assert pipeline.wait_for(ticket["id"])["state"] == "done"
    ledger.inject("object overwritten (new generation)")
    url = ObjectStore(settings).presign_put(ticket["bucket"], ticket["key"], 60, len(second))
    put = http.put(url, content=second, headers={"Content-Type": UPLOAD_CONTENT_TYPE})
    assert put.status_code == 200
    deadline = time.monotonic() + 180  # RGW persistent topics occasionally hold an event back for a minute
    while (status := pipeline.status(ticket["id"]))["generation"] < 2:
        assert time.monotonic() < deadline, (status, pipeline.logs())
        time.sleep(0.1)
    assert_exact_result(pipeline, settings, ticket["id"], second)
    assert pipeline.status(ticket["id"])["generation"] == 2
    ledger.survive("object overwritten (new generation)")

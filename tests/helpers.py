"""Helpers of the tests that run against the stack (e2e, faults, security, compliance): uploads
through the intake, generated inputs, results checked record by record, metrics scraped.

Helpers live here (or in a conftest.py), never in a test module another test module imports."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from genobase import stack
from shared.rabbitmq.broker import connect
from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings
from shared.s3.store import ObjectStore
from tests import http
from tests.reference import fasta_records

if TYPE_CHECKING:
    from tests.conftest import Pipeline

FIXTURES = Path(__file__).parent / "fixtures"


def upload_via_intake(pipeline: Pipeline, filename: str, data: bytes, **extra: Any) -> dict[str, Any]:
    response = pipeline.http.post("/uploads", json={"filename": filename, "size": len(data), **extra})
    assert response.status_code == 201, response.text
    ticket: dict[str, Any] = response.json()
    put = http.put(ticket["upload_url"], content=data, headers=ticket["upload_headers"])
    assert put.status_code == 200, put.text
    return ticket


def download(status: dict[str, Any]) -> dict[str, Any]:
    response = http.get(status["result"]["url"])
    response.raise_for_status()
    doc: dict[str, Any] = orjson.loads(response.content)
    return doc


def assert_same_records(doc: dict[str, Any], expected: list[dict[str, Any]]) -> None:
    """The result's records are the reference parser's, one by one (and there are some)."""
    got = doc["records"]
    assert expected, "the reference parsed no record: nothing would be compared"
    assert len(got) == len(expected)
    for record, want in zip(got, expected, strict=True):
        assert record == want


def generated_fasta(records: int, seed: int) -> bytes:
    rng = random.Random(seed)
    lines = []
    for i in range(records):
        width = rng.choice([50, 60, 61, 80, 1000])
        length = rng.choice([0, 1, 59, 60, 200, 5000, 150_000])
        seq = "".join(rng.choice("ACGTNacgtRYKM") for _ in range(length))
        lines.append(f">rec{i} sample {i} > inside header")
        lines.extend(seq[j : j + width] for j in range(0, length, width))
        if i % 7 == 0:
            lines.append("")
    return ("\r\n" if seed % 2 else "\n").join(lines).encode() + b"\n"


def rgw_style_event(bucket: str, key: str, size: int, etag: str) -> bytes:
    body = orjson.loads((FIXTURES / "events" / "rgw-put.json").read_bytes())
    obj = body["Records"][0]["s3"]["object"]
    body["Records"][0]["s3"]["bucket"]["name"] = bucket
    obj.update(key=key, size=size, eTag=etag)
    return orjson.dumps(body)


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
    """The upload's status once ``predicate`` holds for it, where a fault is to be injected; fails
    at once should the upload finish first."""

    def reached() -> dict[str, Any] | None:
        status = pipeline.status(upload_id)
        if predicate(status):
            return status
        assert status["state"] not in ("done", "failed"), f"finished before the fault could be injected: {status}"
        return None

    return poll_until(
        reached,
        timeout=timeout,
        interval=0.02,
        what="the point to inject the fault",
        describe=lambda: str(pipeline.status(upload_id)),
    )


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


# Every table that holds rows of an upload (its ``uploads`` row stays when it is deleted, as the tombstone).
UPLOAD_TABLES = ("upload_batches", "upload_shards", "sequence_records", "sequence_parts", "collections")


def assert_nothing_left(settings: Settings, status: dict[str, Any]) -> None:
    """Nothing of a deleted upload (its status, once purged) is left: no row in any table that holds
    an upload id, no object nor multipart upload at its key, no result document of any generation
    nor an unfinished one."""
    assert status["state"] == "deleted" and status["deletion"]["purged"], status
    upload_id = status["id"]
    with psycopg.connect(settings.pg_dsn.get_secret_value()) as conn:
        for table in UPLOAD_TABLES:
            row = conn.execute(f"SELECT count(*) FROM {table} WHERE upload_id = %s", (upload_id,)).fetchone()
            assert row == (0,), table
    store = ObjectStore(settings)
    assert not store.exists(status["bucket"], status["key"])
    assert store.multipart_uploads(status["bucket"], status["key"]) == []
    for generation in range(1, status["generation"] + 1):
        result = f"{upload_id}/generation-{generation}.json"
        assert not store.exists(settings.results_bucket, result)
        assert store.multipart_uploads(settings.results_bucket, result) == []


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(pipeline: Pipeline, service: str) -> Samples:
    port = pipeline.processes.values[stack.metrics_port_setting(service)]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).raise_for_status().text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def ready_messages(settings: Settings, queue: str) -> int:
    """Messages on ``queue`` waiting for a consumer (``queue.declare-ok``'s count: those delivered
    and not yet acknowledged are not in it; see ``settled`` for those)."""
    connection = connect(settings)
    try:
        ok = connection.channel().queue_declare(queue, passive=True).method
        return int(ok.message_count)
    finally:
        connection.close()


def consumers(settings: Settings, queue: str) -> int:
    connection = connect(settings)
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.consumer_count)
    finally:
        connection.close()


def settled(pipeline: Pipeline, service: str, stage: str) -> float:
    """Messages of ``stage`` the service's process has settled, however (acknowledged, requeued,
    dead-lettered, refused): ``genobase_messages_total`` summed over its outcomes. It is counted
    once the handler has returned, just before the acknowledgement goes out."""
    name = "genobase_messages_total"
    return sum(v for (n, labels), v in scrape(pipeline, service).items() if n == name and ("stage", stage) in labels)


def wait_until_consumed(
    pipeline: Pipeline, settings: Settings, stage: str, before: float, published: int, timeout: float = 60
) -> None:
    """Wait until the ``published`` messages sent to ``stage``'s queue since ``before`` (``settled``
    then) were taken and settled: the queue holds none ready and the one consumer (the stack's
    own process of the stage's service, checked) has settled at least that many more.

    What a test asserts did not change is only worth asserting after this: with a fixed sleep it
    could as well be asserting before the message was even delivered."""
    service = {"parse": "parser", "persist": "persister", "assemble": "assembler"}[stage]
    queue = settings.queue(stage)
    assert consumers(settings, queue) == 1, f"{queue}: another consumer than {service} would settle some"
    moved: list[float] = []

    def consumed() -> bool:
        moved[:] = [settled(pipeline, service, stage) - before]
        return moved[0] >= published and ready_messages(settings, queue) == 0

    poll_until(
        consumed,
        timeout=timeout,
        interval=0.1,
        what=f"{published} message(s) on {queue} settled by {service}",
        describe=lambda: f"settled since: {moved}, ready: {ready_messages(settings, queue)}\n{pipeline.logs()}",
    )

"""End to end: files go into the bucket, JSON comes out, through the services as separate processes."""

from __future__ import annotations

import gzip
import hashlib
import random
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from shared.rabbitmq.broker import Publisher
from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings
from shared.s3.store import ObjectStore
from tests import http
from tests.conftest import Pipeline
from tests.helpers import (
    assert_same_records,
    download,
    generated_fasta,
    rgw_style_event,
    settled,
    upload_via_intake,
    wait_until_consumed,
)
from tests.reference import csv_records, fasta_records, fastq_records

pytestmark = pytest.mark.e2e
SAMPLES = Path(__file__).parents[2] / "samples"


def test_fasta_through_presigned_upload(pipeline: Pipeline) -> None:
    data = generated_fasta(60, seed=3)
    ticket = upload_via_intake(pipeline, "genes.fasta", data)
    assert ticket["key"].endswith("/genes.fasta")
    status = pipeline.wait_for(ticket["id"])
    assert status["state"] == "done", pipeline.logs()
    assert status["progress"]["fraction"] == 1.0
    assert status["result"]["records"] == 60
    doc = download(status)
    digests = {"md5": hashlib.md5(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest()}
    assert doc["source"] == {"bucket": ticket["bucket"], "key": ticket["key"], "etag": doc["source"]["etag"], **digests}
    assert {k: status["source"][k] for k in digests} == digests and status["source"]["size"] == len(data)
    assert doc["format"] == "fasta"
    assert doc["record_count"] == 60
    expected = fasta_records(data)
    assert_same_records(doc, expected)
    empty = sum(1 for r in expected if r["length"] == 0)
    assert doc["empty_sequences"] == status["empty_sequences"] == empty
    assert doc["duplicate_names"] == status["duplicate_names"] == 0
    assert status["result"]["size"] == len(http.get(status["result"]["url"]).content)


def test_bundled_samples(pipeline: Pipeline) -> None:
    for name, reference in (("sample.fasta", fasta_records), ("sample.csv", csv_records)):
        data = (SAMPLES / name).read_bytes()
        ticket = upload_via_intake(pipeline, name, data)
        status = pipeline.wait_for(ticket["id"])
        assert status["state"] == "done", (name, status, pipeline.logs())
        doc = download(status)
        assert_same_records(doc, reference(data))
        if name == "sample.fasta":  # BRCA1 twice: kept, and reported
            assert status["duplicate_names"] == doc["duplicate_names"] == 1


def test_csv_with_quotes_and_spaces(pipeline: Pipeline) -> None:
    data = (
        b"gene name,sequence,organism\r\n"
        b"BRCA1,ACGT ACGT acgt,human\r\n"
        b'"TP53, tumour protein","NNNN ACGT","Mus musculus"\r\n'
        b"EGFR," + b"ACGTTGCA " * 5000 + b",rat\r\n"
    )
    ticket = upload_via_intake(pipeline, "export.csv", data)
    status = pipeline.wait_for(ticket["id"])
    assert status["state"] == "done", pipeline.logs()
    doc = download(status)
    assert doc["format"] == "csv"
    assert_same_records(doc, csv_records(data))
    assert doc["records"][1]["gene_name"] == "TP53, tumour protein"
    assert doc["records"][0]["sequence"] == "ACGTACGTacgt"
    assert doc["records"][1]["attributes"] == {"organism": "Mus musculus"}


def generated_fastq(reads: int, seed: int) -> bytes:
    rng = random.Random(seed)
    out = []
    for i in range(reads):
        n = rng.choice([0, 36, 150, 151, 5000])
        seq = "".join(rng.choice("ACGTN") for _ in range(n))
        qual = "".join(rng.choice('!#+5@I~\\"') for _ in range(n))
        out.append(f"@read{i}/1 lane=3\n{seq}\n+\n{qual}\n")
    return "".join(out).encode()


@pytest.mark.parametrize(
    ("filename", "make", "reference", "fmt"),
    [
        ("reads.fastq", lambda: generated_fastq(40, 1), fastq_records, "fastq"),
        ("reads.fq.gz", lambda: gzip.compress(generated_fastq(30, 2)), lambda d: fastq_records(gzip.decompress(d)),
         "fastq.gz"),
        ("genes.fasta", lambda: gzip.compress(generated_fasta(20, 4)), lambda d: fasta_records(gzip.decompress(d)),
         "fasta.gz"),
        ("table.tsv", lambda: b"name\tsequence\na b\tACGT\nc\tGG TT\n", lambda d: csv_records(d, "\t"), "tsv"),
    ],
)  # fmt: skip
def test_each_format_end_to_end(pipeline: Pipeline, filename: str, make: Any, reference: Any, fmt: str) -> None:
    data = make()
    ticket = upload_via_intake(pipeline, filename, data)
    status = pipeline.wait_for(ticket["id"])
    assert status["state"] == "done", (status, pipeline.logs())
    assert status["format"] == fmt
    doc = download(status)
    assert doc["format"] == fmt
    assert_same_records(doc, reference(data))


def test_unregistered_object_written_straight_to_the_bucket(pipeline: Pipeline, settings: Settings) -> None:
    data = generated_fasta(5, seed=8)
    key = f"lab uploads/run {uuid.uuid4().hex[:6]}/reads.fa"
    ObjectStore(settings).client.put_object(Bucket=settings.uploads_bucket, Key=key, Body=data)

    def registered() -> dict[str, Any] | None:
        response = pipeline.http.get("/uploads/lookup", params={"bucket": settings.uploads_bucket, "key": key})
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    # RGW persistent topics occasionally hold an event back for a minute
    upload = poll_until(registered, timeout=180, what="an upload made by the object's event")
    assert upload["registered"] is False
    assert upload["filename"] == "reads.fa"
    status = pipeline.wait_for(upload["id"])
    assert status["state"] == "done", pipeline.logs()
    assert status["key"] == key
    assert_same_records(download(status), fasta_records(data))


def test_same_event_twice_gives_one_result(pipeline: Pipeline, settings: Settings) -> None:
    data = generated_fasta(12, seed=5)
    ticket = upload_via_intake(pipeline, "twice.fasta", data)
    first = pipeline.wait_for(ticket["id"])
    assert first["state"] == "done", pipeline.logs()
    store = ObjectStore(settings)
    etag = store.head(ticket["bucket"], ticket["key"])["ETag"].strip('"')
    before = settled(pipeline, "parser", "parse")
    publisher = Publisher(settings)
    event = rgw_style_event(ticket["bucket"], ticket["key"], len(data), etag)
    publisher.publish_raw(settings.events_exchange, settings.events_routing_key, event)
    publisher.publish_raw(settings.events_exchange, settings.events_routing_key, event)
    publisher.close()
    wait_until_consumed(pipeline, settings, "parse", before, published=2)  # the duplicates taken (and ignored)
    again = pipeline.wait_for(ticket["id"])
    assert again["state"] == "done"
    assert again["generation"] == first["generation"] == 1
    assert again["result"]["key"] == first["result"]["key"]
    with psycopg.connect(settings.pg_dsn.get_secret_value()) as conn:
        rows = conn.execute(
            "SELECT count(*), count(DISTINCT ordinal) FROM sequence_records WHERE upload_id = %s", (ticket["id"],)
        ).fetchone()
    assert rows == (12, 12)
    listing = store.client.list_objects_v2(Bucket=settings.results_bucket, Prefix=ticket["id"])
    assert [o["Key"] for o in listing.get("Contents", [])] == [first["result"]["key"]]
    assert_same_records(download(again), fasta_records(data))


def test_invalid_character_fails_with_line_and_column(pipeline: Pipeline) -> None:
    data = b">ok\nACGT\n>bad one\nACGTN\nACXGT\n"
    ticket = upload_via_intake(pipeline, "bad.fasta", data)
    status = pipeline.wait_for(ticket["id"])
    assert status["state"] == "failed"
    assert status["error"]["code"] == "invalid_character"
    assert "'X'" in status["error"]["message"]
    assert (status["error"]["line"], status["error"]["column"]) == (5, 3)
    assert status["result"] is None


def test_unsupported_content_fails_clearly(pipeline: Pipeline) -> None:
    ticket = upload_via_intake(pipeline, "notes.txt", b"hello, this is not a sequence file\n")
    status = pipeline.wait_for(ticket["id"])
    assert status["state"] == "failed"
    assert status["error"]["code"] == "unsupported_format"
    assert "FASTA" in status["error"]["message"]

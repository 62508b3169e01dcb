"""A done upload's data read back through the intake: the result document by a stable link, and the
records from Postgres, page by page in JSON and NDJSON, compared with an independent reading
(Biopython) of the files uploaded through the real pipeline."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from shared.postgres.keys import PostgresKeys
from shared.usecases.keys import create_key
from tests import http
from tests.conftest import Pipeline
from tests.helpers import download, upload_via_intake
from tests.reference import checksums, fasta_records, fastq_records

pytestmark = pytest.mark.e2e
PART = 1024 * 1024  # the pipeline's part size (GENOBASE_PART_BYTES)
LONG = 40 * PART + 12345  # residues of the long record: 41 stored parts, more than a socket buffers


def fasta_with_a_long_record() -> bytes:
    rng = random.Random(21)
    lines = []
    for i in range(6):
        seq = "".join(rng.choice("ACGTNacgt") for _ in range(rng.choice([0, 5, 70, 333])))
        lines.append(f">rec{i} sample {i}\n" + "\n".join(seq[j : j + 60] for j in range(0, len(seq), 60)) + "\n")
    long_residues = "".join(rng.choice("ACGTacgt") for _ in range(LONG))
    lines.insert(3, ">chrLong a long one\n" + "\n".join(long_residues[j : j + 80] for j in range(0, LONG, 80)) + "\n")
    return "".join(lines).encode()


def fastq(reads: int) -> bytes:
    rng = random.Random(5)
    out = []
    for i in range(reads):
        n = rng.choice([0, 36, 151])
        seq = "".join(rng.choice("ACGTN") for _ in range(n))
        qual = "".join(rng.choice('!#+5@I~\\"') for _ in range(n))  # quotes and backslashes: escaped JSON
        out.append(f"@read{i}/1 lane=3\n{seq}\n+\n{qual}\n")
    return "".join(out).encode()


@pytest.fixture(scope="module")
def uploads(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    """A FASTA (one record of 41 parts among short ones) and a FASTQ, done, with their reference records."""
    found = {}
    for name, data, reference in (
        ("genes.fa", fasta_with_a_long_record(), fasta_records),
        ("reads.fq", fastq(9), fastq_records),
    ):
        ticket = upload_via_intake(pipeline, name, data)
        status = pipeline.wait_for(ticket["id"])
        assert status["state"] == "done", (status, pipeline.logs())
        found[name] = {"id": ticket["id"], "status": status, "expected": reference(data)}
    return found


def pages(pipeline: Pipeline, upload_id: str, limit: int, *, ndjson: bool) -> tuple[list[dict[str, Any]], int]:
    """Every record of the upload, page by page: JSON by ``next_cursor``, NDJSON by the Link header."""
    records: list[dict[str, Any]] = []
    url: str | None = f"/uploads/{upload_id}/records?limit={limit}"
    count = 0
    while url is not None:
        headers = {"Accept": "application/x-ndjson"} if ndjson else {}
        response = pipeline.http.get(url, headers=headers)
        assert response.status_code == 200, response.text
        count += 1
        link = response.headers.get("link")
        if ndjson:
            assert response.headers["content-type"] == "application/x-ndjson"
            records += [orjson.loads(line) for line in response.content.splitlines()]
            url = link[1 : link.index(">")] if link else None
        else:
            body = orjson.loads(response.content)
            records += body["records"]
            cursor = body["next_cursor"]
            assert (cursor is None) == (link is None)
            url = None if cursor is None else f"/uploads/{upload_id}/records?limit={limit}&cursor={cursor}"
    return records, count


@pytest.mark.parametrize("name", ["genes.fa", "reads.fq"])
@pytest.mark.parametrize("ndjson", [False, True], ids=["json", "ndjson"])
def test_pages_of_two_read_back_every_record_as_an_independent_reading(
    pipeline: Pipeline, uploads: dict[str, dict[str, Any]], name: str, ndjson: bool
) -> None:
    upload = uploads[name]
    records, count = pages(pipeline, upload["id"], 2, ndjson=ndjson)
    expected = upload["expected"]
    assert len(expected) > 4 and count == -(-len(expected) // 2)
    assert records == expected  # every key, value and order of records; FASTQ qualities included


def test_name_prefix_and_fields(pipeline: Pipeline, uploads: dict[str, dict[str, Any]]) -> None:
    upload = uploads["reads.fq"]
    response = pipeline.http.get(
        f"/uploads/{upload['id']}/records", params={"name": "read1", "fields": "id,md5,quality"}
    )
    assert response.status_code == 200, response.text
    want = [{"id": r["id"], "md5": r["md5"], "quality": r["quality"]} for r in upload["expected"]]
    assert response.json()["records"] == [r for r in want if r["id"].startswith("read1")]
    unknown = pipeline.http.get(f"/uploads/{upload['id']}/records", params={"fields": "id,nope"})
    assert unknown.status_code == 422 and "sequence" in unknown.text
    bad = pipeline.http.get(f"/uploads/{upload['id']}/records", params={"cursor": "x" * 20})
    assert bad.status_code == 422 and "invalid_cursor" in bad.text


def test_one_record_carries_the_digests_refget_serves_it_by(
    pipeline: Pipeline, uploads: dict[str, dict[str, Any]], refget_url: str
) -> None:
    for upload in uploads.values():
        for want in upload["expected"]:
            response = pipeline.http.get(f"/uploads/{upload['id']}/records/{want['ordinal']}")
            assert response.status_code == 200, response.text
            got = orjson.loads(response.content)
            assert got == want
            if want["length"] == 0:
                continue
            answer = httpx.get(
                f"{refget_url}/sequence/{got['refget']}/metadata",
                headers={"Authorization": f"Bearer {pipeline.api_key}"},
            )
            assert answer.status_code == 200, (answer.status_code, answer.headers, answer.text)
            metadata = answer.json()["metadata"]
            assert (metadata["md5"], metadata["ga4gh"], metadata["length"]) == (
                got["md5"],
                got["refget"],
                got["length"],
            )
    beyond = pipeline.http.get(f"/uploads/{uploads['reads.fq']['id']}/records/9")
    assert beyond.status_code == 404 and "no_such_record" in beyond.text


def test_a_long_record_streams_and_reads_back_exact(pipeline: Pipeline, uploads: dict[str, dict[str, Any]]) -> None:
    upload = uploads["genes.fa"]
    want = next(r for r in upload["expected"] if r["id"] == "chrLong")
    assert want["length"] == LONG > 5 * PART
    digest = hashlib.sha256()
    sends = 0
    url = f"/uploads/{upload['id']}/records/{want['ordinal']}"
    with pipeline.http.stream("GET", url, params={"fields": "sequence"}) as response:
        assert response.status_code == 200 and "content-length" not in response.headers  # streamed
        for chunk in response.iter_raw():
            digest.update(chunk)
            sends += 1
    body = json.dumps({"sequence": want["sequence"]}, separators=(",", ":")).encode()
    assert digest.hexdigest() == hashlib.sha256(body).hexdigest()
    assert checksums(want["sequence"]) == (want["md5"], want["refget"])
    assert sends > 1


def test_result_redirects_to_the_document_the_status_links(
    pipeline: Pipeline, uploads: dict[str, dict[str, Any]]
) -> None:
    upload = uploads["reads.fq"]
    first = pipeline.http.get(f"/uploads/{upload['id']}/result")
    assert first.status_code == 302 and first.headers["cache-control"] == "no-store"
    again = pipeline.http.get(f"/uploads/{upload['id']}/result")
    assert again.headers["location"].startswith(pipeline.settings.presign_endpoint)
    followed = http.get(first.headers["location"])
    assert followed.status_code == 200
    assert orjson.loads(followed.content) == download(pipeline.status(upload["id"]))
    # curl -L, as docs/api.md shows it: the key goes to the intake, not to the store
    curl = shutil.which("curl")
    assert curl is not None
    done = subprocess.run(
        [curl, "-sSfL", "-H", f"Authorization: Bearer {pipeline.api_key}",
         f"{pipeline.settings.status_base_url}/uploads/{upload['id']}/result"],
        capture_output=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == followed.content


def test_not_done_is_409_and_another_owner_s_is_404(pipeline: Pipeline, uploads: dict[str, dict[str, Any]]) -> None:
    waiting = pipeline.http.post("/uploads", json={"filename": "later.fa", "size": 10}).json()["id"]
    for path, code in (
        ("result", "result_not_ready"),
        ("records", "records_not_ready"),
        ("records/0", "records_not_ready"),
    ):
        response = pipeline.http.get(f"/uploads/{waiting}/{path}")
        assert response.status_code == 409 and code in response.text, (path, response.text)
    stranger = create_key(PostgresKeys.from_settings(pipeline.settings), f"st-{uuid.uuid4().hex[:6]}", admin=False)
    headers = {"Authorization": f"Bearer {stranger}"}
    base = pipeline.settings.status_base_url
    for path in ("result", "records", "records/0"):
        theirs = httpx.get(f"{base}/uploads/{uploads['genes.fa']['id']}/{path}", headers=headers)
        missing = httpx.get(f"{base}/uploads/{uuid.uuid4()}/{path}", headers=headers)
        assert theirs.status_code == missing.status_code == 404, path
        assert "chrLong" not in theirs.text


def test_slow_readers_hold_no_database_session(pipeline: Pipeline, uploads: dict[str, dict[str, Any]]) -> None:
    """More streams than the intake's pool has sessions (8), none of them read past its first bytes
    (each 40 MiB: the intake is held mid-record by the sockets' buffers): the intake still answers,
    because a stream holds a session only while a group or span is read; and each stream, read on
    afterwards, is whole."""
    upload = uploads["genes.fa"]
    ordinal = next(r["ordinal"] for r in upload["expected"] if r["id"] == "chrLong")
    headers = {"Authorization": f"Bearer {pipeline.api_key}"}
    base = pipeline.settings.status_base_url
    streams: list[tuple[Iterator[bytes], bytes]] = []
    with contextlib.ExitStack() as stack:
        for _ in range(12):
            client = stack.enter_context(httpx.Client(base_url=base, headers=headers, timeout=30))
            response = stack.enter_context(client.stream("GET", f"/uploads/{upload['id']}/records/{ordinal}"))
            assert response.status_code == 200
            chunks = response.iter_raw()
            streams.append((chunks, next(chunks)))
            assert streams[-1][1].startswith(b'{"ordinal":')
        started = time.monotonic()
        for _ in range(5):
            assert pipeline.http.get(f"/uploads/{upload['id']}").status_code == 200
            assert pipeline.http.get(f"/uploads/{upload['id']}/records", params={"limit": 1}).status_code == 200
        assert time.monotonic() - started < 10
        want = orjson.dumps(next(r for r in upload["expected"] if r["id"] == "chrLong"))
        for chunks, first in streams:
            digest = hashlib.sha256(first)
            for chunk in chunks:
                digest.update(chunk)
            assert digest.hexdigest() == hashlib.sha256(want).hexdigest()

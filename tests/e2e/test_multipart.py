"""Multipart uploads against the running stack: the CLI in parallel parts, killed half way and run
again; a corrupted part refused by the store; an abandoned upload aborted when its ticket expires.

An intake of this module's own runs with a low threshold (8 MiB, parts of 5 MiB: RGW's minimum),
beside the session's, on the same database, bucket and pipeline.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest

from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings
from shared.s3.store import ObjectStore
from tests.conftest import Pipeline

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024


def big_fasta(path: Path, megabytes: int) -> int:
    rng = random.Random(megabytes)
    with path.open("w") as out:
        written = 0
        record = 0
        while written < megabytes * MiB:
            seq = "".join(rng.choices("ACGT", k=700_000))
            out.write(f">r{record}\n")
            out.writelines(seq[i : i + 70] + "\n" for i in range(0, len(seq), 70))
            written += len(seq) + len(seq) // 70 + 8
            record += 1
    return record


def test_the_cli_sends_parts_and_resumes_after_being_killed(
    pipeline: Pipeline, settings: Settings, multipart_intake: str, tmp_path: Path
) -> None:
    source = tmp_path / "big.fa"
    records = big_fasta(source, 18)  # 4 parts of 5 MiB
    env = {
        "PATH": "/usr/bin:/bin",
        "GENOBASE_STACK_FILE": "/nonexistent/stack.env",
        "GENOBASE_API_KEY": pipeline.api_key,
        "GENOBASE_HOME": str(tmp_path / "home"),
    }
    cli = [sys.executable, "-m", "genobase.cli"]
    command = [*cli, "upload", str(source), "--intake", multipart_intake, "--parallel", "1"]
    killed = subprocess.run(
        command, env={**env, "GENOBASE_FAILPOINT": "cli.after_part:2"}, capture_output=True, text=True, timeout=120
    )
    assert killed.returncode == -9, killed.stderr  # SIGKILLed after its second part
    (state,) = (tmp_path / "home" / "transfers").glob("*.json")
    ticket = json.loads(state.read_text())
    store = ObjectStore(settings)
    assert len(store.parts(ticket["bucket"], ticket["key"], ticket["multipart"]["upload_id"])) == 2
    output = tmp_path / "result.json"
    again = subprocess.run(
        [*command, "--wait", "--output", str(output)], env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    assert "2 of 4 parts already stored; sending 2" in again.stderr
    document = json.loads(output.read_text())
    assert len(document["records"]) == records
    sent = source.read_bytes()  # what arrived is what was sent, whole-file digests to compare
    assert document["source"]["md5"] == hashlib.md5(sent).hexdigest()
    assert document["source"]["sha256"] == hashlib.sha256(sent).hexdigest()
    head = store.head(ticket["bucket"], ticket["key"])
    assert head["ContentLength"] == source.stat().st_size and head["ETag"].strip('"').endswith("-4")
    assert store.multipart_uploads(ticket["bucket"], ticket["key"]) == []  # nothing orphaned
    assert not state.exists()


def _ticket(pipeline: Pipeline, intake: str, size: int) -> dict[str, object]:
    client = httpx.Client(base_url=intake, headers={"Authorization": f"Bearer {pipeline.api_key}"}, timeout=30)
    ticket: dict[str, object] = client.post("/uploads", json={"filename": "parts.fa", "size": size}).json()
    assert ticket["upload_method"] == "multipart", ticket
    return ticket


def test_a_corrupted_or_cut_part_is_refused_by_the_store(pipeline: Pipeline, multipart_intake: str) -> None:
    size = 12 * MiB
    ticket = _ticket(pipeline, multipart_intake, size)
    plan = ticket["multipart"]
    assert isinstance(plan, dict) and plan["part_size"] == 5 * MiB and plan["part_count"] == 3
    part = random.Random(1).randbytes(5 * MiB)
    md5 = base64.b64encode(hashlib.md5(part).digest()).decode()
    headers = {"Authorization": f"Bearer {pipeline.api_key}"}
    signed = httpx.post(plan["parts_url"], json={"parts": [{"number": 1, "md5": md5}]}, headers=headers).json()
    url = signed["parts"][0]["url"]
    corrupted = bytearray(part)
    corrupted[12345] ^= 0x20
    refused = httpx.put(url, content=bytes(corrupted), headers={"Content-MD5": md5}, timeout=60)
    assert refused.status_code == 400 and b"BadDigest" in refused.content
    cut = httpx.put(url, content=part[:-1], headers={"Content-MD5": md5}, timeout=60)
    assert cut.status_code in (400, 403)
    assert httpx.get(plan["parts_url"], headers=headers).json()["parts"] == []
    assert httpx.put(url, content=part, headers={"Content-MD5": md5}, timeout=60).status_code == 200
    beyond = httpx.post(plan["parts_url"], json={"parts": [{"number": 4, "md5": md5}]}, headers=headers)
    assert beyond.status_code == 422


def test_an_abandoned_multipart_upload_is_aborted_when_its_ticket_expires(
    pipeline: Pipeline, settings: Settings, multipart_intake: str
) -> None:
    ticket = _ticket(pipeline, multipart_intake, 9 * MiB)
    plan = ticket["multipart"]
    assert isinstance(plan, dict)
    part = bytes(5 * MiB)
    md5 = base64.b64encode(hashlib.md5(part).digest()).decode()
    headers = {"Authorization": f"Bearer {pipeline.api_key}"}
    url = httpx.post(plan["parts_url"], json={"parts": [{"number": 1, "md5": md5}]}, headers=headers).json()
    assert httpx.put(url["parts"][0]["url"], content=part, headers={"Content-MD5": md5}).status_code == 200
    store = ObjectStore(settings)
    bucket, key = str(ticket["bucket"]), str(ticket["key"])
    assert len(store.multipart_uploads(bucket, key)) == 1
    with psycopg.connect(settings.pg_dsn.get_secret_value(), autocommit=True) as conn:  # as the clock would
        conn.execute("UPDATE uploads SET ticket_expires_at = now() - interval '5 s' WHERE id = %s", (ticket["id"],))
    poll_until(
        lambda: pipeline.status(str(ticket["id"]))["state"] == "expired" and not store.multipart_uploads(bucket, key),
        timeout=20,
        interval=0.5,
        what="the ticket expired and its multipart upload aborted",
        describe=lambda: f"{pipeline.status(str(ticket['id']))} {store.multipart_uploads(bucket, key)}",
    )

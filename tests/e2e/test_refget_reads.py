"""Reading stored sequences back through the refget service: slices over stored parts, one sequence
however many uploads hold it, and reads that need a key (the default) and see the key's owner's."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.domain.seqcol import sha512t24u
from shared.postgres.keys import PostgresKeys
from shared.usecases.keys import create_key
from tests.conftest import Pipeline
from tests.helpers import upload_via_intake

pytestmark = pytest.mark.e2e
PART = 1024 * 1024  # the pipeline's part size (GENOBASE_PART_BYTES)


def fasta(records: list[tuple[str, str]]) -> bytes:
    return b"".join(f">{name}\n".encode() + seq.encode() + b"\n" for name, seq in records)


@pytest.fixture(scope="module")
def long_record(pipeline: Pipeline) -> dict[str, Any]:
    """3.5 parts of residues, soft-masked (lower case) in places: stored as written, served upper-cased."""
    rng = random.Random(11)
    residues = "".join(rng.choice("ACGTacgt") for _ in range(3 * PART + PART // 2))
    name = f"long-{uuid.uuid4().hex[:6]}"
    ticket = upload_via_intake(pipeline, f"{name}.fa", fasta([(name, residues), ("short", "ACGTN")]))
    status = pipeline.wait_for(ticket["id"])
    assert status["state"] == "done", pipeline.logs()
    upper = residues.upper()
    return {
        "name": name,
        "residues": upper,
        "md5": hashlib.md5(upper.encode()).hexdigest(),
        "sq": "SQ." + sha512t24u(upper.encode()),
        "status": status,
    }


@pytest.fixture(scope="module")
def refget(pipeline: Pipeline, refget_url: str) -> Iterator[httpx.Client]:
    """The stack's refget, read with the run's admin key (reads need a key by default)."""
    headers = {"Authorization": f"Bearer {pipeline.api_key}"}
    with httpx.Client(base_url=refget_url, headers=headers, timeout=60) as client:
        yield client


def test_a_whole_sequence_streams_by_every_form_of_its_id(refget: httpx.Client, long_record: dict[str, Any]) -> None:
    for sequence_id in (
        long_record["md5"],
        f"md5:{long_record['md5']}",
        long_record["sq"],
        f"ga4gh:{long_record['sq']}",
    ):
        response = refget.get(f"/sequence/{sequence_id}")
        assert response.status_code == 200, sequence_id
        assert response.text == long_record["residues"]
        assert response.headers["content-type"].startswith("text/vnd.ga4gh.refget.v2.0.0+plain")


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, 1), (PART - 5, PART + 5), (PART - 1, 3 * PART + 1), (3 * PART, 3 * PART + PART // 2), (1234, 1234)],
)
def test_slices_across_stored_parts(refget: httpx.Client, long_record: dict[str, Any], start: int, end: int) -> None:
    url = f"/sequence/{long_record['md5']}"
    by_query = refget.get(url, params={"start": start, "end": end})
    assert by_query.status_code == 200 and by_query.text == long_record["residues"][start:end]
    if end > start:
        by_range = refget.get(url, headers={"Range": f"bytes={start}-{end - 1}"})
        assert by_range.status_code == 206 and by_range.text == long_record["residues"][start:end]


def test_the_same_sequence_in_two_uploads_is_one_sequence(
    pipeline: Pipeline,
    refget: httpx.Client,
    long_record: dict[str, Any],
) -> None:
    again = f"again-{uuid.uuid4().hex[:6]}"
    ticket = upload_via_intake(pipeline, "again.fa", fasta([(again, long_record["residues"])]))
    assert pipeline.wait_for(ticket["id"])["state"] == "done"
    metadata = refget.get(f"/sequence/{long_record['sq']}/metadata").json()["metadata"]
    assert metadata["md5"] == long_record["md5"] and metadata["length"] == len(long_record["residues"])
    assert {long_record["name"], again} <= {a["alias"] for a in metadata["aliases"]}


def test_refusals_carry_their_status_and_code(refget: httpx.Client, long_record: dict[str, Any]) -> None:
    url = f"/sequence/{long_record['md5']}"
    for answer, status, code in [
        (refget.get(f"/sequence/{'0' * 32}"), 404, "not_found"),
        (refget.get(url, headers={"Accept": "application/x-embl"}), 406, "not_acceptable"),
        (refget.get(url, params={"start": "x"}), 400, "bad_request"),
        (refget.get(url, params={"start": 10, "end": 5}), 416, "range_not_satisfiable"),  # not circular
        (refget.get(url, headers={"Range": "bytes=99999999-99999999"}), 416, "range_not_satisfiable"),
        (refget.request("PATCH", url), 405, "method_not_allowed"),
    ]:
        assert answer.status_code == status and answer.json()["code"] == code, answer.text


def test_the_upload_lists_as_a_collection(refget: httpx.Client, long_record: dict[str, Any]) -> None:
    digest = long_record["status"]["collection_digest"]
    level1 = refget.get(f"/collection/{digest}", params={"level": 1}).json()
    listed = refget.get("/list/collection", params={"names": level1["names"]}).json()
    assert listed["results"] == [digest] and listed["pagination"]["total"] == 1
    level2 = refget.get(f"/collection/{digest}").json()
    assert level2["names"] == [long_record["name"], "short"] and level2["lengths"][1] == 5


def test_reads_need_a_key_and_listings_are_the_owners(
    pipeline: Pipeline,
    refget_url: str,
    long_record: dict[str, Any],
) -> None:
    token = uuid.uuid4().hex[:6]
    store = PostgresKeys.from_settings(pipeline.settings)
    alice, bob = (create_key(store, f"{who}-{token}", admin=False) for who in ("ra", "rb"))
    as_alice = httpx.Client(base_url=pipeline.settings.status_base_url, headers={"Authorization": f"Bearer {alice}"})
    data = fasta([(f"mine-{token}", "ACGTACGTAC")])
    ticket = as_alice.post("/uploads", json={"filename": "mine.fa", "size": len(data)}).raise_for_status().json()
    assert httpx.put(ticket["upload_url"], content=data, headers=ticket.get("upload_headers") or {}).status_code == 200
    digest = pipeline.wait_for(ticket["id"])["collection_digest"]
    sequence = f"{refget_url}/sequence/{long_record['md5']}"  # the admin key's upload
    assert httpx.get(sequence).status_code == 401
    assert httpx.get(sequence, headers={"Authorization": "Bearer gbk_wrong"}).status_code == 401
    assert httpx.get(sequence, headers={"Authorization": f"Bearer {bob}"}).status_code == 404  # not bob's
    listing = f"{refget_url}/list/collection"
    assert digest in httpx.get(listing, headers={"Authorization": f"Bearer {alice}"}).json()["results"]
    seen_by_bob = httpx.get(listing, headers={"Authorization": f"Bearer {bob}"}).json()
    assert digest not in seen_by_bob["results"] and seen_by_bob["pagination"]["total"] == 0
    collection = f"{refget_url}/collection/{digest}"
    assert httpx.get(collection, headers={"Authorization": f"Bearer {bob}"}).status_code == 404
    assert httpx.get(collection, headers={"Authorization": f"Bearer {pipeline.api_key}"}).status_code == 200  # admin

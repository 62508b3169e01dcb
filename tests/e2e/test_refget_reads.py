"""Reading stored sequences back through the refget service: slices over stored parts, one sequence
however many uploads hold it, and reads that require a key when configured so."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.postgres import keys
from shared.postgres.connection import connect
from shared.seqcol import sha512t24u
from tests.compliance.test_refget import refget_url  # noqa: F401  (the fixture)
from tests.conftest import Pipeline, another_process
from tests.e2e.test_pipeline import upload_via_intake

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


def test_a_whole_sequence_streams_by_every_form_of_its_id(refget_url: str, long_record: dict[str, Any]) -> None:  # noqa: F811
    for sequence_id in (
        long_record["md5"],
        f"md5:{long_record['md5']}",
        long_record["sq"],
        f"ga4gh:{long_record['sq']}",
    ):
        response = httpx.get(f"{refget_url}/sequence/{sequence_id}", timeout=60)
        assert response.status_code == 200, sequence_id
        assert response.text == long_record["residues"]
        assert response.headers["content-type"].startswith("text/vnd.ga4gh.refget.v2.0.0+plain")


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, 1), (PART - 5, PART + 5), (PART - 1, 3 * PART + 1), (3 * PART, 3 * PART + PART // 2), (1234, 1234)],
)
def test_slices_across_stored_parts(refget_url: str, long_record: dict[str, Any], start: int, end: int) -> None:  # noqa: F811
    url = f"{refget_url}/sequence/{long_record['md5']}"
    by_query = httpx.get(url, params={"start": start, "end": end}, timeout=30)
    assert by_query.status_code == 200 and by_query.text == long_record["residues"][start:end]
    if end > start:
        by_range = httpx.get(url, headers={"Range": f"bytes={start}-{end - 1}"}, timeout=30)
        assert by_range.status_code == 206 and by_range.text == long_record["residues"][start:end]


def test_the_same_sequence_in_two_uploads_is_one_sequence(
    pipeline: Pipeline,
    refget_url: str,  # noqa: F811
    long_record: dict[str, Any],
) -> None:
    again = f"again-{uuid.uuid4().hex[:6]}"
    ticket = upload_via_intake(pipeline, "again.fa", fasta([(again, long_record["residues"])]))
    assert pipeline.wait_for(ticket["id"])["state"] == "done"
    metadata = httpx.get(f"{refget_url}/sequence/{long_record['sq']}/metadata", timeout=30).json()["metadata"]
    assert metadata["md5"] == long_record["md5"] and metadata["length"] == len(long_record["residues"])
    assert {long_record["name"], again} <= {a["alias"] for a in metadata["aliases"]}


def test_refusals_carry_their_status(refget_url: str, long_record: dict[str, Any]) -> None:  # noqa: F811
    url = f"{refget_url}/sequence/{long_record['md5']}"
    assert httpx.get(f"{refget_url}/sequence/{'0' * 32}").status_code == 404
    assert httpx.get(url, headers={"Accept": "application/x-embl"}).status_code == 406
    assert httpx.get(url, params={"start": "x"}).status_code == 400
    assert httpx.get(url, params={"start": 10, "end": 5}).status_code == 416  # not circular
    assert httpx.get(url, headers={"Range": "bytes=99999999-99999999"}).status_code == 416


def test_the_upload_lists_as_a_collection(refget_url: str, long_record: dict[str, Any]) -> None:  # noqa: F811
    digest = long_record["status"]["collection_digest"]
    level1 = httpx.get(f"{refget_url}/collection/{digest}", params={"level": 1}).json()
    listed = httpx.get(f"{refget_url}/list/collection", params={"names": level1["names"]}).json()
    assert listed["results"] == [digest] and listed["pagination"]["total"] == 1
    level2 = httpx.get(f"{refget_url}/collection/{digest}").json()
    assert level2["names"] == [long_record["name"], "short"] and level2["lengths"][1] == 5


@pytest.fixture
def keyed_refget(pipeline: Pipeline) -> Iterator[str]:
    """A second refget process of this run with GENOBASE_REFGET_REQUIRE_KEY=true."""
    with another_process(pipeline, "refget", "GENOBASE_REFGET_PORT", {"GENOBASE_REFGET_REQUIRE_KEY": "true"}) as url:
        yield url


def test_with_keys_required_reads_need_a_key_and_listings_are_the_owners(
    pipeline: Pipeline, keyed_refget: str, long_record: dict[str, Any]
) -> None:
    token = uuid.uuid4().hex[:6]
    with connect(pipeline.settings, autocommit=True) as conn:
        alice, bob = (keys.create_key(conn, f"{who}-{token}", admin=False) for who in ("ra", "rb"))
    as_alice = httpx.Client(base_url=pipeline.settings.status_base_url, headers={"Authorization": f"Bearer {alice}"})
    data = fasta([(f"mine-{token}", "ACGTACGTAC")])
    ticket = as_alice.post("/uploads", json={"filename": "mine.fa", "size": len(data)}).raise_for_status().json()
    assert httpx.put(ticket["upload_url"], content=data).status_code == 200
    digest = pipeline.wait_for(ticket["id"])["collection_digest"]
    sequence = f"{keyed_refget}/sequence/{long_record['md5']}"
    assert httpx.get(sequence).status_code == 401
    assert httpx.get(sequence, headers={"Authorization": "Bearer gbk_wrong"}).status_code == 401
    assert httpx.get(sequence, headers={"Authorization": f"Bearer {bob}"}).status_code == 200  # any valid key reads
    listing = f"{keyed_refget}/list/collection"
    assert digest in httpx.get(listing, headers={"Authorization": f"Bearer {alice}"}).json()["results"]
    seen_by_bob = httpx.get(listing, headers={"Authorization": f"Bearer {bob}"}).json()
    assert digest not in seen_by_bob["results"] and seen_by_bob["pagination"]["total"] == 0
    collection = f"{keyed_refget}/collection/{digest}"
    assert httpx.get(collection, headers={"Authorization": f"Bearer {bob}"}).status_code == 404
    assert httpx.get(collection, headers={"Authorization": f"Bearer {pipeline.api_key}"}).status_code == 200  # admin

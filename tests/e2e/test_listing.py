"""An owner's uploads listed, labelled and registered idempotently, against the running stack:
the listing's filters and cursors, labels through to the status, the result document and the
refget collection, a labels patch, the same Idempotency-Key with the same and another request,
and another owner that never sees any of it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.postgres.keys import PostgresKeys
from shared.usecases.keys import create_key
from tests.conftest import Pipeline
from tests.helpers import download
from tests.problems import problem

pytestmark = pytest.mark.e2e


class Owner:
    """An owner of this module's own, with its key, talking to the run's intake."""

    def __init__(self, pipeline: Pipeline, name: str) -> None:
        self.name = name
        key = create_key(PostgresKeys.from_settings(pipeline.settings), name, admin=False)
        self.headers = {"Authorization": f"Bearer {key}"}
        self.http = httpx.Client(base_url=pipeline.settings.status_base_url, headers=self.headers, timeout=30)

    def upload(self, filename: str, data: bytes, **extra: Any) -> dict[str, Any]:
        ticket: dict[str, Any] = (
            self.http.post("/uploads", json={"filename": filename, "size": len(data), **extra})
            .raise_for_status()
            .json()
        )
        assert httpx.put(ticket["upload_url"], content=data, headers=ticket["upload_headers"]).status_code == 200
        return ticket

    def listed(self, **params: Any) -> dict[str, Any]:
        answer = self.http.get("/uploads", params=params)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body


@pytest.fixture(scope="module")
def owners(pipeline: Pipeline) -> Iterator[tuple[Owner, Owner]]:
    token = uuid.uuid4().hex[:8]
    alice, bob = Owner(pipeline, f"la-{token}"), Owner(pipeline, f"lb-{token}")
    yield alice, bob
    alice.http.close()
    bob.http.close()


@pytest.fixture(scope="module")
def labelled(pipeline: Pipeline, owners: tuple[Owner, Owner]) -> dict[str, Any]:
    """A FASTA of alice's registered with labels, taken to done."""
    alice, _ = owners
    ticket = alice.upload("sample-1.fa", b">chr1\nACGTACGTAA\n>chr2\nTTGG\n", labels={"sample": "NA1", "run": "7"})
    status = pipeline.wait_for(ticket["id"])
    assert status["state"] == "done", pipeline.logs()
    return status


def test_labels_reach_the_status_the_result_and_the_collection(
    pipeline: Pipeline, owners: tuple[Owner, Owner], labelled: dict[str, Any], refget_url: str
) -> None:
    alice, _ = owners
    assert labelled["labels"] == {"sample": "NA1", "run": "7"}
    document = download(labelled)
    assert document["labels"] == {"sample": "NA1", "run": "7"} and document["upload_id"] == labelled["id"]
    digest = labelled["collection_digest"]
    for level in (1, 2):
        collection = httpx.get(f"{refget_url}/collection/{digest}?level={level}", headers=alice.headers, timeout=30)
        assert collection.status_code == 200, collection.text
        assert collection.json()["labels"] == {"sample": "NA1", "run": "7"}
    schema = httpx.get(f"{refget_url}/service-info", timeout=30).json()["seqcol"]["schema"]
    assert schema["ga4gh"]["passthru"] == ["labels"]


def test_a_labels_patch_changes_the_status_and_the_listing_not_the_written_result(
    owners: tuple[Owner, Owner], labelled: dict[str, Any]
) -> None:
    alice, bob = owners
    path = f"/uploads/{labelled['id']}"
    patched = alice.http.patch(
        path,
        content=b'{"labels": {"run": null, "project": "p1"}}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["labels"] == {"sample": "NA1", "project": "p1"}
    assert alice.http.get(path).json()["labels"] == {"sample": "NA1", "project": "p1"}
    assert [u["id"] for u in alice.listed(label="project=p1")["uploads"]] == [labelled["id"]]
    assert download(alice.http.get(path).json())["labels"] == {"sample": "NA1", "run": "7"}  # as written
    assert bob.http.patch(path, json={"labels": {"x": "y"}}).status_code == 404
    refused = alice.http.patch(path, json={"labels": {"bad key": "v"}})
    assert refused.status_code == 422 and problem(refused)["code"] == "invalid_labels"


def test_the_listing_filters_and_pages_and_shows_no_other_owner_s(
    pipeline: Pipeline, owners: tuple[Owner, Owner], labelled: dict[str, Any]
) -> None:
    alice, bob = owners
    bad = alice.upload("broken.fa", b"no header here\n")
    failed = pipeline.wait_for(bad["id"])
    assert failed["state"] == "failed"
    waiting = alice.http.post("/uploads", json={"filename": "later.fa", "size": 3}).raise_for_status().json()
    bobs = bob.http.post("/uploads", json={"filename": "sample-b.fa", "size": 3, "labels": {"sample": "NA1"}}).json()
    everything = alice.listed()
    ids = [u["id"] for u in everything["uploads"]]
    assert ids == [waiting["id"], bad["id"], labelled["id"]] and everything["next_cursor"] is None
    assert bobs["id"] not in ids
    # one at a time, by cursor
    walked, cursor = [], None
    while True:
        page = alice.listed(limit=1, **({"cursor": cursor} if cursor else {}))
        walked += [u["id"] for u in page["uploads"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == ids
    by_state = alice.listed(state="failed")["uploads"]
    assert [u["id"] for u in by_state] == [bad["id"]] and by_state[0]["error_code"]
    assert [u["id"] for u in alice.listed(state=["done", "awaiting_upload"])["uploads"]] == [
        waiting["id"],
        labelled["id"],
    ]
    assert [u["id"] for u in alice.listed(name="sample-")["uploads"]] == [labelled["id"]]
    assert [u["id"] for u in alice.listed(label="sample=NA1")["uploads"]] == [labelled["id"]]
    assert alice.listed(created_after=everything["uploads"][0]["created_at"])["uploads"] == []
    done = alice.listed(state="done")["uploads"][0]
    assert (done["records"], done["format"], done["size"]) == (2, "fasta", len(b">chr1\nACGTACGTAA\n>chr2\nTTGG\n"))
    # bob sees his own only, and may not name alice; the admin may
    assert [u["id"] for u in bob.listed()["uploads"]] == [bobs["id"]]
    assert bob.http.get("/uploads", params={"owner": alice.name}).status_code == 403
    admin = pipeline.http.get("/uploads", params={"owner": alice.name}).json()
    assert [u["id"] for u in admin["uploads"]] == ids
    malformed = alice.http.get("/uploads", params={"cursor": "bm90IGEgY3Vyc29y"})
    assert malformed.status_code == 422 and problem(malformed)["code"] == "invalid_cursor"
    # the look-up by object has its own path
    found = alice.http.get("/uploads/lookup", params={"bucket": labelled["bucket"], "key": labelled["key"]})
    assert found.status_code == 200 and found.json()["id"] == labelled["id"]
    assert (
        bob.http.get("/uploads/lookup", params={"bucket": labelled["bucket"], "key": labelled["key"]}).status_code
        == 404
    )


def test_an_idempotency_key_registers_once_and_refuses_another_request(
    pipeline: Pipeline, owners: tuple[Owner, Owner]
) -> None:
    alice, bob = owners
    data = b">r\nACGT\n"
    body = {"filename": "idem.fa", "size": len(data), "labels": {"try": "1"}}
    key = {"Idempotency-Key": f"upload-{uuid.uuid4()}"}
    first = alice.http.post("/uploads", json=body, headers=key)
    assert first.status_code == 201, first.text
    again = alice.http.post("/uploads", json=body, headers=key)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    # the replayed URL works: the object goes in through it, once
    assert (
        httpx.put(again.json()["upload_url"], content=data, headers=again.json()["upload_headers"]).status_code == 200
    )
    assert pipeline.wait_for(first.json()["id"])["state"] == "done"
    other = alice.http.post("/uploads", json={**body, "labels": {"try": "2"}}, headers=key)
    assert other.status_code == 409 and problem(other)["code"] == "idempotency_key_reused"
    late = alice.http.post("/uploads", json=body, headers=key)
    assert late.status_code == 200 and late.json()["id"] == first.json()["id"] and late.json()["upload_url"] is None
    assert [u["id"] for u in alice.listed(label="try=1")["uploads"]] == [first.json()["id"]]
    theirs = bob.http.post("/uploads", json=body, headers=key)  # keys are per owner
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    invalid = alice.http.post("/uploads", json=body, headers={"Idempotency-Key": "x" * 256})
    assert invalid.status_code == 422 and problem(invalid)["code"] == "invalid_idempotency_key"

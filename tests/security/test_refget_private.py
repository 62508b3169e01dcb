"""refget is private by default: every read needs a key, and a key reads its owner's uploads only.

Against the stack's own refget process (no setting: the default). Another owner's sequence or
collection answers exactly as one that does not exist; a sequence two owners both uploaded is
readable by each, under the names of their own uploads only.
"""

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
from shared.usecases.keys import create_key, revoke_key
from tests.conftest import Pipeline
from tests.problems import problem

pytestmark = pytest.mark.e2e


def _fasta(records: list[tuple[str, str]]) -> bytes:
    return b"".join(f">{name}\n{seq}\n".encode() for name, seq in records)


def _upload(pipeline: Pipeline, key: str, filename: str, data: bytes) -> dict[str, Any]:
    owner = httpx.Client(base_url=pipeline.settings.status_base_url, headers={"Authorization": f"Bearer {key}"})
    ticket = owner.post("/uploads", json={"filename": filename, "size": len(data)}).raise_for_status().json()
    assert httpx.put(ticket["upload_url"], content=data, headers=ticket.get("upload_headers") or {}).status_code == 200
    status = pipeline.wait_for(ticket["id"])
    assert status["state"] == "done", status
    return status


@pytest.fixture(scope="module")
def owners(pipeline: Pipeline) -> Iterator[dict[str, Any]]:
    """Alice's upload holds a sequence of her own and one she shares with Bob's upload."""
    token = uuid.uuid4().hex[:6]
    store = PostgresKeys.from_settings(pipeline.settings)
    alice, bob, gone = (create_key(store, f"{who}-{token}", admin=False) for who in ("pa", "pb", "pg"))
    revoke_key(store, f"pg-{token}")
    rng = random.Random(token)
    own, shared = ("".join(rng.choice("ACGT") for _ in range(300)) for _ in range(2))
    alice_status = _upload(pipeline, alice, "alice.fa", _fasta([(f"own-{token}", own), (f"a-shared-{token}", shared)]))
    bob_status = _upload(pipeline, bob, "bob.fa", _fasta([(f"b-shared-{token}", shared)]))
    yield {
        "keys": {"alice": alice, "bob": bob, "admin": pipeline.api_key, "revoked": gone},
        "own": hashlib.md5(own.encode()).hexdigest(),
        "own_sq": "SQ." + sha512t24u(own.encode()),
        "shared": hashlib.md5(shared.encode()).hexdigest(),
        "token": token,
        "alice_collection": alice_status["collection_digest"],
        "bob_collection": bob_status["collection_digest"],
    }


def _as(owners: dict[str, Any], who: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {owners['keys'][who]}"} if who else {}


def _read_routes(owners: dict[str, Any]) -> list[tuple[str, str]]:
    digest = owners["alice_collection"]
    return [
        ("GET", f"/sequence/{owners['own']}"),
        ("GET", f"/sequence/{owners['own']}/metadata"),
        ("GET", f"/collection/{digest}"),
        ("GET", f"/attribute/collection/names/{digest}"),
        ("GET", f"/comparison/{digest}/{owners['bob_collection']}"),
        ("GET", "/list/collection"),
        ("GET", "/list/attributes/names"),
        ("POST", f"/comparison/{digest}"),
    ]


@pytest.mark.parametrize("who", [None, "wrong", "revoked"])
def test_every_read_needs_a_valid_key(refget_url: str, owners: dict[str, Any], who: str | None) -> None:
    headers = {"Authorization": "Bearer gbk_not-a-key"} if who == "wrong" else _as(owners, who)
    for method, path in _read_routes(owners):
        extra: dict[str, Any] = {"json": {"names": ["x"]}} if method == "POST" else {}
        answer = httpx.request(method, f"{refget_url}{path}", headers=headers, timeout=30, **extra)
        assert answer.status_code == 401, (method, path, answer.text)
        assert answer.json()["code"] == "unauthorized"
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_service_info_and_health_stay_public(refget_url: str) -> None:
    for path in ("/healthz", "/service-info", "/sequence/service-info", "/openapi.json"):
        assert httpx.get(f"{refget_url}{path}", timeout=30).status_code == 200, path


def test_another_owners_sequence_is_not_found_exactly_as_an_unknown_one(
    refget_url: str,
    owners: dict[str, Any],
) -> None:
    unknown = "0" * 32
    for sequence_id in (owners["own"], owners["own_sq"]):
        for suffix in ("", "/metadata"):
            accept = {"Accept": "application/json"} if suffix else {}
            theirs = httpx.get(f"{refget_url}/sequence/{sequence_id}{suffix}", headers={**_as(owners, "bob"), **accept})
            nothing = httpx.get(f"{refget_url}/sequence/{unknown}{suffix}", headers={**_as(owners, "bob"), **accept})
            assert theirs.status_code == nothing.status_code == 404
            assert problem(theirs) == {**problem(nothing), "detail": f"no sequence {sequence_id}"}
            mine = httpx.get(f"{refget_url}/sequence/{sequence_id}{suffix}", headers={**_as(owners, "alice"), **accept})
            assert mine.status_code == 200
            admin = httpx.get(
                f"{refget_url}/sequence/{sequence_id}{suffix}", headers={**_as(owners, "admin"), **accept}
            )
            assert admin.status_code == 200


def test_a_sequence_two_owners_uploaded_is_readable_by_each_under_their_own_names(
    refget_url: str,
    owners: dict[str, Any],
) -> None:
    token = owners["token"]
    url = f"{refget_url}/sequence/{owners['shared']}"
    names = {}
    for who in ("alice", "bob", "admin"):
        assert httpx.get(url, headers=_as(owners, who), params={"start": 0, "end": 10}).status_code == 200
        metadata = httpx.get(f"{url}/metadata", headers=_as(owners, who)).json()["metadata"]
        names[who] = {alias["alias"] for alias in metadata["aliases"]}
    assert names["alice"] == {f"a-shared-{token}"}
    assert names["bob"] == {f"b-shared-{token}"}
    assert {f"a-shared-{token}", f"b-shared-{token}"} <= names["admin"]


def test_collections_are_listed_and_served_for_their_owner_only(
    refget_url: str,
    owners: dict[str, Any],
) -> None:
    alice_digest, bob_digest = owners["alice_collection"], owners["bob_collection"]
    listed = {
        who: httpx.get(f"{refget_url}/list/collection", headers=_as(owners, who), params={"page_size": 1000}).json()
        for who in ("alice", "bob", "admin")
    }
    assert listed["alice"]["results"] == [alice_digest] and listed["alice"]["pagination"]["total"] == 1
    assert listed["bob"]["results"] == [bob_digest]
    assert {alice_digest, bob_digest} <= set(listed["admin"]["results"])
    names = httpx.get(f"{refget_url}/list/attributes/names", headers=_as(owners, "bob")).json()
    assert names["pagination"]["total"] == 1
    unknown = "A" * 32
    names_digest = httpx.get(
        f"{refget_url}/collection/{alice_digest}", params={"level": 1}, headers=_as(owners, "alice")
    ).json()["names"]
    for path, digest in (
        ("/collection/{}", alice_digest),
        ("/attribute/collection/names/{}", names_digest),
        (f"/comparison/{{}}/{bob_digest}", alice_digest),
    ):
        theirs = httpx.get(f"{refget_url}{path.format(digest)}", headers=_as(owners, "bob"))
        nothing = httpx.get(f"{refget_url}{path.format(unknown)}", headers=_as(owners, "bob"))
        assert theirs.status_code == nothing.status_code == 404, path
        assert theirs.json()["code"] == nothing.json()["code"] == "not_found"
        assert httpx.get(f"{refget_url}{path.format(digest)}", headers=_as(owners, "admin")).status_code == 200
    posted = httpx.post(f"{refget_url}/comparison/{alice_digest}", headers=_as(owners, "bob"), json={"names": []})
    assert posted.status_code == 404


def test_public_reading_is_an_explicit_setting(public_refget_url: str, owners: dict[str, Any]) -> None:
    assert httpx.get(f"{public_refget_url}/sequence/{owners['own']}").status_code == 200
    listed = httpx.get(f"{public_refget_url}/list/collection", params={"page_size": 1000}).json()["results"]
    assert {owners["alice_collection"], owners["bob_collection"]} <= set(listed)

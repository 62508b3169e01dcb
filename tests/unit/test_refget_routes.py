"""The refget routes over in-memory read ports (``tests/unit/fakes_reads.py``): each route's
branches, status codes, media types and error bodies, without a database."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient

from services.refget.api import V2_JSON, V2_TEXT, ReadPorts, build_app
from shared.domain.access import Caller
from shared.domain.reads import READ_PARTS, read_spans
from shared.runtime.settings import Settings
from shared.usecases import refget as reads
from shared.usecases.refget import Reader
from shared.web.guard import Unauthorized
from tests.problems import problem
from tests.unit.fakes_reads import FakeReads, FakeRecord, collection_of, md5_of, refget_of

KEYS = {
    "alice-key": Caller("alice", admin=False),
    "bob-key": Caller("bob", admin=False),
    "root-key": Caller("root", admin=True),
}
RESIDUES = "ACGTacgtNNacgtACGTac"  # 20, stored mixed case
RING = "GATTACAgattaca"  # 14, circular


def keys(header: str | None) -> Reader:
    """The key check: a bearer key of ``KEYS``, else 401."""
    scheme, _, key = (header or "").partition(" ")
    if scheme.lower() != "bearer" or key not in KEYS:
        raise Unauthorized("the API key is not valid")
    return KEYS[key]


def public(_header: str | None) -> Reader:
    """Public reading: no key asked for, every owner's uploads seen."""
    return None


def client(fake: FakeReads, *, public_reading: bool = False, **settings: int) -> TestClient:
    app = build_app(
        Settings(refget_public=public_reading, **settings),  # type: ignore[arg-type]
        ReadPorts(sequences=fake, collections=fake, health=fake),
        public if public_reading else keys,
    )
    return TestClient(app)


def as_(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


ALICE, BOB, ROOT = as_("alice-key"), as_("bob-key"), as_("root-key")


@pytest.fixture
def fake() -> FakeReads:
    store = FakeReads()
    store.add_upload([("chr1", RESIDUES), ("chr2", "ACGT")], owner="alice", part_size=4, labels={"sample": "s1"})
    store.add_upload([("ring", RING)], owner="alice", circular=True)
    store.add_upload([("theirs", "TTTTGGGG")], owner="bob")
    return store


def detail(code: str, message: str) -> dict[str, str]:
    """What ``problem`` leaves of a refusal's answer."""
    return {"code": code, "detail": message}


# --- sequences ----------------------------------------------------------------------------------------


def test_sequence_service_info_says_circular_and_both_digests(fake: FakeReads) -> None:
    response = client(fake).get("/sequence/service-info", headers=ALICE)
    assert response.status_code == 200
    body = response.json()
    assert body["refget"]["circular_supported"] is True and body["refget"]["algorithms"] == ["md5", "ga4gh"]
    assert body["service"]["supported_api_versions"] == ["1.0", "2.0"]


@pytest.mark.parametrize(
    "identifier",
    [md5_of(RESIDUES), md5_of(RESIDUES).upper(), f"md5:{md5_of(RESIDUES)}", refget_of(RESIDUES),
     f"ga4gh:{refget_of(RESIDUES)}"],
)  # fmt: skip
def test_a_sequence_is_served_whole_upper_cased_by_any_of_its_identifiers(fake: FakeReads, identifier: str) -> None:
    response = client(fake).get(f"/sequence/{identifier}", headers=ALICE)
    assert response.status_code == 200
    assert response.content == RESIDUES.upper().encode()
    assert response.headers["content-type"] == f"{V2_TEXT}; charset=us-ascii"
    assert response.headers["content-length"] == "20" and response.headers["accept-ranges"] == "bytes"
    assert "content-range" not in response.headers


def test_a_sequence_streams_span_by_span(fake: FakeReads) -> None:
    """Each span is one read of the store, of at most READ_PARTS parts (parts of 4 here)."""
    assert client(fake).get(f"/sequence/{md5_of(RESIDUES)}", headers=ALICE).status_code == 200
    assert len(fake.span_reads) == 3  # 5 parts of 4, two at a time
    assert all(span.last_part - span.first_part < READ_PARTS for span in fake.span_reads)


def test_the_use_case_reads_a_span_only_when_the_client_wants_its_residues(fake: FakeReads) -> None:
    found = reads.find_sequence(fake, md5_of(RESIDUES), Caller("alice", admin=False))
    body = reads.residues(fake, found, 0, 20, wraps=False)
    assert fake.span_reads == []
    first = next(body)
    assert (first, len(fake.span_reads)) == (b"ACGT", 1)
    assert b"".join([first, *body]) == RESIDUES.upper().encode()
    assert fake.span_reads == read_spans(found, 0, 20)


@pytest.mark.parametrize(
    ("identifier", "asked"),
    [
        (md5_of("NOPE"), 1),  # a digest nobody stored
        (refget_of("NOPE"), 1),
        ("not-a-digest", 0),  # never asked: it cannot be one
        ("SQ.short", 0),
        ("g" * 32, 0),
        ("%00" * 32, 0),  # NUL bytes: never handed to the store
    ],
)
def test_an_unknown_sequence_is_404(fake: FakeReads, identifier: str, asked: int) -> None:
    response = client(fake).get(f"/sequence/{identifier}", headers=ALICE)
    assert response.status_code == 404
    assert problem(response) == detail("not_found", f"no sequence {unquote(identifier)[:80]}")
    assert len(fake.finds) == asked


def test_another_owners_sequence_is_404_as_if_absent_and_an_admin_or_the_public_sees_it(fake: FakeReads) -> None:
    theirs = md5_of("TTTTGGGG")
    assert client(fake).get(f"/sequence/{theirs}", headers=ALICE).status_code == 404
    assert client(fake).get(f"/sequence/{theirs}", headers=BOB).content == b"TTTTGGGG"
    assert client(fake).get(f"/sequence/{theirs}", headers=ROOT).content == b"TTTTGGGG"
    assert client(fake, public_reading=True).get(f"/sequence/{theirs}").content == b"TTTTGGGG"


def test_a_read_without_a_valid_key_is_401_unless_reads_are_public(fake: FakeReads) -> None:
    for headers in ({}, as_("nobody")):
        response = client(fake).get(f"/sequence/{md5_of(RESIDUES)}", headers=headers)
        assert response.status_code == 401
    assert fake.finds == []


@pytest.mark.parametrize(
    ("query", "headers", "status", "body", "content_range"),
    [
        ("?start=2&end=9", {}, 200, RESIDUES[2:9], None),
        ("?start=19", {}, 200, RESIDUES[19:], None),
        ("?end=3", {}, 200, RESIDUES[:3], None),
        ("?start=5&end=5", {}, 200, "", None),
        ("", {"Range": "bytes=3-10"}, 206, RESIDUES[3:11], "bytes 3-10/20"),
        ("", {"Range": "bytes=15-99"}, 206, RESIDUES[15:], "bytes 15-19/20"),  # cut at the end
    ],
)
def test_a_slice_by_query_or_by_range(
    fake: FakeReads, query: str, headers: dict[str, str], status: int, body: str, content_range: str | None
) -> None:
    response = client(fake).get(f"/sequence/{md5_of(RESIDUES)}{query}", headers={**ALICE, **headers})
    assert response.status_code == status
    assert response.content == body.upper().encode()
    assert response.headers["content-length"] == str(len(body))
    assert response.headers.get("content-range") == content_range


def test_a_circular_sequence_reads_across_its_origin(fake: FakeReads) -> None:
    response = client(fake).get(f"/sequence/{md5_of(RING)}?start=10&end=3", headers=ALICE)
    assert response.status_code == 200
    assert response.content == (RING[10:] + RING[:3]).upper().encode()
    assert response.headers["content-length"] == "7"


@pytest.mark.parametrize(
    ("query", "headers", "status", "code"),
    [
        ("?start=20", {}, 416, "range_not_satisfiable"),
        ("?end=21", {}, 416, "range_not_satisfiable"),
        ("?start=9&end=3", {}, 416, "range_not_satisfiable"),  # not circular
        ("", {"Range": "bytes=20-25"}, 416, "range_not_satisfiable"),
        ("", {"Range": "bytes=5-2"}, 416, "range_not_satisfiable"),
        ("?start=-1", {}, 400, "bad_request"),
        ("?start=x", {}, 400, "bad_request"),
        ("", {"Range": "bytes=1-"}, 400, "bad_request"),
        ("?start=1", {"Range": "bytes=1-2"}, 400, "bad_request"),
    ],
)
def test_slices_that_cannot_be_served(
    fake: FakeReads, query: str, headers: dict[str, str], status: int, code: str
) -> None:
    response = client(fake).get(f"/sequence/{md5_of(RESIDUES)}{query}", headers={**ALICE, **headers})
    assert response.status_code == status
    assert response.json()["code"] == code
    assert fake.span_reads == []


@pytest.mark.parametrize(
    ("accept", "media"),
    [
        (None, V2_TEXT),
        ("text/plain", "text/plain"),
        ("text/vnd.ga4gh.refget.v1.0.0+plain", V2_TEXT),
        ("application/json;q=1, text/*;q=0.5", V2_TEXT),
        ("*/*", V2_TEXT),
    ],
)
def test_a_sequence_in_the_media_type_accepted(fake: FakeReads, accept: str | None, media: str) -> None:
    headers = ALICE if accept is None else {**ALICE, "Accept": accept}
    response = client(fake).get(f"/sequence/{md5_of('ACGT')}", headers=headers)
    assert response.status_code == 200 and response.headers["content-type"] == f"{media}; charset=us-ascii"


def test_a_sequence_in_json_is_406_before_any_read(fake: FakeReads) -> None:
    response = client(fake).get(f"/sequence/{md5_of('ACGT')}", headers={**ALICE, "Accept": "application/json"})
    assert response.status_code == 406
    assert problem(response) == detail("not_acceptable", f"this endpoint answers {V2_TEXT} or text/plain")
    assert fake.finds == []


def test_metadata_names_the_sequence_as_the_reader_sees_it(fake: FakeReads) -> None:
    fake.add_upload([("copy-a", RESIDUES)], owner="alice")
    fake.add_upload([("copy-b", RESIDUES)], owner="bob")
    response = client(fake).get(f"/sequence/{refget_of(RESIDUES)}/metadata", headers=ALICE)
    assert response.status_code == 200 and response.headers["content-type"] == V2_JSON
    assert response.json() == {
        "metadata": {
            "md5": md5_of(RESIDUES),
            "ga4gh": refget_of(RESIDUES),
            "length": 20,
            "aliases": [{"alias": n, "naming_authority": "genobase"} for n in ("chr1", "copy-a")],
        }
    }
    everyone = client(fake).get(f"/sequence/{refget_of(RESIDUES)}/metadata", headers=ROOT).json()
    assert [a["alias"] for a in everyone["metadata"]["aliases"]] == ["chr1", "copy-a", "copy-b"]


@pytest.mark.parametrize(
    ("accept", "status", "media"),
    [
        ("application/json", 200, "application/json"),
        ("application/vnd.ga4gh.refget.v1.0.0+json", 200, V2_JSON),
        ("application/*", 200, V2_JSON),
        ("text/plain", 406, None),
    ],
)
def test_metadata_in_the_media_type_accepted(fake: FakeReads, accept: str, status: int, media: str | None) -> None:
    response = client(fake).get(f"/sequence/{md5_of('ACGT')}/metadata", headers={**ALICE, "Accept": accept})
    assert response.status_code == status
    if media is None:
        assert problem(response) == detail("not_acceptable", f"this endpoint answers {V2_JSON} or application/json")
    else:
        assert response.headers["content-type"] == media


def test_metadata_of_another_owners_sequence_is_404(fake: FakeReads) -> None:
    response = client(fake).get(f"/sequence/{md5_of('TTTTGGGG')}/metadata", headers=ALICE)
    assert response.status_code == 404
    assert problem(response) == detail("not_found", f"no sequence {md5_of('TTTTGGGG')}")


# --- sequence collections ------------------------------------------------------------------------------

FIRST = [FakeRecord("chr1", RESIDUES), FakeRecord("chr2", "ACGT")]
COLLECTION = collection_of(FIRST)
THEIRS = collection_of([FakeRecord("theirs", "TTTTGGGG")])
LEVEL2 = {
    "lengths": [20, 4],
    "name_length_pairs": [{"length": 20, "name": "chr1"}, {"length": 4, "name": "chr2"}],
    "names": ["chr1", "chr2"],
    "sequences": [r.refget for r in FIRST],
    "sorted_sequences": sorted(r.refget for r in FIRST),
    "labels": {"sample": "s1"},  # passthru: the upload's labels, at every level
}


def test_seqcol_service_info_carries_the_schema(fake: FakeReads) -> None:
    body = client(fake).get("/service-info", headers=ALICE).json()
    assert body["seqcol"]["sorted_name_length_pairs"] is True and "properties" in body["seqcol"]["schema"]
    schema = body["seqcol"]["schema"]
    assert schema["properties"]["labels"]["type"] == "object" and schema["ga4gh"]["passthru"] == ["labels"]
    assert "labels" not in schema["ga4gh"]["inherent"]  # never digested


def test_a_collection_at_level_1_and_2(fake: FakeReads) -> None:
    http = client(fake)
    level1 = {**COLLECTION.level1(), "labels": {"sample": "s1"}}
    assert http.get(f"/collection/{COLLECTION.digest}?level=1", headers=ALICE).json() == level1
    assert http.get(f"/collection/{COLLECTION.digest}", headers=ALICE).json() == LEVEL2
    assert http.get(f"/collection/{COLLECTION.digest}?level=2", headers=ALICE).json() == LEVEL2
    refused = http.get(f"/collection/{COLLECTION.digest}?level=3", headers=ALICE)
    assert refused.status_code == 422 and refused.json()["code"] == "invalid_request"


def test_public_reading_serves_a_collection_without_its_owner_s_labels(fake: FakeReads) -> None:
    body = client(fake, public_reading=True).get(f"/collection/{COLLECTION.digest}").json()
    assert body == {**LEVEL2, "labels": {}}  # the sequences are public; what the owner says of them is not


@pytest.mark.parametrize(("digest", "asked"), [(THEIRS.digest, 1), ("A" * 32, 1), ("short", 0), ("*" * 32, 0)])
def test_a_collection_not_seen_is_404(fake: FakeReads, digest: str, asked: int) -> None:
    response = client(fake).get(f"/collection/{digest}", headers=ALICE)
    assert response.status_code == 404 and problem(response) == detail("not_found", f"no collection {digest}")
    assert len(fake.finds) == asked


def test_level_2_of_a_collection_too_large_is_413_and_level_1_is_served(fake: FakeReads) -> None:
    by_count = client(fake, seqcol_max_elements=1)
    response = by_count.get(f"/collection/{COLLECTION.digest}", headers=ALICE)
    assert response.status_code == 413
    assert problem(response) == detail(
        "collection_too_large", "collections above 1 sequences are served at level 1 only"
    )
    assert by_count.get(f"/collection/{COLLECTION.digest}?level=1", headers=ALICE).status_code == 200
    by_names = client(fake, seqcol_max_post_bytes=7)  # "chr1" + "chr2": 8 bytes
    response = by_names.get(f"/collection/{COLLECTION.digest}", headers=ALICE)
    assert response.status_code == 413
    assert problem(response) == detail(
        "collection_too_large", "collections whose names exceed 7 bytes are served at level 1 only"
    )
    assert client(fake, seqcol_max_post_bytes=8).get(f"/collection/{COLLECTION.digest}", headers=ALICE).json() == LEVEL2


def test_an_attribute_by_its_digest(fake: FakeReads) -> None:
    http = client(fake)
    for name in ("names", "lengths", "sequences", "name_length_pairs", "sorted_sequences"):
        response = http.get(f"/attribute/collection/{name}/{getattr(COLLECTION, name)}", headers=ALICE)
        assert response.status_code == 200 and response.json() == LEVEL2[name], name


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("sorted_name_length_pairs/{snlp}", "no attribute sorted_name_length_pairs"),  # transient: never alone
        ("colour/{names}", "no attribute colour"),
        ("lengths/{names}", "no lengths {names}"),  # another attribute's digest
        ("names/{theirs}", "no names {theirs}"),
        ("names/short", "no names short"),
    ],
)
def test_an_attribute_not_served_is_404(fake: FakeReads, path: str, message: str) -> None:
    values = {"snlp": COLLECTION.sorted_name_length_pairs, "names": COLLECTION.names, "theirs": THEIRS.names}
    response = client(fake).get("/attribute/collection/" + path.format(**values), headers=ALICE)
    assert response.status_code == 404 and problem(response) == detail("not_found", message.format(**values))


def test_two_stored_collections_compared(fake: FakeReads) -> None:
    fake.add_upload([("chr1", RESIDUES)], owner="alice")
    other = collection_of([FakeRecord("chr1", RESIDUES)])
    body = client(fake).get(f"/comparison/{COLLECTION.digest}/{other.digest}", headers=ALICE).json()
    assert body["digests"] == {"a": COLLECTION.digest, "b": other.digest}
    assert body["attributes"]["a_and_b"] and body["array_elements"]["a_count"]["names"] == 2
    missing = client(fake).get(f"/comparison/{COLLECTION.digest}/{THEIRS.digest}", headers=ALICE)
    assert missing.status_code == 404 and problem(missing) == detail("not_found", f"no collection {THEIRS.digest}")
    first_too_large = client(fake, seqcol_max_elements=1).get(
        f"/comparison/{COLLECTION.digest}/{THEIRS.digest}", headers=ALICE
    )
    assert first_too_large.status_code == 413  # a is read before b is looked for


def test_a_stored_collection_compared_with_a_posted_one(fake: FakeReads) -> None:
    posted = {"names": ["chr1"], "lengths": [20]}
    response = client(fake).post(f"/comparison/{COLLECTION.digest}", json=posted, headers=ALICE)
    assert response.status_code == 200
    body = response.json()
    assert body["digests"] == {"a": COLLECTION.digest, "b": "POSTed seqcol"}
    assert body["array_elements"]["a_and_b_count"]["names"] == 1


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"[1, 2]", 400, "bad_request"),
        (b"not json", 400, "bad_request"),
        (b'{"names": "chr1"}', 400, "bad_request"),
        (b'{"names": ["' + b"n" * 70 + b'"]}', 413, "request_too_large"),  # over the body's bytes
        (b'{"a": [[[["deep"]]]]}', 400, "too_deep"),  # over the nesting
    ],
)
def test_a_posted_collection_refused_before_any_read(fake: FakeReads, content: bytes, status: int, code: str) -> None:
    http = client(fake, seqcol_max_post_bytes=64)
    response = http.post(f"/comparison/{COLLECTION.digest}", content=content, headers=ALICE)
    assert response.status_code == status and response.json()["code"] == code
    assert fake.finds == []


def test_a_posted_collection_with_an_element_too_long_is_413(fake: FakeReads) -> None:
    long_name = {"names": ["n" * (Settings().max_header_bytes + 1)]}
    response = client(fake).post(f"/comparison/{COLLECTION.digest}", json=long_name, headers=ALICE)
    assert response.status_code == 413 and response.json()["code"] == "element_too_large"


def test_a_posted_body_without_a_key_is_401_unread(fake: FakeReads) -> None:
    response = client(fake).post(f"/comparison/{COLLECTION.digest}", json={"names": []})
    assert response.status_code == 401 and fake.finds == []


def test_a_posted_collection_against_a_stored_one_not_seen_is_404(fake: FakeReads) -> None:
    response = client(fake).post(f"/comparison/{THEIRS.digest}", json={"names": []}, headers=ALICE)
    assert response.status_code == 404 and problem(response) == detail("not_found", f"no collection {THEIRS.digest}")


def _listing(http: TestClient, path: str, headers: dict[str, str]) -> Callable[[str], dict[str, object]]:
    def get(query: str) -> dict[str, object]:
        response = http.get(f"{path}{query}", headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        return body

    return get


def test_collections_listed_by_page_and_filtered(fake: FakeReads) -> None:
    fake.add_upload([("chr1", "AAAA")], owner="alice")
    single = collection_of([FakeRecord("chr1", "AAAA")])
    ring = collection_of([FakeRecord("ring", RING)])
    mine = sorted([COLLECTION.digest, single.digest, ring.digest])
    listing = _listing(client(fake), "/list/collection", ALICE)
    assert listing("") == {"results": mine, "pagination": {"page": 0, "page_size": 100, "total": 3}}
    assert listing("?page=1&page_size=2") == {
        "results": mine[2:],
        "pagination": {"page": 1, "page_size": 2, "total": 3},
    }
    assert listing(f"?names={single.names}")["results"] == [single.digest]
    assert listing(f"?names={single.names}&lengths={COLLECTION.lengths}")["results"] == []
    assert listing(f"?sorted_name_length_pairs={ring.sorted_name_length_pairs}")["results"] == [ring.digest]
    assert listing(f"?colour=x&names={single.names}")["results"] == [single.digest]  # not an attribute: ignored
    not_a_digest = listing("?names=chr1")
    assert not_a_digest == {"results": [], "pagination": {"page": 0, "page_size": 100, "total": 0}}
    everyone = _listing(client(fake), "/list/collection", ROOT)("")
    assert everyone["results"] == sorted([*mine, THEIRS.digest])


@pytest.mark.parametrize("query", ["?page=-1", "?page=1000001", "?page_size=0", "?page_size=1001", "?page=x"])
def test_a_page_out_of_bounds_is_422(fake: FakeReads, query: str) -> None:
    response = client(fake).get(f"/list/collection{query}", headers=ALICE)
    assert response.status_code == 422 and response.json()["code"] == "invalid_request"


def test_an_attributes_digests_listed(fake: FakeReads) -> None:
    listing = _listing(client(fake), "/list/attributes/names", ALICE)
    ring = collection_of([FakeRecord("ring", RING)])
    names = sorted([COLLECTION.names, ring.names])
    assert listing("") == {"results": names, "pagination": {"page": 0, "page_size": 100, "total": 2}}
    assert listing("?page_size=1&page=1")["results"] == names[1:]
    for attribute in ("colour", "sorted_name_length_pairs"):
        response = client(fake).get(f"/list/attributes/{attribute}", headers=ALICE)
        assert response.status_code == 404 and problem(response) == detail("not_found", f"no attribute {attribute}")


# --- the rest --------------------------------------------------------------------------------------------


def test_health_is_the_stores(fake: FakeReads) -> None:
    assert client(fake).get("/healthz").json() == {"status": "ok"}
    fake.healthy = False
    failing = TestClient(client(fake).app, raise_server_exceptions=False)
    assert failing.get("/healthz").status_code == 500


def test_an_unknown_route_answers_in_the_routes_shape(fake: FakeReads) -> None:
    response = client(fake).get("/nowhere", headers=ALICE)
    assert response.status_code == 404 and problem(response) == detail("not_found", "nothing is served at this path")


def test_the_digests_of_the_fake_are_the_specifications() -> None:
    """md5 and the GA4GH digest of the upper-cased residues, as the parser computes them."""
    assert md5_of("acgt") == hashlib.md5(b"ACGT").hexdigest()
    assert refget_of("ACGT") == "SQ.aKF498dAxcJAqme6QYQ7EZ07-fiw8Kw2"

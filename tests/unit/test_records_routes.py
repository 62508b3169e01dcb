"""The result redirect and the records routes (``services/intake/records.py``) over the fakes: paging,
fields, name prefixes, NDJSON, cursors, refusals, and how much a page reads at a time."""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.intake.api import IntakeDeps
from services.intake.app import build_app
from shared.domain.access import Caller
from shared.domain.reads import RECORD_GROUP_BYTES, RecordsChanged
from shared.domain.record_schema import RECORD_KEYS, Part, Record
from shared.domain.uploads import State
from shared.runtime.settings import Settings
from shared.usecases.records import decode_cursor, encode_cursor, records_page
from shared.usecases.uploads import Intake
from tests.builders import record
from tests.problems import problem
from tests.unit.fakes import STORE, FakeObjects, FakeUploads, make_upload
from tests.unit.fakes_records import FakeRecords

OWNER = Caller("tester", admin=False)


@dataclass
class Served:
    client: TestClient
    uploads: FakeUploads
    records: FakeRecords
    intake: Intake


def served(caller: Caller = OWNER, uploads: FakeUploads | None = None) -> Served:
    uploads, objects = uploads or FakeUploads(), FakeObjects()
    records = FakeRecords(uploads)
    intake = Intake(Settings(presign_ttl_seconds=600), uploads, objects)
    deps = IntakeDeps(intake, lambda header: caller, {}, records=records)
    return Served(TestClient(build_app(deps), raise_server_exceptions=False), uploads, records, intake)


def fasta_records(count: int) -> list[Record]:
    return [
        record(
            n, line_number=2 * n + 1, gene_name=f"chr{n} sample {n}", seq_id=f"chr{n}", description=f"sample {n}",
            length=4, residues="ACgT", md5=f"md5-{n}", refget=f"SQ.{n}",
        )
        for n in range(count)
    ]  # fmt: skip


def add_done(
    at: Served,
    records: list[Record],
    parts: list[Part] | None = None,
    *,
    owner: str = "tester",
    state: State = State.DONE,
) -> uuid.UUID:
    upload = make_upload(
        id=uuid.uuid4(), owner=owner, state=state, generation=1, result_bucket="results", result_key="r.json",
        result_size=10, result_records=len(records),
    )  # fmt: skip
    at.uploads.add(upload)
    at.uploads.records[upload.id] = list(records)
    at.uploads.parts[upload.id] = list(parts or [])
    return upload.id


def expected(r: Record, sequence: str | None = None) -> dict[str, Any]:
    """A record as the result document shows it."""
    shown: dict[str, Any] = {
        "ordinal": r.ordinal, "line_number": r.line_number, "gene_name": r.gene_name, "id": r.seq_id,
        "description": r.description, "length": r.length, "md5": r.md5, "refget": r.refget,
    }  # fmt: skip
    if r.attributes is not None:
        shown["attributes"] = r.attributes
    shown["sequence"] = r.residues if sequence is None else sequence
    if r.quality is not None:
        shown["quality"] = r.quality
    return shown


# --- the result document ---------------------------------------------------------------------------


def test_result_redirects_to_a_fresh_signed_link_never_cached() -> None:
    at = served()
    upload_id = add_done(at, fasta_records(1))
    response = at.client.get(f"/uploads/{upload_id}/result", follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == f"{STORE}/results/r.json?get&ttl=600"
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("state", [State.AWAITING_UPLOAD, State.PARSING, State.ASSEMBLING, State.FAILED])
def test_no_result_before_done(state: State) -> None:
    at = served()
    upload_id = add_done(at, [], state=state)
    response = at.client.get(f"/uploads/{upload_id}/result", follow_redirects=False)
    assert response.status_code == 409 and problem(response)["code"] == "result_not_ready"


def test_another_owner_s_upload_is_404_like_a_missing_one() -> None:
    at = served()
    theirs = add_done(at, fasta_records(2), owner="someone-else")
    for path in ("result", "records", "records/0"):
        other = at.client.get(f"/uploads/{theirs}/{path}", follow_redirects=False)
        missing = at.client.get(f"/uploads/{uuid.uuid4()}/{path}", follow_redirects=False)
        assert other.status_code == missing.status_code == 404, path
        assert problem(other) == {"code": "not_found", "detail": f"no upload {theirs}"}
    assert at.records.reads == []
    admin = served(Caller("root", admin=True), at.uploads)
    assert admin.client.get(f"/uploads/{theirs}/records").status_code == 200


# --- paging --------------------------------------------------------------------------------------------


def test_pages_of_two_in_json_cover_every_record_once() -> None:
    at = served()
    stored = fasta_records(5)
    upload_id = add_done(at, stored)
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = at.client.get(f"/uploads/{upload_id}/records", params=params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        seen += body["records"]
        pages += 1
        cursor = body["next_cursor"]
        assert ("link" in response.headers) == (cursor is not None)
        if cursor is None:
            break
        assert response.headers["link"].endswith('>; rel="next"') and f"cursor={cursor}" in response.headers["link"]
    assert pages == 3
    assert seen == [expected(r) for r in stored]
    assert list(seen[0]) == [k for k in RECORD_KEYS if k not in ("attributes", "quality")]  # the document's order


def test_ndjson_pages_follow_the_link_header() -> None:
    at = served()
    stored = fasta_records(5)
    upload_id = add_done(at, stored)
    url: str | None = f"/uploads/{upload_id}/records?limit=2"
    lines: list[dict[str, Any]] = []
    while url is not None:
        response = at.client.get(url, headers={"Accept": "application/x-ndjson"})
        assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
        assert response.text.endswith("\n")
        lines += [json.loads(line) for line in response.text.splitlines()]
        link = response.headers.get("link")
        url = link[1 : link.index(">")] if link else None
    assert lines == [expected(r) for r in stored]


def test_an_empty_done_upload_is_one_empty_page() -> None:
    at = served()
    upload_id = add_done(at, [])
    assert at.client.get(f"/uploads/{upload_id}/records").json() == {"records": [], "next_cursor": None}
    assert at.client.get(f"/uploads/{upload_id}/records", headers={"Accept": "application/x-ndjson"}).text == ""


def test_name_prefix_and_fields() -> None:
    at = served()
    stored = [*fasta_records(12)]
    upload_id = add_done(at, stored)
    response = at.client.get(f"/uploads/{upload_id}/records", params={"name": "chr1", "fields": "length,id,md5"})
    assert response.json()["records"] == [
        {"id": r.seq_id, "length": 4, "md5": r.md5} for r in stored if r.seq_id.startswith("chr1")
    ]  # chr1, chr10, chr11; the keys in the records' own order
    no_residues = at.client.get(f"/uploads/{upload_id}/records", params={"fields": "sequence"})
    assert no_residues.json()["records"][0] == {"sequence": "ACgT"}
    quality_only = at.client.get(f"/uploads/{upload_id}/records", params={"fields": "quality,ordinal"})
    assert quality_only.json()["records"][0] == {"ordinal": 0}  # a FASTA record has no qualities: left out


def test_unknown_fields_are_422_naming_the_allowed_ones() -> None:
    at = served()
    upload_id = add_done(at, fasta_records(1))
    for fields in ("length,residues", "", "part_count"):
        response = at.client.get(f"/uploads/{upload_id}/records", params={"fields": fields})
        assert response.status_code == 422, fields
        detail = problem(response)
        assert detail["code"] == "unknown_field" and ", ".join(RECORD_KEYS) in detail["detail"]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"cursor": "not-a-cursor"}, "invalid_cursor"),
        ({"cursor": "djEuMS4x!"}, "invalid_cursor"),
        ({"cursor": encode_cursor(1, 0)[:-2]}, "invalid_cursor"),
        ({"name": "a\x00b"}, "invalid_name"),
    ],
)
def test_malformed_cursors_and_names_are_422_with_a_code(params: dict[str, Any], code: str) -> None:
    at = served()
    upload_id = add_done(at, fasta_records(1))
    response = at.client.get(f"/uploads/{upload_id}/records", params=params)
    assert response.status_code == 422 and problem(response)["code"] == code


@pytest.mark.parametrize("limit", [0, 1001, -1])
def test_limits_out_of_bounds_are_422(limit: int) -> None:
    at = served()
    upload_id = add_done(at, fasta_records(1))
    assert at.client.get(f"/uploads/{upload_id}/records", params={"limit": limit}).status_code == 422


def test_a_cursor_of_another_generation_is_409() -> None:
    at = served()
    upload_id = add_done(at, fasta_records(3))
    cursor = at.client.get(f"/uploads/{upload_id}/records", params={"limit": 1}).json()["next_cursor"]
    assert decode_cursor(cursor) == (1, 1)
    at.uploads.uploads[upload_id] = dataclasses.replace(at.uploads.uploads[upload_id], generation=2)
    response = at.client.get(f"/uploads/{upload_id}/records", params={"cursor": cursor})
    assert response.status_code == 409 and problem(response)["code"] == "records_changed"


@pytest.mark.parametrize("state", [State.QUEUED, State.PERSISTING, State.ASSEMBLING, State.FAILED, State.EXPIRED])
def test_records_of_an_upload_not_done_are_409(state: State) -> None:
    at = served()
    upload_id = add_done(at, fasta_records(2), state=state)
    for path in ("records", "records/0"):
        response = at.client.get(f"/uploads/{upload_id}/{path}")
        assert response.status_code == 409 and problem(response)["code"] == "records_not_ready"
    assert at.records.reads == []


@pytest.mark.parametrize("accept", ["text/html", "application/xml, text/*;q=0.5", "application/json;q=0"])
def test_an_accept_that_admits_neither_form_is_406(accept: str) -> None:
    at = served()
    upload_id = add_done(at, fasta_records(1))
    response = at.client.get(f"/uploads/{upload_id}/records", headers={"Accept": accept})
    assert response.status_code == 406 and problem(response)["code"] == "not_acceptable"


@pytest.mark.parametrize(
    ("accept", "media"),
    [
        ("*/*", "application/json"),
        ("application/x-ndjson;q=0.9, application/json", "application/json"),
        ("application/json;q=0.5, application/x-ndjson", "application/x-ndjson"),
        ("application/*", "application/json"),
    ],
)
def test_accept_chooses_the_form(accept: str, media: str) -> None:
    at = served()
    upload_id = add_done(at, fasta_records(1))
    assert at.client.get(f"/uploads/{upload_id}/records", headers={"Accept": accept}).headers["content-type"] == media


# --- one record, long sequences, what a page holds -------------------------------------------------------------


def test_one_record_by_ordinal_with_its_digests_and_qualities() -> None:
    at = served()
    reads = [
        record(n, seq_id=f"r{n}", gene_name=f"r{n}", length=3, residues="ACG", quality="II#", md5=f"m{n}",
               refget=f"SQ.r{n}")
        for n in range(3)
    ]  # fmt: skip
    upload_id = add_done(at, reads)
    response = at.client.get(f"/uploads/{upload_id}/records/2")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.json() == expected(reads[2])
    assert response.json()["quality"] == "II#" and response.json()["refget"] == "SQ.r2"
    beyond = at.client.get(f"/uploads/{upload_id}/records/3")
    assert beyond.status_code == 404 and problem(beyond)["code"] == "no_such_record"
    assert at.client.get(f"/uploads/{upload_id}/records/-1").status_code == 422


def test_a_record_in_parts_streams_a_few_parts_per_read() -> None:
    at = served()
    part_size, parts_n = 1000, 7
    residues = "".join("ACGT"[(i * 7) % 4] for i in range(part_size * parts_n - 10))
    chunks = [residues[i : i + part_size] for i in range(0, len(residues), part_size)]
    long_one = record(1, seq_id="long", length=len(residues), part_count=len(chunks), residues=None)
    stored = [fasta_records(1)[0], long_one, fasta_records(3)[2]]
    upload_id = add_done(at, stored, [Part(1, n, chunk) for n, chunk in enumerate(chunks)])
    body = at.client.get(f"/uploads/{upload_id}/records").json()["records"]
    assert body[1] == expected(long_one, residues)
    assert at.records.reads.count("read_parts") == 4  # 7 parts, two a read
    one = at.client.get(f"/uploads/{upload_id}/records/1", params={"fields": "id,sequence"}).json()
    assert one == {"id": "long", "sequence": residues}


def test_a_page_is_read_in_groups_bounded_by_bytes() -> None:
    at = served()
    big = "A" * (RECORD_GROUP_BYTES // 3)
    stored = [record(n, seq_id=f"s{n}", length=len(big), residues=big) for n in range(7)]
    upload_id = add_done(at, stored)
    response = at.client.get(f"/uploads/{upload_id}/records", params={"fields": "ordinal,sequence"})
    assert [r["ordinal"] for r in response.json()["records"]] == list(range(7))
    assert at.records.reads.count("read_records") == 4  # 2 + 2 + 2 + 1 a group: never more than the bound
    at.records.reads.clear()
    at.client.get(f"/uploads/{upload_id}/records", params={"fields": "ordinal,length"})
    assert at.records.reads == ["record_sizes", "read_records"]  # without residues, one group


def test_a_page_stops_when_the_upload_is_processed_again_as_it_streams() -> None:
    at = served()
    stored = [record(n, residues="A" * (RECORD_GROUP_BYTES // 2)) for n in range(4)]
    upload_id = add_done(at, stored)
    page = records_page(at.intake, at.records, OWNER, upload_id, limit=4)
    assert next(page.records).fields["ordinal"] == 0
    at.uploads.uploads[upload_id] = dataclasses.replace(at.uploads.uploads[upload_id], generation=2)
    with pytest.raises(RecordsChanged):
        list(page.records)


def test_a_page_cut_short_by_a_new_generation_never_ends_as_a_whole_one() -> None:
    at = served()
    stored = [record(n, residues="A" * (RECORD_GROUP_BYTES // 2)) for n in range(4)]
    upload_id = add_done(at, stored)
    read_records = at.records.read_records

    def then_processed_again(*args: Any, **kwargs: Any) -> list[Record]:
        found = read_records(*args, **kwargs)
        at.uploads.uploads[upload_id] = dataclasses.replace(at.uploads.uploads[upload_id], generation=2)
        return found

    at.records.read_records = then_processed_again  # type: ignore[method-assign]
    at.uploads.uploads[upload_id] = dataclasses.replace(at.uploads.uploads[upload_id], generation=1)
    cut = at.client.get(f"/uploads/{upload_id}/records", params={"fields": "ordinal,sequence"})
    # What came before the cut, if any (with the floors' versions the test client hands none of it over)
    assert cut.status_code == 200 and (cut.content == b"" or cut.content.startswith(b'{"records":[{"ordinal":0,'))
    with pytest.raises(json.JSONDecodeError):  # under uvicorn the connection is dropped before the body's end
        json.loads(cut.content)
    at.uploads.uploads[upload_id] = dataclasses.replace(at.uploads.uploads[upload_id], generation=1)
    lines = at.client.get(f"/uploads/{upload_id}/records", headers={"Accept": "application/x-ndjson"}).content
    assert lines.count(b"\n") <= 1  # the first group (one record) at most: not a page that looks whole

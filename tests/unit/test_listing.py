"""The listing, labels and idempotent registration: the domain's rules, the use cases, and the
intake's routes over the fakes (``build_app``)."""

from __future__ import annotations

import base64
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from services.assembler.handler import provenance
from services.intake.api import IntakeDeps
from services.intake.app import build_app
from shared.domain.access import Caller
from shared.domain.listing import (
    HIDDEN_FROM_LISTING,
    MAX_LABELS,
    Cursor,
    InvalidCursor,
    InvalidLabels,
    UploadFilter,
    check_labels,
    merge_labels,
)
from shared.domain.uploads import PipelineErrorCode, State
from shared.runtime.settings import Settings
from shared.usecases import uploads as usecases
from shared.usecases.uploads import Intake, ListWanted, UploadWanted
from tests.problems import problem
from tests.unit.fakes import FakeObjects, FakeUploads, make_upload
from tests.unit.fakes_records import FakeRecords

ALICE = Caller("alice", admin=False)
BOB = Caller("bob", admin=False)
ROOT = Caller("root", admin=True)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def app_for(caller: Caller, uploads: FakeUploads | None = None, settings: Settings | None = None) -> TestClient:
    """The intake over the fakes, every request's key taken as ``caller``'s."""
    uploads = uploads or FakeUploads()
    deps = IntakeDeps(
        Intake(settings or Settings(), uploads, FakeObjects()), lambda _: caller, {}, FakeRecords(uploads)
    )
    return TestClient(build_app(deps), raise_server_exceptions=False)


def stored(uploads: FakeUploads, owner: str, n: int, **changes: object) -> list[uuid.UUID]:
    """``n`` uploads of ``owner``'s, one a second from T0 on (the newest last)."""
    ids = []
    for i in range(n):
        upload_id = uuid.uuid4()
        values: dict[str, object] = dict(
            id=upload_id, key=f"{owner}/{upload_id}/r{i}.fa", filename=f"r{i}.fa", owner=owner,
            created_at=T0 + timedelta(seconds=i), state=State.DONE,
        )  # fmt: skip
        values.update(changes)
        uploads.add(make_upload(**values))
        ids.append(upload_id)
    return ids


# --- the domain -----------------------------------------------------------------------------------


def test_a_cursor_round_trips_and_anything_else_is_refused() -> None:
    cursor = Cursor(T0 + timedelta(microseconds=7), uuid.uuid4())
    assert Cursor.decode(cursor.encode()) == cursor
    forged = [
        "", "!!!", "a" * 129, base64.urlsafe_b64encode(b"not|a cursor").decode().rstrip("="),
        base64.urlsafe_b64encode(f"{T0.replace(tzinfo=None).isoformat()}|{uuid.uuid4()}".encode()).decode(),
        base64.urlsafe_b64encode(f"{T0.isoformat()}|{uuid.uuid4().hex}".encode()).decode(),  # id not as handed out
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ]  # fmt: skip
    for token in forged:
        with pytest.raises(InvalidCursor):
            Cursor.decode(token)


def test_labels_are_bounded() -> None:
    assert check_labels({"sample": "NA12878", "run:id/2": "é" * 128}) == {"sample": "NA12878", "run:id/2": "é" * 128}
    for bad in (
        {f"k{i}": "v" for i in range(MAX_LABELS + 1)},
        {"": "v"}, {"-k": "v"}, {"k" * 64: "v"}, {"a b": "v"}, {"k": "v" * 257}, {"k": "é" * 129},
        {"k": "a\nb"}, {"k": "\x00"}, {"k": "\ud800"}, {"k": 1},
        {"k": "a\x85b"}, {"k": "a\x9b31m"}, {"k": "a\u202eb"}, {"k": "a\u200bb"}, {"k": "a\u2028b"},
        {f"k{i}": "v" * 200 for i in range(21)},  # within each bound, over 4 KiB in all
    ):  # fmt: skip
        with pytest.raises(InvalidLabels):
            check_labels(bad)


def test_labels_change_by_merge_patch() -> None:
    current = {"sample": "a", "run": "1"}
    assert merge_labels(current, {"run": None, "project": "p"}) == {"sample": "a", "project": "p"}
    assert merge_labels(current, {"absent": None}) == current
    assert merge_labels(current, None) == {}
    with pytest.raises(InvalidLabels):
        merge_labels(current, {"bad key": "x"})


def test_the_hidden_states_are_left_out_unless_asked_for() -> None:
    assert frozenset(State) >= HIDDEN_FROM_LISTING
    shown = UploadFilter(owner=None).shown_states()
    assert shown == frozenset(State) - HIDDEN_FROM_LISTING and shown
    assert UploadFilter(owner=None, states=frozenset({State.FAILED})).shown_states() == {State.FAILED}


def test_the_result_document_carries_the_labels() -> None:
    head = provenance(make_upload(labels={"sample": "NA12878"}))
    assert head["labels"] == {"sample": "NA12878"}
    assert provenance(make_upload())["labels"] == {}


# --- the use cases ----------------------------------------------------------------------------------


def test_pages_walk_every_upload_once_newest_first_while_new_ones_arrive() -> None:
    uploads = FakeUploads()
    ids = stored(uploads, "alice", 25)
    stored(uploads, "bob", 5)
    intake = Intake(Settings(), uploads, FakeObjects())
    seen: list[uuid.UUID] = []
    page = usecases.list_uploads(intake, ALICE, ListWanted(limit=10))
    while True:
        seen += [u.id for u in page.uploads]
        stored(uploads, "alice", 1, created_at=datetime.now(UTC))  # a newer one: not on a later page
        if page.next_cursor is None:
            break
        page = usecases.list_uploads(intake, ALICE, ListWanted(limit=10, cursor=page.next_cursor))
    assert seen == ids[::-1]


def test_the_limit_is_clamped_by_the_use_case() -> None:
    uploads = FakeUploads()
    stored(uploads, "alice", 3)
    intake = Intake(Settings(), uploads, FakeObjects())
    assert len(usecases.list_uploads(intake, ALICE, ListWanted(limit=0)).uploads) == 1
    assert len(usecases.list_uploads(intake, ALICE, ListWanted(limit=10**9)).uploads) == 3


def test_a_replayed_registration_is_not_counted_by_the_quotas_again() -> None:
    uploads = FakeUploads()
    intake = Intake(Settings(quota_uploads_in_flight=1), uploads, FakeObjects())
    wanted = UploadWanted("x.fa", 10, None, "nucleotide", idempotency_key="k-1")
    first = usecases.register_upload(intake, ALICE, wanted)
    again = usecases.register_upload(intake, ALICE, wanted)  # at the in-flight quota: still the same
    assert again.replayed and not first.replayed and again.upload_id == first.upload_id
    assert again.upload_url is not None and len(uploads.uploads) == 1


# --- the routes ------------------------------------------------------------------------------------


def test_get_uploads_lists_the_caller_s_own_newest_first_with_a_cursor() -> None:
    uploads = FakeUploads()
    mine = stored(uploads, "alice", 5)
    stored(uploads, "bob", 3)
    client = app_for(ALICE, uploads)
    first = client.get("/uploads", params={"limit": 3})
    assert first.status_code == 200, first.text
    body = first.json()
    assert [u["id"] for u in body["uploads"]] == [str(i) for i in mine[:1:-1]]
    summary = body["uploads"][0]
    assert summary["owner"] == "alice" and summary["status_url"].endswith(f"/uploads/{mine[-1]}")
    assert "result" not in summary and "url" not in summary
    rest = client.get("/uploads", params={"limit": 3, "cursor": body["next_cursor"]}).json()
    assert [u["id"] for u in rest["uploads"]] == [str(i) for i in mine[1::-1]] and rest["next_cursor"] is None


def test_the_listing_filters_by_state_name_label_and_time() -> None:
    uploads = FakeUploads()
    (failed,) = stored(uploads, "alice", 1, state=State.FAILED, error_code=PipelineErrorCode.PERSIST_FAILED.value)
    (labelled,) = stored(uploads, "alice", 1, labels={"sample": "s1", "run": "7"}, filename="NA_1.fa")
    (old,) = stored(uploads, "alice", 1, created_at=T0 - timedelta(days=1), filename="100%_x.fa")
    client = app_for(ALICE, uploads)

    def ids(**params: object) -> list[str]:
        answer = client.get("/uploads", params=params)
        assert answer.status_code == 200, answer.text
        return [u["id"] for u in answer.json()["uploads"]]

    assert ids(state="failed") == [str(failed)]
    assert client.get("/uploads", params={"state": "failed"}).json()["uploads"][0]["error_code"] == "persist_failed"
    assert set(ids(state=["failed", "done"])) == {str(failed), str(labelled), str(old)}
    assert ids(name="NA_") == [str(labelled)] and ids(name="N%") == [] and ids(name="100%") == [str(old)]
    assert ids(label="sample=s1") == [str(labelled)] and ids(label=["sample=s1", "run=7"]) == [str(labelled)]
    assert ids(label=["sample=s1", "run=8"]) == []
    assert ids(created_before=T0.isoformat()) == [str(old)]
    assert str(old) not in ids(created_after=(T0 - timedelta(hours=1)).isoformat())
    assert ids(created_before="2026-01-01T00:00:00") == [str(old)]  # no zone: UTC


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"cursor": "garbage!"}, None),  # not base64url: refused by the parameter's own checks or as a cursor
        ({"cursor": "Zm9v"}, "invalid_cursor"),
        ({"state": "sleeping"}, "invalid_state"),
        ({"label": "no-equals"}, "invalid_label_filter"),
        ({"label": ["k=a", "k=b"]}, "invalid_label_filter"),
        ({"name": "a\x01"}, "invalid_name"),
        ({"limit": 0}, None),
        ({"limit": 1001}, None),
        ({"bucket": "uploads", "key": "k"}, "use_lookup"),
        ({"owner": "ali\x00ce"}, "invalid_owner"),
        ({"cursor": "Zm9v" * 40}, "invalid_cursor"),
        ({"name": "n" * 513}, "invalid_name"),
    ],
)
def test_an_impossible_listing_is_422_with_a_code(params: dict[str, object], code: str | None) -> None:
    answer = app_for(ALICE).get("/uploads", params=params)
    assert answer.status_code == 422, answer.text
    if code is not None:
        assert problem(answer)["code"] == code


def test_only_an_admin_lists_another_owner_s_uploads() -> None:
    uploads = FakeUploads()
    alices = stored(uploads, "alice", 2)
    bobs = stored(uploads, "bob", 2)
    refused = app_for(BOB, uploads).get("/uploads", params={"owner": "alice"})
    assert refused.status_code == 403 and problem(refused)["code"] == "admin_only"
    own = app_for(BOB, uploads).get("/uploads", params={"owner": "bob"}).json()["uploads"]
    assert {u["id"] for u in own} == {str(i) for i in bobs}
    admin = app_for(ROOT, uploads)
    assert {u["id"] for u in admin.get("/uploads").json()["uploads"]} == {str(i) for i in alices + bobs}
    assert {u["id"] for u in admin.get("/uploads", params={"owner": "alice"}).json()["uploads"]} == {
        str(i) for i in alices
    }


def test_labels_are_registered_shown_and_patched() -> None:
    uploads = FakeUploads()
    client = app_for(ALICE, uploads)
    ticket = client.post("/uploads", json={"filename": "x.fa", "size": 1, "labels": {"sample": "s1", "run": "1"}})
    assert ticket.status_code == 201, ticket.text
    upload_id = ticket.json()["id"]
    assert client.get(f"/uploads/{upload_id}").json()["labels"] == {"sample": "s1", "run": "1"}
    assert client.get("/uploads").json()["uploads"][0]["labels"] == {"sample": "s1", "run": "1"}
    before = uploads.uploads[uuid.UUID(upload_id)].updated_at
    patched = client.patch(
        f"/uploads/{upload_id}",
        content=b'{"labels": {"run": null, "project": "p"}}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["labels"] == {"sample": "s1", "project": "p"}
    assert uploads.uploads[uuid.UUID(upload_id)].updated_at == before  # the pipeline's clock, untouched
    cleared = client.patch(f"/uploads/{upload_id}", json={"labels": None})
    assert cleared.status_code == 200 and cleared.json()["labels"] == {}
    bad = client.patch(f"/uploads/{upload_id}", json={"labels": {"bad key": "v"}})
    assert bad.status_code == 422 and problem(bad)["code"] == "invalid_labels"
    assert client.patch(f"/uploads/{upload_id}", json={"state": "done"}).status_code == 422  # labels only
    assert app_for(BOB, uploads).patch(f"/uploads/{upload_id}", json={"labels": {"x": "y"}}).status_code == 404
    assert app_for(ROOT, uploads).patch(f"/uploads/{upload_id}", json={"labels": {"x": "y"}}).status_code == 200
    assert uploads.uploads[uuid.UUID(upload_id)].labels == {"x": "y"}
    assert client.delete(f"/uploads/{upload_id}").status_code == 202
    refused = client.patch(f"/uploads/{upload_id}", json={"labels": {"x": "z"}})
    assert refused.status_code == 409 and problem(refused)["code"] == "upload_deleted"
    assert client.get(f"/uploads/{upload_id}").json()["labels"] == {}  # a tombstone holds none


def test_labels_beyond_their_bounds_are_refused_at_registration() -> None:
    uploads = FakeUploads()
    answer = app_for(ALICE, uploads).post("/uploads", json={"filename": "x.fa", "size": 1, "labels": {"k": "\x07"}})
    assert answer.status_code == 422 and problem(answer)["code"] == "invalid_labels"
    assert uploads.uploads == {}


def test_an_idempotency_key_registers_once_and_refuses_another_request() -> None:
    uploads = FakeUploads()
    client = app_for(ALICE, uploads)
    body = {"filename": "x.fa", "size": 5, "labels": {"a": "1"}}
    first = client.post("/uploads", json=body, headers={"Idempotency-Key": "job 42"})
    assert first.status_code == 201, first.text
    # the same request, its members in another order and a default spelled out: the same upload
    same = {"labels": {"a": "1"}, "size": 5, "filename": "x.fa", "alphabet": "nucleotide"}
    again = client.post("/uploads", json=same, headers={"Idempotency-Key": "job 42"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"] and again.json()["upload_url"]
    other = client.post("/uploads", json={**body, "size": 6}, headers={"Idempotency-Key": "job 42"})
    assert other.status_code == 409 and problem(other)["code"] == "idempotency_key_reused"
    # keys are per owner: bob's same key is bob's own upload
    bobs = app_for(BOB, uploads).post("/uploads", json=body, headers={"Idempotency-Key": "job 42"})
    assert bobs.status_code == 201 and bobs.json()["id"] != first.json()["id"]
    assert len(uploads.uploads) == 2
    for bad in (b"", b"x" * 256, "caf\u00e9".encode(), b"tab\there"):
        refused = client.post("/uploads", json=body, headers={"Idempotency-Key": bad})
        assert refused.status_code == 422, (bad, refused.text)
        assert problem(refused)["code"] == "invalid_idempotency_key"


def test_a_replay_after_the_object_came_has_no_upload_url() -> None:
    uploads = FakeUploads()
    client = app_for(ALICE, uploads)
    body = {"filename": "x.fa", "size": 5}
    first = client.post("/uploads", json=body, headers={"Idempotency-Key": "k"}).json()
    upload_id = uuid.UUID(first["id"])
    uploads.uploads[upload_id] = dataclasses.replace(uploads.uploads[upload_id], state=State.QUEUED, etag="e")
    again = client.post("/uploads", json=body, headers={"Idempotency-Key": "k"})
    assert again.status_code == 200 and again.json()["id"] == first["id"] and again.json()["upload_url"] is None


def test_a_multipart_replay_re_signs_the_same_multipart_upload() -> None:
    uploads = FakeUploads()
    client = app_for(ALICE, uploads, Settings(multipart_threshold_bytes=10))
    body = {"filename": "x.fa", "size": 100}
    first = client.post("/uploads", json=body, headers={"Idempotency-Key": "k"}).json()
    again = client.post("/uploads", json=body, headers={"Idempotency-Key": "k"})
    assert again.status_code == 200 and again.json()["multipart"]["upload_id"] == first["multipart"]["upload_id"]


def test_the_lookup_by_object_has_its_own_path() -> None:
    uploads = FakeUploads()
    (upload_id,) = stored(uploads, "alice", 1, bucket="uploads")
    key = uploads.uploads[upload_id].key
    client = app_for(ALICE, uploads)
    found = client.get("/uploads/lookup", params={"bucket": "uploads", "key": key})
    assert found.status_code == 200 and found.json()["id"] == str(upload_id)
    assert client.get("/uploads/lookup", params={"bucket": "uploads", "key": key + "x"}).status_code == 404
    assert app_for(BOB, uploads).get("/uploads/lookup", params={"bucket": "uploads", "key": key}).status_code == 404

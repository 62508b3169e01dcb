"""``genobase.client.Client`` over ``httpx.MockTransport``: errors from problem bodies, retries
(backoff, Retry-After, the budget, the Idempotency-Key kept), cursors followed, records streamed,
downloads checked, and the multipart state file: where it lives, its modes, its resumption.

The intake and the store are scripted here; tests/e2e/test_client.py runs the same calls against
the real stack.
"""

from __future__ import annotations

import base64
import hashlib
import json
import stat
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from genobase.client import (
    AuthenticationError,
    Client,
    ClientError,
    ConflictError,
    NotFoundError,
    RefusedError,
    TimedOutError,
    TransferProgress,
    UnreachableError,
)
from genobase.client.models import UploadTicket
from genobase.client.transfer import default_state_dir, save_state, state_path

UPLOAD_ID = uuid.UUID("0b6f2c7e-1111-4222-8333-444455556666")
NOW = datetime(2026, 1, 2, tzinfo=UTC).isoformat()
Handler = Callable[[httpx.Request], httpx.Response]


def problem(status: int, code: str, detail: str = "refused", **extra: Any) -> dict[str, Any]:
    return {
        "type": f"https://genobase.dev/problems/{code}",
        "title": code,
        "status": status,
        "detail": detail,
        "code": code,
        "error_id": "e" * 32,
        **extra,
    }


def status_body(state: str = "done", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(UPLOAD_ID),
        "bucket": "uploads",
        "key": f"alice/{UPLOAD_ID}/a.fa",
        "filename": "a.fa",
        "registered": True,
        "state": state,
        "generation": 1,
        "format": "fasta",
        "progress": {
            "bytes_done": 10,
            "bytes_total": 10,
            "records_done": 1,
            "records_total": 1,
            "records_assembled": 1,
            "fraction": 1.0,
        },
        "duplicate_names": 0,
        "empty_sequences": 0,
        "error": None,
        "result": None,
        "times": {"parsing_started_at": None, "parsed_at": None, "assembly_started_at": None, "finished_at": None},
        "stall": {"stalled": False, "idle_seconds": 0.0, "pickups": 0, "last_pickup_at": None},
        "source": {"bucket": "uploads", "key": "k", "etag": None, "size": 10, "md5": None, "sha256": None},
        "created_at": NOW,
        "updated_at": NOW,
    }
    body.update(changes)
    return body


def summary_body(number: int) -> dict[str, Any]:
    return {
        "id": str(uuid.UUID(int=number)),
        "owner": "alice",
        "filename": f"{number}.fa",
        "bucket": "uploads",
        "key": f"alice/{number}",
        "state": "done",
        "format": "fasta",
        "generation": 1,
        "mode": "store",
        "size": 10,
        "records": 1,
        "result_size": 100,
        "labels": {"run": "7"},
        "error_code": None,
        "created_at": NOW,
        "updated_at": NOW,
        "status_url": f"http://intake/uploads/{uuid.UUID(int=number)}",
    }


class Recorder:
    """The transport: each request recorded, answered by ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self.requests: list[httpx.Request] = []
        self._handler = handler

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self._handler(request)

    def paths(self, method: str | None = None) -> list[str]:
        return [r.url.path for r in self.requests if method is None or r.method == method]


def client_for(handler: Handler, tmp_path: Path, **options: Any) -> tuple[Client, Recorder, list[float]]:
    recorder = Recorder(handler)
    sleeps: list[float] = []
    options.setdefault("backoff", 0.01)
    client = Client(
        "http://intake",
        "key-1",
        transport=httpx.MockTransport(recorder),
        state_dir=tmp_path / "state",
        sleep=sleeps.append,
        **options,
    )
    return client, recorder, sleeps


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (401, "unauthorized", AuthenticationError),
        (403, "admin_only", AuthenticationError),
        (404, "not_found", NotFoundError),
        (409, "not_failed", ConflictError),
        (422, "invalid_labels", RefusedError),
        (413, "upload_too_large", RefusedError),
    ],
)
def test_a_problem_becomes_its_error_class_with_code_message_id_and_hint(
    status: int, code: str, kind: type[ClientError], tmp_path: Path
) -> None:
    client, recorder, _ = client_for(lambda r: httpx.Response(status, json=problem(status, code, "why")), tmp_path)
    with pytest.raises(kind) as caught:
        client.get(UPLOAD_ID)
    error = caught.value
    assert (error.code, error.message, error.status, error.error_id) == (code, "why", status, "e" * 32)
    assert error.problem is not None and error.problem.code == code
    assert len(recorder.requests) == 1  # a refusal is not retried
    if code in ("unauthorized", "not_found", "not_failed", "upload_too_large"):
        assert error.hint


def test_an_answer_without_a_problem_body_still_maps_by_status(tmp_path: Path) -> None:
    client, _, _ = client_for(lambda r: httpx.Response(404, text="<html>gone</html>"), tmp_path)
    with pytest.raises(NotFoundError) as caught:
        client.get(UPLOAD_ID)
    assert caught.value.code == "not_found" and caught.value.problem is None and caught.value.error_id is None


def test_the_key_is_sent_to_the_intake_and_an_id_is_checked_before_any_request(tmp_path: Path) -> None:
    client, recorder, _ = client_for(lambda r: httpx.Response(200, json=status_body()), tmp_path)
    client.get(str(UPLOAD_ID))
    assert recorder.requests[0].headers["authorization"] == "Bearer key-1"
    with pytest.raises(NotFoundError):
        client.get("../keys")
    assert len(recorder.requests) == 1


# --- retries --------------------------------------------------------------------------------------


def answers(*responses: httpx.Response | Exception) -> Handler:
    """Each request takes the next answer (an exception is raised as the transport's)."""
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler


def test_a_get_is_retried_on_5xx_and_connection_errors_then_answers(tmp_path: Path) -> None:
    handler = answers(
        httpx.ConnectError("refused"),
        httpx.Response(503, json=problem(503, "unavailable")),
        httpx.Response(200, json=status_body()),
    )
    client, recorder, sleeps = client_for(handler, tmp_path)
    assert client.get(UPLOAD_ID).state == "done"
    assert len(recorder.requests) == 3 and len(sleeps) == 2


def test_retry_after_is_honoured_and_bounded(tmp_path: Path) -> None:
    handler = answers(
        httpx.Response(429, headers={"Retry-After": "7"}, json=problem(429, "too_many_requests")),
        httpx.Response(429, headers={"Retry-After": "3600"}, json=problem(429, "too_many_requests")),
        httpx.Response(200, json=status_body()),
    )
    client, _, sleeps = client_for(handler, tmp_path, max_retry_after=30.0, retry_budget=1000.0)
    client.get(UPLOAD_ID)
    assert sleeps == [7.0, 30.0]


def test_a_429_after_the_retries_is_a_refusal_and_a_5xx_is_unreachable(tmp_path: Path) -> None:
    client, recorder, _ = client_for(
        lambda r: httpx.Response(429, headers={"Retry-After": "1"}, json=problem(429, "too_many_uploads_in_flight")),
        tmp_path,
        retries=2,
    )
    with pytest.raises(RefusedError) as refused:
        client.get(UPLOAD_ID)
    assert refused.value.code == "too_many_uploads_in_flight" and len(recorder.requests) == 3
    client, _, _ = client_for(lambda r: httpx.Response(502, text="bad gateway"), tmp_path, retries=1)
    with pytest.raises(UnreachableError) as failing:
        client.get(UPLOAD_ID)
    assert failing.value.status == 502


def test_no_answer_is_unreachable_within_the_retry_budget(tmp_path: Path) -> None:
    refused = answers(httpx.ConnectError("refused"))
    client, _, sleeps = client_for(refused, tmp_path, retries=50, retry_budget=0.3)
    with pytest.raises(UnreachableError) as caught:
        client.health()
    assert caught.value.code == "unreachable" and caught.value.hint
    assert sum(sleeps) <= 0.3 + 1e-9  # the budget bounds the waits, whatever the retries


def test_a_registration_is_retried_with_the_same_idempotency_key(tmp_path: Path) -> None:
    """The first answer is lost: the second attempt carries the same key, so the intake registers once."""
    path = tmp_path / "a.fa"
    path.write_bytes(b">a\nACGT\n")
    ticket = {
        "id": str(UPLOAD_ID),
        "bucket": "uploads",
        "key": "k",
        "upload_method": "PUT",
        "upload_url": "http://store/uploads/k?sig=1",
        "upload_headers": {"Content-Type": "application/octet-stream"},
        "expires_at": NOW,
        "status_url": f"http://intake/uploads/{UPLOAD_ID}",
    }
    registrations = [httpx.ReadTimeout("lost")]  # the first answer lost, then the ticket

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/uploads" and request.method == "POST":
            if registrations:
                raise registrations.pop()
            return httpx.Response(200, json=ticket)
        if request.url.host == "store":
            assert "authorization" not in request.headers  # the key goes to the intake only
            assert request.content == path.read_bytes()
            return httpx.Response(200)
        return httpx.Response(200, json=status_body("queued"))

    client, recorder, _ = client_for(handler, tmp_path)
    seen: list[TransferProgress] = []
    upload = client.upload(path, labels={"run": "7"}, on_bytes=seen.append)
    posts = [r for r in recorder.requests if r.url.path == "/uploads"]
    keys = {r.headers["idempotency-key"] for r in posts}
    assert len(posts) == 2 and len(keys) == 1
    assert json.loads(posts[0].content)["labels"] == {"run": "7"}
    assert upload.state == "queued" and seen[-1].sent == seen[-1].total == path.stat().st_size
    client.upload(path)
    later = [r.headers["idempotency-key"] for r in recorder.requests if r.url.path == "/uploads"][-1]
    assert later not in keys  # each upload() call registers anew


def test_an_interrupted_single_put_goes_on_with_the_same_upload(tmp_path: Path) -> None:
    """The run ends mid-PUT; the next upload() of the file sends it again to the same upload."""
    path = tmp_path / "a.fa"
    path.write_bytes(b">a\nACGT\n" * 100)
    ticket = {
        "id": str(UPLOAD_ID),
        "bucket": "uploads",
        "key": "k",
        "upload_method": "PUT",
        "upload_url": "http://store/uploads/k?sig=1",
        "upload_headers": {},
        "expires_at": NOW,
        "status_url": f"http://intake/uploads/{UPLOAD_ID}",
    }
    state = {"now": "awaiting_upload"}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/uploads" and request.method == "POST":
            return httpx.Response(201, json=ticket)
        if request.url.host == "store":
            assert request.read() == path.read_bytes()
            state["now"] = "queued"
            return httpx.Response(200)
        return httpx.Response(200, json=status_body(state["now"]))

    def cut(progress: TransferProgress) -> None:
        raise Interrupted

    client, recorder, _ = client_for(handler, tmp_path)
    with pytest.raises(Interrupted):
        client.upload(path, on_bytes=cut)
    (state_file,) = (tmp_path / "state").glob("*.json")
    again, recorder, _ = client_for(handler, tmp_path)
    upload = again.upload(path)
    assert recorder.paths("POST") == []  # not registered a second time
    assert [r.url.host for r in recorder.requests if r.method == "PUT"] == ["store"]
    assert upload.id == UPLOAD_ID and upload.state == "queued" and not state_file.exists()


def test_a_missing_file_or_a_directory_is_refused_before_any_request(tmp_path: Path) -> None:
    client, recorder, _ = client_for(lambda r: httpx.Response(500), tmp_path)
    with pytest.raises(FileNotFoundError):
        client.upload(tmp_path / "absent.fa")
    with pytest.raises(IsADirectoryError):
        client.upload(tmp_path)
    assert recorder.requests == []


def test_a_retry_whose_first_answer_was_lost_reads_the_status(tmp_path: Path) -> None:
    """The first POST took effect, its answer was lost; the second is refused as not failed."""
    posts = iter([httpx.Response(502), httpx.Response(409, json=problem(409, "not_failed", state="queued"))])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return next(posts)
        return httpx.Response(200, json=status_body("queued", generation=2))

    client, _, _ = client_for(handler, tmp_path)
    assert client.retry(UPLOAD_ID).generation == 2
    client, _, _ = client_for(lambda r: httpx.Response(409, json=problem(409, "not_failed", state="done")), tmp_path)
    with pytest.raises(ConflictError) as caught:
        client.retry(UPLOAD_ID)
    assert caught.value.problem is not None and caught.value.problem.model_extra == {"state": "done"}


# --- listing, records, waiting ---------------------------------------------------------------------


def test_list_follows_the_cursor_with_its_filters_and_stops_at_the_limit(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        page = int(cursor or 0)
        uploads = [summary_body(page * 2 + 1), summary_body(page * 2 + 2)]
        return httpx.Response(200, json={"uploads": uploads, "next_cursor": str(page + 1) if page < 2 else None})

    client, recorder, _ = client_for(handler, tmp_path)
    found = list(client.list(labels={"run": "7", "sample": "s 1"}, state="done", page_size=2))
    assert [u.filename for u in found] == [f"{n}.fa" for n in range(1, 7)]
    assert len(recorder.requests) == 3
    params = recorder.requests[0].url.params
    assert params.get_list("label") == ["run=7", "sample=s 1"] and params["state"] == "done"
    assert [r.url.params.get("cursor") for r in recorder.requests] == [None, "1", "2"]
    assert len(list(client.list(limit=3, page_size=2))) == 3
    assert recorder.requests[-1].url.params["limit"] == "1"  # the last page asks only for what is left


def test_result_streams_ndjson_pages_following_the_link(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["accept"] == "application/x-ndjson"
        cursor = request.url.params.get("cursor")
        lines = [{"ordinal": 0, "id": "a", "sequence": "ACGT"}] if cursor is None else [{"ordinal": 1, "id": "b"}]
        headers = {"Link": f'<{request.url.copy_set_param("cursor", "c1")}>; rel="next"'} if cursor is None else {}
        body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        return httpx.Response(200, content=body, headers=headers)

    client, recorder, _ = client_for(handler, tmp_path)
    records = list(client.result(UPLOAD_ID, fields=["ordinal", "id", "sequence"]))
    assert [(r.ordinal, r.id, r.sequence) for r in records] == [(0, "a", "ACGT"), (1, "b", None)]
    assert recorder.requests[0].url.params["fields"] == "ordinal,id,sequence"


def test_a_records_page_cut_short_is_an_error_never_a_shorter_result(tmp_path: Path) -> None:
    client, _, _ = client_for(lambda r: httpx.Response(200, content=b'{"ordinal": 0}\n{"ordin'), tmp_path)
    with pytest.raises(ClientError) as caught:
        list(client.result(UPLOAD_ID))
    assert caught.value.code == "incomplete_response"


def test_wait_returns_at_a_final_state_and_times_out_otherwise(tmp_path: Path) -> None:
    states = iter(["queued", "parsing", "parsing", "done"])
    client, _, sleeps = client_for(lambda r: httpx.Response(200, json=status_body(next(states))), tmp_path)
    seen: list[str] = []
    assert client.wait(UPLOAD_ID, interval=0.01, on_status=lambda u: seen.append(u.state)).state == "done"
    assert seen == ["queued", "parsing", "done"] and len(sleeps) == 3
    client, _, _ = client_for(lambda r: httpx.Response(200, json=status_body("parsing")), tmp_path)
    with pytest.raises(TimedOutError):
        client.wait(UPLOAD_ID, timeout=0.0)


# --- download -------------------------------------------------------------------------------------


def download_handler(document: bytes, recorded_sha256: str | None, size: int | None = None) -> Handler:
    result = {
        "url": "http://store/results/x?sig=old",
        "expires_at": NOW,
        "bucket": "results",
        "key": "x",
        "size": len(document) if size is None else size,
        "records": 1,
        "sha256": recorded_sha256,
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "store":
            assert "authorization" not in request.headers
            return httpx.Response(200, content=document)
        if request.url.path.endswith("/result"):
            return httpx.Response(302, headers={"Location": "http://store/results/x?sig=fresh"})
        return httpx.Response(200, json=status_body(result=result))

    return handler


def test_download_checks_the_sha256_and_renames_the_part_file(tmp_path: Path) -> None:
    document = b'{"records": []}' * 1000
    client, _, _ = client_for(download_handler(document, hashlib.sha256(document).hexdigest()), tmp_path)
    seen: list[TransferProgress] = []
    target = client.download(UPLOAD_ID, tmp_path / "out.json", on_bytes=seen.append)
    assert target.read_bytes() == document and not (tmp_path / "out.json.part").exists()
    assert seen[-1].sent == seen[-1].total == len(document)


def test_a_download_that_differs_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    document = b'{"records": []}'
    for recorded, size in (("0" * 64, None), (None, len(document) + 1)):
        client, _, _ = client_for(download_handler(document, recorded, size), tmp_path)
        with pytest.raises(ClientError) as caught:
            client.download(UPLOAD_ID, tmp_path / "out.json")
        assert caught.value.code == "checksum_mismatch"
        assert not (tmp_path / "out.json").exists() and not (tmp_path / "out.json.part").exists()
    client, _, _ = client_for(download_handler(document, None), tmp_path)  # no digest recorded: size only
    assert client.download(UPLOAD_ID, tmp_path / "out.json").read_bytes() == document


def test_a_download_of_an_upload_without_result_is_a_conflict(tmp_path: Path) -> None:
    client, _, _ = client_for(lambda r: httpx.Response(200, json=status_body("parsing")), tmp_path)
    with pytest.raises(ConflictError):
        client.download(UPLOAD_ID, tmp_path / "out.json")


def test_health_tells_an_unhealthy_intake_from_an_unreachable_one(tmp_path: Path) -> None:
    body = problem(503, "unavailable", checks={"postgres": "unavailable (error id x)"})
    client, recorder, _ = client_for(lambda r: httpx.Response(503, json=body), tmp_path)
    assert client.health()["status"] == "unavailable" and len(recorder.requests) == 1


# --- multipart: state, modes, resumption -----------------------------------------------------------


class FakeMultipart:
    """An intake and a store for one multipart upload of ``count`` parts of ``part_size`` bytes."""

    def __init__(self, part_size: int, count: int) -> None:
        self.part_size, self.count = part_size, count
        self.stored: dict[int, bytes] = {}
        self.state = "awaiting_upload"
        self.completed = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.url.host == "store":
            if path.endswith("/complete"):
                self.completed, self.state = True, "queued"
                return httpx.Response(200, content=b"<CompleteMultipartUploadResult/>")
            number = int(request.url.params["part"])
            md5 = base64.b64encode(hashlib.md5(request.content).digest()).decode()
            assert request.headers["content-md5"] == md5
            self.stored[number] = request.content
            return httpx.Response(200, headers={"ETag": f'"{number}"'})
        if path == "/uploads":
            return httpx.Response(201, json=self.ticket())
        if path.endswith("/parts") and request.method == "GET":
            parts = [{"number": n, "etag": f'"{n}"', "size": len(d)} for n, d in sorted(self.stored.items())]
            return httpx.Response(200, json={"parts": parts})
        if path.endswith("/parts"):
            wanted = json.loads(request.content)["parts"][0]
            url = f"http://store/uploads/k?part={wanted['number']}"
            return httpx.Response(200, json={"parts": [{**wanted, "size": self.part_size, "url": url}]})
        return httpx.Response(200, json=status_body(self.state))

    def ticket(self) -> dict[str, Any]:
        return {
            "id": str(UPLOAD_ID),
            "bucket": "uploads",
            "key": "k",
            "upload_method": "multipart",
            "multipart": {
                "upload_id": "mp-1",
                "part_size": self.part_size,
                "part_count": self.count,
                "parts_url": "http://elsewhere/uploads/x/parts",  # never followed: the key stays home
                "complete_url": "http://store/uploads/k/complete",
                "abort_url": "http://store/uploads/k/abort",
                "list_parts_url": "http://store/uploads/k/list",
            },
            "expires_at": NOW,
            "status_url": f"http://intake/uploads/{UPLOAD_ID}",
        }


class Interrupted(Exception):
    pass


def test_an_interrupted_multipart_upload_resumes_with_only_the_missing_parts(tmp_path: Path) -> None:
    part_size, count = 1000, 6
    path = tmp_path / "big.fa"
    path.write_bytes(bytes(range(256)) * 23)  # 5,888 bytes: 6 parts, the last short
    store = FakeMultipart(part_size, count)
    client, recorder, _ = client_for(store, tmp_path)

    def stop_after_two(progress: TransferProgress) -> None:
        if len(store.stored) >= 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        client.upload(path, parallel=1, on_bytes=stop_after_two)
    assert len(store.stored) == 2 and not store.completed
    (state_file,) = (tmp_path / "state").glob("*.json")
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(state_file.parent.stat().st_mode) == 0o700
    assert "elsewhere" not in {r.url.host for r in recorder.requests}

    resumed, recorder, _ = client_for(store, tmp_path)  # a new client: state from the file
    seen: list[TransferProgress] = []
    upload = resumed.upload(path, parallel=2, on_bytes=seen.append)
    assert recorder.paths("POST").count("/uploads") == 0  # not registered again
    sent = [r for r in recorder.requests if r.url.host == "store" and r.method == "PUT"]
    assert sorted(int(r.url.params["part"]) for r in sent) == [3, 4, 5, 6]
    assert b"".join(store.stored[n] for n in range(1, count + 1)) == path.read_bytes()
    assert store.completed and upload.state == "queued" and not state_file.exists()
    assert seen[0].resumed == 2 * part_size and seen[-1].sent == seen[-1].total == path.stat().st_size
    assert (seen[0].parts, seen[0].parts_resumed, seen[-1].parts_done) == (count, 2, count)


def test_the_state_is_keyed_by_mode_and_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "a.fa"
    path.write_bytes(b">a\nACGT\n")
    stored = state_path(tmp_path, path, "http://intake", "store")
    assert state_path(tmp_path, path, "http://intake/", "store") == stored
    assert state_path(tmp_path, path, "http://intake", "validate") != stored
    assert state_path(tmp_path, path, "http://other", "store") != stored


def test_the_state_lives_in_the_user_s_data_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_state_dir() == tmp_path / "data" / "genobase" / "transfers"
    assert Client("http://intake").state_dir == tmp_path / "data" / "genobase" / "transfers"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")  # the spec: a relative path is ignored
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_state_dir() == tmp_path / "home" / ".local" / "share" / "genobase" / "transfers"


class CutStream(httpx.SyncByteStream):
    """A body that stops half way with the connection's error."""

    def __init__(self, head: bytes) -> None:
        self._head = head

    def __iter__(self) -> Iterator[bytes]:
        yield self._head
        raise httpx.ReadError("connection reset")


def test_a_download_cut_short_is_read_again_from_the_start(tmp_path: Path) -> None:
    document = b'{"records": [1, 2, 3]}'
    whole = download_handler(document, hashlib.sha256(document).hexdigest())
    cuts = [CutStream(document[:5])]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "store" and cuts:
            return httpx.Response(200, stream=cuts.pop())
        return whole(request)

    client, recorder, _ = client_for(handler, tmp_path)
    assert client.download(UPLOAD_ID, tmp_path / "out.json").read_bytes() == document
    assert recorder.paths().count(f"/uploads/{UPLOAD_ID}/result") == 2  # a fresh link each time
    cuts.extend(CutStream(b"{") for _ in range(3))
    client, _, _ = client_for(handler, tmp_path, retries=2)
    with pytest.raises(UnreachableError) as caught:
        client.download(UPLOAD_ID, tmp_path / "again.json")
    assert caught.value.code == "incomplete_download" and not (tmp_path / "again.json.part").exists()


def test_labels_are_a_merge_patch_and_delete_answers_the_status(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            assert request.headers["content-type"] == "application/merge-patch+json"
            assert json.loads(request.content) == {"labels": {"run": "8", "old": None}}
            return httpx.Response(200, json=status_body(labels={"run": "8"}))
        assert request.method == "DELETE"
        return httpx.Response(202, json=status_body("deleted"))

    client, _, _ = client_for(handler, tmp_path)
    assert client.set_labels(UPLOAD_ID, {"run": "8", "old": None}).labels == {"run": "8"}
    assert client.delete(UPLOAD_ID).state == "deleted"


def test_an_upload_whose_completion_answer_was_lost_is_not_uploaded_twice(tmp_path: Path) -> None:
    """The store completed the upload, the client never heard: the next upload() of the file finds
    its state file, asks, and answers the upload the object arrived for instead of a second one."""
    path = tmp_path / "big.fa"
    path.write_bytes(bytes(3000))
    store = FakeMultipart(1000, 3)
    lost = [httpx.ReadError("connection reset")]

    def handler(request: httpx.Request) -> httpx.Response:
        answer = store(request)
        if request.url.path.endswith("/complete") and lost:
            raise lost.pop()
        return answer

    client, recorder, _ = client_for(handler, tmp_path)
    with pytest.raises(UnreachableError):
        client.upload(path)
    assert store.completed and len(list((tmp_path / "state").glob("*.json"))) == 1
    again, recorder, _ = client_for(handler, tmp_path)
    assert again.upload(path).state == "queued"
    assert recorder.paths("POST") == [] and recorder.paths("PUT") == []  # nothing registered or sent
    assert list((tmp_path / "state").glob("*.json")) == []
    save_state(again.state_dir / "left.json", UploadTicket.model_validate(store.ticket()))
    (again.state_dir / "left.json").rename(state_path(again.state_dir, path, "http://intake", "store"))
    store.state = "expired"  # a state file whose upload expired: registered afresh
    again.upload(path)
    assert recorder.paths("POST").count("/uploads") == 1

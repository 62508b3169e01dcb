from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
import pika
import pytest
from fastapi.testclient import TestClient

from services.assembler.document import ResultDocument
from services.intake.api import IntakeDeps
from services.intake.app import BrokerProbe, build_app, create_app
from services.intake.schemas import MAX_FILENAME_BYTES, MAX_KEY_BYTES, MAX_REQUEST_BYTES, UploadRequest
from shared.domain.access import Caller, valid_key_name
from shared.domain.record_schema import Record, ResultPiece
from shared.domain.seqcol import Collection
from shared.domain.uploads import NameCounts, ResultLocation, State
from shared.runtime.settings import Settings
from shared.usecases.uploads import Intake, object_key, progress_fraction
from shared.web.guard import Unauthorized
from tests.builders import record
from tests.problems import problem
from tests.unit.fakes import STORE, FakeObjects, FakeUploads, make_upload
from tests.unit.fakes_records import FakeRecords


def document(rows: list[ResultPiece], provenance: dict[str, object] | None = None) -> list[bytes]:
    return list(ResultDocument(provenance or {"record_count": 0}).pieces(rows))


def piece(r: Record, part_no: int, residues: bytes) -> ResultPiece:
    return ResultPiece(r, part_no, residues)


def test_document_is_valid_json_and_streams_parts() -> None:
    quoted = record(0, line_number=1, gene_name='quote "x"', seq_id="quote", description='"x"', length=4,
                    attributes={"organism": "human"})  # fmt: skip
    big = record(2, line_number=4, gene_name="big", seq_id="big", length=2_000_000, part_count=2)
    read = record(4, line_number=10, gene_name="read", seq_id="read", length=2, quality='I"')
    rows = [
        piece(quoted, 0, b"ACGT"),
        piece(record(1, line_number=3, gene_name="empty", seq_id="empty"), 0, b""),
        piece(big, 0, b"A" * 1_000_000),
        piece(big, 1, b"C" * 1_000_000),
        piece(record(3, line_number=9, gene_name="any", seq_id="any", length=3), 0, b'a"\\'),
        piece(read, 0, b"AC"),
    ]
    pieces = document(rows, {"upload_id": "u", "record_count": 4})
    assert len(pieces) > 1  # streamed, not built whole
    doc = orjson.loads(b"".join(pieces))
    assert doc["record_count"] == 4
    assert [r["sequence"][:4] for r in doc["records"]] == ["ACGT", "", "AAAA", 'a"\\', "AC"]
    assert doc["records"][4]["quality"] == 'I"'
    assert "quality" not in doc["records"][0]
    assert doc["records"][0]["attributes"] == {"organism": "human"}
    assert "attributes" not in doc["records"][1]
    assert doc["records"][2]["sequence"] == "A" * 1_000_000 + "C" * 1_000_000
    assert doc["records"][0]["gene_name"] == 'quote "x"'
    assert list(doc["records"][0]) == [
        "ordinal", "line_number", "gene_name", "id", "description", "length", "md5", "refget", "attributes",
        "sequence",
    ]  # fmt: skip
    assert list(doc["records"][4])[-2:] == ["sequence", "quality"]


def test_a_record_written_whole_is_the_bytes_of_one_streamed_in_parts() -> None:
    """An inline record is one ``orjson.dumps``; a record in parts is opened, streamed and closed:
    the same record must come out byte for byte the same either way."""
    records = [
        (record(0, gene_name='quote "x"', seq_id="quote", description='"x"', length=4, attributes={"k": "v"}), b"ACGT"),
        (record(1, gene_name="empty", seq_id="empty"), b""),
        (record(2, gene_name="any", seq_id="any", length=3), b'a"\\'),
        (record(3, gene_name="read", seq_id="read", length=2, quality='I"'), b"AC"),
        (record(4, gene_name="caf\u00e9 \U0001f9ec", seq_id="caf\u00e9", description="\u4e2d", length=1), b"N"),
    ]
    whole = [piece(r, 0, residues) for r, residues in records]
    in_parts = [piece(r._replace(part_count=1), 0, residues) for r, residues in records]
    assert all(r.part_count == 0 for r, _ in records)
    assert b"".join(document(whole)) == b"".join(document(in_parts))


def test_empty_document() -> None:
    assert orjson.loads(b"".join(document([]))) == {"record_count": 0, "records": []}


def test_document_flushes_by_the_bytes_of_the_headers_too() -> None:
    """Many short records with long headers: the pieces stay near the flush size (issue: 200 bytes per record)."""
    rows = [piece(record(i, gene_name="h" * 5000, seq_id=f"r{i}", length=1), 0, b"A") for i in range(2000)]
    sizes = [len(p) for p in document(rows)]
    assert len(sizes) > 5 and max(sizes) < 1024 * 1024 + 20_000


def test_object_key_keeps_only_the_name() -> None:
    uid = uuid.UUID(int=1)
    assert object_key(uid, "../../etc/passwd") == f"{uid}/passwd"
    assert object_key(uid, "C:\\data\\my reads ü.fa") == f"{uid}/my reads ü.fa"
    assert object_key(uid, "..") == f"{uid}/upload"
    assert object_key(uid, "a\x00b\n.fa") == f"{uid}/ab.fa"
    assert object_key(uid, "../x.fa", "alice") == f"alice/{uid}/x.fa"  # under the owner's prefix


def test_the_longest_accepted_name_gives_a_key_s3_accepts() -> None:
    longest_owner = "o" * 63
    assert valid_key_name(longest_owner) and not valid_key_name(longest_owner + "o")
    name = UploadRequest(filename="\U0001f600" * (MAX_FILENAME_BYTES // 4), size=1).filename  # 512 bytes of UTF-8
    assert len(object_key(uuid.uuid4(), name, longest_owner).encode()) <= MAX_KEY_BYTES


def test_progress_fraction() -> None:
    assert progress_fraction(make_upload()) == 0.4
    assert progress_fraction(make_upload(state=State.ASSEMBLING, records_total=10, records_assembled=5)) == 0.9
    assert progress_fraction(make_upload(state=State.DONE)) == 1.0
    assert progress_fraction(make_upload(bytes_total=None)) == 0.0


TESTER = Caller("tester", admin=False)


@dataclass
class Served:
    """The intake's app over fakes of its ports, and the fakes, to arrange and to look into."""

    client: TestClient
    uploads: FakeUploads
    objects: FakeObjects


def served(
    settings: Settings | None = None,
    caller: Caller | None = TESTER,
    probes: Mapping[str, Callable[[], object]] | None = None,
) -> Served:
    """The intake with every request's key taken as ``caller``'s (None: every key refused; the keys
    themselves: tests/security). A route that fails answers 500, as it would in service."""
    uploads, objects = FakeUploads(), FakeObjects()

    def authenticate(header: str | None) -> Caller:
        if caller is None:
            raise Unauthorized("the API key is not valid")
        return caller

    deps = IntakeDeps(
        Intake(settings or Settings(), uploads, objects), authenticate, probes or {}, records=FakeRecords(uploads)
    )
    return Served(TestClient(build_app(deps), raise_server_exceptions=False), uploads, objects)


@pytest.fixture(scope="module")
def intake() -> TestClient:
    """The routes over empty fakes: validation and limits answer before any of them is needed."""
    return served().client


@pytest.mark.parametrize(
    "body",
    [
        {"filename": "x.fa"},  # no size: the ticket signs it, so it is required
        {"filename": "a\x00b.fa", "size": 1},  # NUL: Postgres cannot store it, S3 keys should not hold it
        {"filename": "line\nbreak.fa", "size": 1},
        {"filename": "\U0001f600" * 200, "size": 1},  # 200 characters but 800 bytes: past the key budget
        {"filename": "x.fa", "size": -1},
        {"filename": "x.fa", "size": 2**63},  # past Postgres's bigint: was a 500
        {"filename": "x.fa", "size": 6 * 1024**4},  # past S3's 5 TiB
        {"filename": "", "size": 1},
    ],
)
def test_impossible_registrations_are_422(intake: TestClient, body: dict[str, object]) -> None:
    response = intake.post("/uploads", json=body)
    assert response.status_code == 422, response.text


def test_long_names_within_the_byte_budget_are_accepted() -> None:
    assert UploadRequest(filename="ü" * 255, size=1).filename == "ü" * 255  # 255 characters, 510 bytes


def test_sizes_above_the_upload_limit_are_413() -> None:
    intake = served(Settings(max_upload_bytes=1000))
    response = intake.client.post("/uploads", json={"filename": "x.fa", "size": 1001})
    assert response.status_code == 413 and response.json()["code"] == "upload_too_large"
    assert intake.uploads.uploads == {}


def test_request_bodies_are_capped(intake: TestClient) -> None:
    big = {"filename": "x.fa", "padding": "x" * (MAX_REQUEST_BYTES + 1)}
    response = intake.post("/uploads", json=big)
    assert response.status_code == 413 and response.json()["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams in
        yield b'{"filename": "x.fa", "padding": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    streamed = intake.post("/uploads", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413


def test_a_refused_key_is_401_before_any_route_runs() -> None:
    intake = served(caller=None)
    assert intake.client.post("/uploads", json={"filename": "x.fa", "size": 1}).status_code == 401
    assert intake.client.get(f"/uploads/{uuid.uuid4()}").status_code == 401
    assert intake.uploads.uploads == {}


def test_a_ticket_is_one_signed_put_under_the_owner_s_prefix() -> None:
    intake = served(Settings(presign_ttl_seconds=600))
    response = intake.client.post("/uploads", json={"filename": "../reads.fa", "size": 12, "format": "fasta"})
    assert response.status_code == 201, response.text
    ticket = response.json()
    upload = intake.uploads.uploads[uuid.UUID(ticket["id"])]
    assert ticket["key"] == f"tester/{upload.id}/reads.fa" == upload.key
    assert ticket["upload_method"] == "PUT" and ticket["multipart"] is None
    assert ticket["upload_url"] == f"{STORE}/{upload.bucket}/{upload.key}?put&size=12&ttl=600"
    assert ticket["upload_headers"] == {"Content-Type": "application/octet-stream"}
    assert ticket["status_url"] == f"{Settings().status_base_url}/uploads/{upload.id}"
    assert (upload.state, upload.owner, upload.bytes_total, upload.declared_format) == (
        State.AWAITING_UPLOAD, "tester", 12, "fasta"
    )  # fmt: skip
    assert upload.ticket_expires_at is not None and upload.multipart_upload_id is None


def test_a_multipart_ticket_signs_its_parts_and_lists_those_stored() -> None:
    mib = 1024 * 1024
    intake = served(Settings(multipart_threshold_bytes=10, multipart_min_part_bytes=5 * mib))
    size = 12 * mib  # three parts: 5, 5 and 2 MiB
    ticket = intake.client.post("/uploads", json={"filename": "big.fa", "size": size}).json()
    multipart = ticket["multipart"]
    assert ticket["upload_method"] == "multipart" and ticket["upload_url"] is None
    assert (multipart["upload_id"], multipart["part_size"], multipart["part_count"]) == ("m-1", 5 * mib, 3)
    assert multipart["parts_url"] == f"{ticket['status_url']}/parts"
    assert "complete_multipart_upload&uploadId=m-1" in multipart["complete_url"]
    assert intake.uploads.uploads[uuid.UUID(ticket["id"])].multipart_upload_id == "m-1"
    md5 = "A" * 22 + "=="
    parts = f"/uploads/{ticket['id']}/parts"
    signed = intake.client.post(parts, json={"parts": [{"number": 3, "md5": md5}, {"number": 1, "md5": md5}]})
    assert signed.status_code == 200, signed.text
    assert [(p["number"], p["size"]) for p in signed.json()["parts"]] == [(3, 2 * mib), (1, 5 * mib)]
    assert f"uploadId=m-1&partNumber=3&md5={md5}&size={2 * mib}" in signed.json()["parts"][0]["url"]
    beyond = intake.client.post(parts, json={"parts": [{"number": 4, "md5": md5}]})
    assert beyond.status_code == 422 and beyond.json()["code"] == "no_such_part"
    intake.objects.stored_parts["m-1"] = [(1, "e1", 5 * mib)]
    assert intake.client.get(parts).json() == {"parts": [{"number": 1, "etag": "e1", "size": 5 * mib}]}


def test_parts_are_only_for_a_multipart_upload_that_waits_for_them() -> None:
    intake = served()
    put = intake.client.post("/uploads", json={"filename": "x.fa", "size": 1}).json()
    conflict = intake.client.get(f"/uploads/{put['id']}/parts")
    assert conflict.status_code == 409 and conflict.json()["code"] == "not_awaiting_parts"
    assert intake.client.get(f"/uploads/{uuid.uuid4()}/parts").status_code == 404


def test_quotas_refuse_with_429_and_retry_after_or_413() -> None:
    intake = served(Settings(quota_uploads_in_flight=1, quota_stored_bytes=100))
    assert intake.client.post("/uploads", json={"filename": "a.fa", "size": 10}).status_code == 201
    busy = intake.client.post("/uploads", json={"filename": "b.fa", "size": 10})
    assert busy.status_code == 429 and busy.json()["code"] == "too_many_uploads_in_flight"
    assert int(busy.headers["Retry-After"]) >= 1 and busy.json()["error_id"]
    intake.uploads.uploads.clear()
    full = intake.client.post("/uploads", json={"filename": "c.fa", "size": 101})
    assert full.status_code == 413 and full.json()["code"] == "storage_quota_exceeded"
    assert "Retry-After" not in full.headers and intake.uploads.uploads == {}


def test_an_admin_key_has_no_quotas() -> None:
    intake = served(Settings(quota_uploads_in_flight=1), caller=Caller("root", admin=True))
    for name in ("a.fa", "b.fa", "c.fa"):
        assert intake.client.post("/uploads", json={"filename": name, "size": 1}).status_code == 201


def test_a_multipart_upload_whose_registration_fails_is_aborted() -> None:
    """No row would ever let the watchdog find it: the intake aborts it itself."""
    # an admin: no quota to look up first, so the registration itself is what fails
    intake = served(Settings(multipart_threshold_bytes=10), caller=Caller("tester", admin=True))
    intake.uploads.fail_on_register = RuntimeError("database away")
    response = intake.client.post("/uploads", json={"filename": "x.fa", "size": 100})
    assert response.status_code == 500 and intake.objects.aborted == ["m-1"] and intake.objects.multipart == set()


def test_a_multipart_upload_its_registration_refuses_for_a_quota_is_aborted() -> None:
    """The first look passed (here: none, the owner also holds an admin key); the decision taken
    under the owner's lock refuses: the multipart upload already started is aborted."""
    intake = served(Settings(multipart_threshold_bytes=10, quota_open_multipart_uploads=0))
    intake.uploads.admins.add("tester")
    response = intake.client.post("/uploads", json={"filename": "x.fa", "size": 100})
    assert response.status_code == 429 and response.json()["code"] == "too_many_multipart_uploads"
    assert intake.objects.aborted == ["m-1"] and intake.uploads.uploads == {}


def done_upload(uploads: FakeUploads, owner: str) -> uuid.UUID:
    """An upload of ``owner``'s taken through the fake to ``done``, its collection stored."""
    upload = uploads.add(
        make_upload(id=uuid.uuid4(), bucket="uploads", key=f"{owner}/x.fa", owner=owner, state=State.ASSEMBLING)
    )
    collection = Collection("digest-1", "names", "lengths", "sequences", "pairs", "sorted pairs", "sorted", 2)
    location = ResultLocation("results", "x.json", 40, 2)
    assert uploads.finish_assembly(upload.id, upload.generation, location, NameCounts(0, 1), collection)
    return upload.id


def test_the_status_of_a_done_upload_links_its_result_and_names_its_collection() -> None:
    intake = served(Settings(presign_ttl_seconds=60))
    upload_id = done_upload(intake.uploads, "tester")
    status = intake.client.get(f"/uploads/{upload_id}").json()
    assert (status["state"], status["progress"]["fraction"], status["collection_digest"]) == ("done", 1.0, "digest-1")
    result = status["result"]
    assert result["url"] == f"{STORE}/results/x.json?get&ttl=60"
    assert (result["bucket"], result["key"], result["size"], result["records"]) == ("results", "x.json", 40, 2)
    assert datetime.fromisoformat(result["expires_at"]) <= datetime.now(UTC) + timedelta(seconds=60)
    assert status["empty_sequences"] == 1 and status["error"] is None and status["stall"]["stalled"] is False
    found = intake.client.get("/uploads/lookup", params={"bucket": "uploads", "key": "tester/x.fa"})
    assert found.status_code == 200 and found.json()["id"] == str(upload_id)


def test_another_owner_s_upload_is_as_if_it_did_not_exist() -> None:
    intake = served()
    theirs = done_upload(intake.uploads, "someone-else")
    absent = intake.client.get(f"/uploads/{theirs}")
    assert absent.status_code == 404 and problem(absent) == {"code": "not_found", "detail": f"no upload {theirs}"}
    by_object = intake.client.get("/uploads/lookup", params={"bucket": "uploads", "key": "someone-else/x.fa"})
    assert by_object.status_code == 404 and problem(by_object) == {
        "code": "not_found",
        "detail": "no upload for s3://uploads/someone-else/x.fa",
    }
    admin = served(caller=Caller("root", admin=True))
    admin.uploads.uploads.update(intake.uploads.uploads)
    admin.uploads.collections.update(intake.uploads.collections)
    assert admin.client.get(f"/uploads/{theirs}").status_code == 200


def test_a_failed_upload_shows_its_error() -> None:
    intake = served()
    upload = intake.uploads.add(
        make_upload(id=uuid.uuid4(), owner="tester", state=State.FAILED, error_code="invalid_character",
                    error_message="bad 'X'", error_line=5, error_column=3, error_id="e-1")
    )  # fmt: skip
    error = intake.client.get(f"/uploads/{upload.id}").json()["error"]
    assert error == {"code": "invalid_character", "message": "bad 'X'", "line": 5, "column": 3, "error_id": "e-1"}


def test_health_checks_reuse_one_broker_connection() -> None:
    opened: list[FakeConnection] = []

    class FakeConnection:
        is_open = True
        dropped = False  # the broker restarted: the socket is gone, pika does not know yet

        def process_data_events(self, time_limit: float) -> None:
            if self.dropped:
                raise pika.exceptions.StreamLostError("connection lost")

        def close(self) -> None:
            self.is_open = False

    def connect(settings: Settings, heartbeat: int = 60) -> FakeConnection:
        opened.append(FakeConnection())
        return opened[-1]

    probe = BrokerProbe(Settings(), connect=connect)
    for _ in range(5):
        probe.ping()
    assert len(opened) == 1  # was a new connection (and a broker login) per call
    opened[0].is_open = False  # the broker went away
    probe.ping()
    assert len(opened) == 2
    opened[1].dropped = True  # a restart pika has not noticed: replaced at once, the check passes
    probe.ping()
    assert len(opened) == 3


def test_health_shows_no_server_s_own_words() -> None:
    """/healthz is public: a failing dependency is 'unavailable' with an error id, its detail is logged."""
    wired = create_app(Settings()).state.deps
    assert set(wired.probes) == {"postgres", "rabbitmq", "s3"}

    def refused() -> None:
        raise OSError("connection to amqp://genobase:hunter2@10.1.2.3 refused")

    # The real Postgres probe, its pool not open (the app never started): it fails too.
    intake = served(probes={"postgres": wired.probes["postgres"], "rabbitmq": refused, "s3": refused})
    response = intake.client.get("/healthz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert set(checks) == {"postgres", "rabbitmq", "s3"}
    assert all(v.startswith("unavailable (error id ") for v in checks.values()), checks
    assert "hunter2" not in response.text and "10.1.2.3" not in response.text and "pool" not in response.text


def test_health_is_ok_when_every_probe_answers() -> None:
    response = served(probes={"postgres": lambda: None, "s3": lambda: None}).client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok", "checks": {"postgres": "ok", "s3": "ok"}}


def test_a_stage_that_stopped_moving_shows_as_stalled() -> None:
    intake = served(Settings(stall_after_seconds=60))
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    stuck = intake.uploads.add(
        make_upload(id=uuid.uuid4(), owner="tester", state=State.PERSISTING, updated_at=long_ago, pickups=2,
                    picked_up_at=long_ago)
    )  # fmt: skip
    moving = intake.uploads.add(make_upload(id=uuid.uuid4(), key="k2", owner="tester", state=State.PARSING))
    stall = intake.client.get(f"/uploads/{stuck.id}").json()["stall"]
    assert stall["stalled"] is True and 7190 < stall["idle_seconds"] < 7300 and stall["pickups"] == 2
    assert datetime.fromisoformat(stall["last_pickup_at"]) == long_ago
    shown = intake.client.get(f"/uploads/{moving.id}").json()
    assert shown["stall"]["stalled"] is False and shown["progress"]["fraction"] == 0.4

from __future__ import annotations

import uuid
from collections.abc import Iterator

import orjson
import pika
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.assembler.document import ResultDocument
from services.intake.api import (
    MAX_FILENAME_BYTES,
    MAX_KEY_BYTES,
    MAX_REQUEST_BYTES,
    UploadRequest,
    create_app,
    get_caller,
    object_key,
    progress_fraction,
)
from shared.domain.access import Caller, valid_key_name
from shared.domain.record_schema import Record, ResultPiece
from shared.domain.uploads import State
from shared.runtime.settings import Settings
from tests.builders import record
from tests.unit.fakes import make_upload


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


def signed_in(app: FastAPI, caller: Caller) -> FastAPI:
    """``app`` with every request's key taken as ``caller``'s (keys themselves: tests/security)."""
    app.dependency_overrides[get_caller] = lambda: caller
    app.state.services.authenticate = lambda header: caller  # the check before a body is read
    return app


@pytest.fixture(scope="module")
def intake() -> TestClient:
    """The routes without their servers: validation and limits answer before any of them is needed."""
    app = create_app(Settings())
    return TestClient(signed_in(app, Caller("tester", admin=False)))


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
    app = signed_in(create_app(Settings(max_upload_bytes=1000)), Caller("tester", admin=False))
    response = TestClient(app).post("/uploads", json={"filename": "x.fa", "size": 1001})
    assert response.status_code == 413 and response.json()["detail"]["code"] == "upload_too_large"


def test_request_bodies_are_capped(intake: TestClient) -> None:
    big = {"filename": "x.fa", "padding": "x" * (MAX_REQUEST_BYTES + 1)}
    response = intake.post("/uploads", json=big)
    assert response.status_code == 413 and response.json()["detail"]["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams in
        yield b'{"filename": "x.fa", "padding": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    streamed = intake.post("/uploads", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413


def test_health_checks_reuse_one_broker_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.intake import api

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

    monkeypatch.setattr(api, "amqp_connect", connect)
    probe = api.BrokerProbe(Settings())
    for _ in range(5):
        probe.ping()
    assert len(opened) == 1  # was a new connection (and a broker login) per call
    opened[0].is_open = False  # the broker went away
    probe.ping()
    assert len(opened) == 2
    opened[1].dropped = True  # a restart pika has not noticed: replaced at once, the check passes
    probe.ping()
    assert len(opened) == 3


def test_health_shows_no_server_s_own_words(monkeypatch: pytest.MonkeyPatch) -> None:
    """/healthz is public: a failing dependency is 'unavailable' with an error id, its detail is logged."""
    app = create_app(Settings())
    services = app.state.services

    def refused(*_: object, **__: object) -> None:
        raise OSError("connection to amqp://genobase:hunter2@10.1.2.3 refused")

    monkeypatch.setattr(services.broker, "ping", refused)
    monkeypatch.setattr(services.store.client, "head_bucket", refused)
    response = TestClient(app).get("/healthz")  # the pool is not open either: Postgres fails too
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert set(checks) == {"postgres", "rabbitmq", "s3"}
    assert all(v.startswith("unavailable (error id ") for v in checks.values()), checks
    assert "hunter2" not in response.text and "10.1.2.3" not in response.text and "pool" not in response.text


def test_a_multipart_upload_whose_registration_fails_is_aborted(monkeypatch: pytest.MonkeyPatch) -> None:
    """No row would ever let the watchdog find it: the intake aborts it itself."""
    from services.intake import api

    class Store:
        aborted: list[str] = []

        def start_multipart(self, bucket: str, key: str) -> str:
            return "m-1"

        def abort_multipart(self, bucket: str, key: str, upload_id: str) -> bool:
            self.aborted.append(upload_id)
            return True

    def refuse(*_: object) -> None:
        raise RuntimeError("database away")

    app = create_app(Settings(multipart_threshold_bytes=10))
    # an admin: no quota to look up first, so the registration itself is what fails
    signed_in(app, Caller("tester", admin=True))
    app.state.services.store = Store()
    monkeypatch.setattr(api, "_register", refuse)
    response = TestClient(app, raise_server_exceptions=False).post("/uploads", json={"filename": "x.fa", "size": 100})
    assert response.status_code == 500 and Store.aborted == ["m-1"]

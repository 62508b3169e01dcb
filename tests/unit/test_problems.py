"""One error shape: every error of the intake and refget is an RFC 9457 problem
(``application/problem+json``), and each app's OpenAPI document declares it for every route.

The apps are the real ones (``build_app``) over the fakes; each kind of error is answered by a
different part (a route, FastAPI's validation, Starlette's router, an ASGI guard, the request-id
middleware's catch-all), so each is tried.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import structlog
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.intake.api import IntakeDeps
from services.intake.app import build_app as build_intake
from services.refget import schemas
from services.refget.api import ReadPorts
from services.refget.api import build_app as build_refget
from shared.domain.access import Caller
from shared.runtime.settings import Settings
from shared.usecases.uploads import Intake
from shared.web.guard import Throttled, Unauthorized
from shared.web.problems import Problem
from tests.problems import check_openapi, problem
from tests.unit.fakes import FakeObjects, FakeUploads
from tests.unit.fakes_reads import FakeReads, FakeRecord, collection_of, md5_of
from tests.unit.fakes_records import FakeRecords

KEY = {"Authorization": "Bearer k"}


def intake_app(settings: Settings | None = None, refuse: Unauthorized | None = None) -> FastAPI:
    def authenticate(header: str | None) -> Caller:
        if refuse is not None or header is None:
            raise refuse or Unauthorized("an API key is required: Authorization: Bearer KEY")
        return Caller("tester", admin=False)

    uploads = FakeUploads()
    intake = Intake(settings or Settings(), uploads, FakeObjects())
    return build_intake(IntakeDeps(intake, authenticate, {"postgres": lambda: None}, FakeRecords(uploads)))


def refget_app(fake: FakeReads | None = None) -> FastAPI:
    reads = fake or FakeReads()

    def authenticate(header: str | None) -> Caller:
        if header is None:
            raise Unauthorized("an API key is required: Authorization: Bearer KEY")
        return Caller("tester", admin=False)

    return build_refget(Settings(seqcol_max_post_bytes=1000), ReadPorts(reads, reads, reads), authenticate)


# --- the OpenAPI documents ----------------------------------------------------------------------------


@pytest.mark.parametrize("build", [intake_app, refget_app], ids=["intake", "refget"])
def test_every_operation_has_an_id_tags_and_problem_answers_for_its_errors(build: Any) -> None:
    document = TestClient(build()).get("/openapi.json").json()
    assert set(Problem.model_fields) <= set(document["components"]["schemas"]["Problem"]["properties"])
    assert len(check_openapi(document)) >= 6


def test_refget_s_answers_have_schemas() -> None:
    paths = TestClient(refget_app()).get("/openapi.json").json()["paths"]
    sequence = paths["/sequence/{sequence_id}"]["get"]["responses"]
    for status in ("200", "206"):
        assert set(sequence[status]["content"]) == {"text/vnd.ga4gh.refget.v2.0.0+plain", "text/plain"}
    assert {"400", "404", "406", "416"} <= set(sequence)
    expected = {
        "/sequence/service-info": "SequenceServiceInfo",
        "/sequence/{sequence_id}/metadata": "SequenceMetadata",
        "/service-info": "SeqcolServiceInfo",
        "/collection/{digest}": "Collection",
        "/attribute/collection/{attribute}/{digest}": "AttributeValue",
        "/comparison/{digest_a}/{digest_b}": "Comparison",
        "/list/collection": "DigestPage",
        "/list/attributes/{attribute}": "DigestPage",
        "/healthz": "Healthy",
    }
    for path, model in expected.items():
        content = paths[path]["get"]["responses"]["200"]["content"]
        assert content["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model}"}, path
    posted = paths["/comparison/{digest_a}"]["post"]["responses"]
    assert posted["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Comparison"}
    assert {"400", "413", "422"} <= set(posted)


def test_the_answers_match_their_declared_schemas() -> None:
    """The models are only declared (the answers are not run through them): real answers must fit."""
    fake = FakeReads()
    records = [("chr1", "ACGTACGT"), ("chr2", "TTGG")]
    fake.add_upload(records, owner="tester")
    client = TestClient(refget_app(fake))
    digest = collection_of([FakeRecord(*record) for record in records]).digest
    schemas.SequenceServiceInfo.model_validate(client.get("/sequence/service-info").json())
    schemas.SeqcolServiceInfo.model_validate(client.get("/service-info").json())
    schemas.Collection.model_validate(client.get(f"/collection/{digest}", headers=KEY).json())
    schemas.Collection.model_validate(client.get(f"/collection/{digest}?level=1", headers=KEY).json())
    schemas.Comparison.model_validate(client.get(f"/comparison/{digest}/{digest}", headers=KEY).json())
    schemas.DigestPage.model_validate(client.get("/list/collection", headers=KEY).json())
    lengths = client.get(f"/collection/{digest}?level=1", headers=KEY).json()["lengths"]
    schemas.AttributeValue.model_validate(client.get(f"/attribute/collection/lengths/{lengths}", headers=KEY).json())
    schemas.SequenceMetadata.model_validate(client.get(f"/sequence/{md5_of('ACGTACGT')}/metadata", headers=KEY).json())
    schemas.Healthy.model_validate(client.get("/healthz").json())


# --- each kind of error, as a problem -------------------------------------------------------------------


def test_a_missing_key_is_a_401_problem_with_www_authenticate() -> None:
    client = TestClient(intake_app())
    for answer in (
        client.get(f"/uploads/{uuid.uuid4()}"),  # refused by the route's dependency
        client.post("/uploads", json={"filename": "x.fa", "size": 1}),  # by the guard, before the body
    ):
        assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Bearer")
        assert problem(answer) == {
            "code": "unauthorized",
            "detail": "an API key is required: Authorization: Bearer KEY",
        }


def test_too_many_unknown_keys_is_a_429_problem_with_retry_after() -> None:
    client = TestClient(intake_app(refuse=Throttled(7)))
    for answer in (client.get(f"/uploads/{uuid.uuid4()}", headers=KEY), client.post("/uploads", json={}, headers=KEY)):
        assert answer.status_code == 429 and answer.headers["retry-after"] == "7"
        assert problem(answer)["code"] == "too_many_failed_keys"


def test_a_quota_is_a_429_problem_whose_error_id_is_the_logged_one() -> None:
    client = TestClient(intake_app(Settings(quota_uploads_in_flight=1)))
    assert client.post("/uploads", json={"filename": "a.fa", "size": 1}, headers=KEY).status_code == 201
    with structlog.testing.capture_logs() as logs:
        busy = client.post("/uploads", json={"filename": "b.fa", "size": 1}, headers=KEY)
    assert busy.status_code == 429 and int(busy.headers["retry-after"]) >= 1
    assert problem(busy)["code"] == "too_many_uploads_in_flight"
    (logged,) = [line for line in logs if line["event"] == "registration refused by a quota"]
    assert logged["error_id"] == busy.json()["error_id"]


def test_an_unknown_upload_and_an_unknown_route_are_the_same_404_problem() -> None:
    client = TestClient(intake_app())
    with structlog.testing.capture_logs() as logs:
        upload = client.get(f"/uploads/{uuid.uuid4()}", headers=KEY)
    assert upload.status_code == 404 and problem(upload)["code"] == "not_found"
    (logged,) = [line for line in logs if line["event"] == "request refused"]
    assert (logged["error_id"], logged["detail"]) == (upload.json()["error_id"], upload.json()["detail"])
    route = client.get("/nowhere", headers=KEY)
    assert route.status_code == 404 and problem(route) == {
        "code": "not_found",
        "detail": "nothing is served at this path",
    }
    assert upload.json()["error_id"] != route.json()["error_id"]  # one per error


def test_a_wrong_method_is_a_405_problem_with_allow() -> None:
    for client in (TestClient(intake_app()), TestClient(refget_app())):
        answer = client.delete("/healthz", headers=KEY)
        assert answer.status_code == 405 and answer.headers["allow"] == "GET"
        assert problem(answer)["code"] == "method_not_allowed"


def test_a_body_over_the_limit_is_a_413_problem() -> None:
    answer = TestClient(intake_app()).post("/uploads", content=b"x" * 100_000, headers=KEY)
    assert answer.status_code == 413 and problem(answer)["code"] == "request_too_large"
    posted = TestClient(refget_app()).post("/comparison/x", content=b"[" * 2000, headers=KEY)
    assert posted.status_code == 413 and problem(posted)["code"] == "request_too_large"
    deep = TestClient(refget_app()).post("/comparison/x", content=b"[[[[[1]]]]]", headers=KEY)
    assert deep.status_code == 400 and problem(deep)["code"] == "too_deep"


def test_an_invalid_request_is_a_422_problem_naming_the_fields_never_their_values() -> None:
    secret = "s3cr3t-" * 50
    answer = TestClient(intake_app()).post("/uploads", json={"filename": secret, "size": "lots"}, headers=KEY)
    assert answer.status_code == 422 and secret[:20] not in answer.text and "lots" not in answer.text
    body = problem(answer)
    assert body["code"] == "invalid_request"
    assert ["body", "size"] in [error["loc"] for error in body["errors"]]
    assert all(set(error) == {"loc", "msg", "type"} for error in body["errors"])
    assert "body.size" in body["detail"]
    many = TestClient(intake_app()).post("/uploads", json=[{"a": i} for i in range(50)], headers=KEY)
    assert many.status_code == 422 and len(problem(many)["errors"]) <= 10
    page = TestClient(refget_app()).get("/list/collection?page=-9999", headers=KEY)
    assert page.status_code == 422 and "-9999" not in page.text
    assert [error["loc"] for error in problem(page)["errors"]] == [["query", "page"]]


def test_an_unhandled_error_is_a_500_problem_without_its_text() -> None:
    uploads = FakeUploads()
    uploads.fail_on_register = RuntimeError("password=hunter2 at 10.1.2.3")  # the database, failing
    admin = Caller("root", admin=True)  # no quota to look up first: the registration itself fails
    app = build_intake(
        IntakeDeps(Intake(Settings(), uploads, FakeObjects()), lambda _header: admin, {}, FakeRecords(uploads))
    )
    with structlog.testing.capture_logs() as logs:
        answer = TestClient(app, raise_server_exceptions=False).post("/uploads", json={"filename": "x", "size": 1})
    assert answer.status_code == 500 and "hunter2" not in answer.text and "10.1.2.3" not in answer.text
    assert problem(answer) == {"code": "internal_error", "detail": "the request failed"}
    (logged,) = [line for line in logs if line["event"] == "request failed"]
    assert logged["error_id"] == answer.json()["error_id"]


def test_refget_s_own_refusals_are_problems() -> None:
    fake = FakeReads()
    fake.add_upload([("chr1", "ACGTACGT")], owner="tester")
    client = TestClient(refget_app(fake), raise_server_exceptions=False)
    sequence = f"/sequence/{md5_of('ACGTACGT')}"
    cases = [
        (client.get(sequence), 401, "unauthorized"),
        (client.get("/sequence/" + "0" * 32, headers=KEY), 404, "not_found"),
        (client.get(sequence, headers={**KEY, "Accept": "image/png"}), 406, "not_acceptable"),
        (client.get(f"{sequence}?start=5&end=99", headers=KEY), 416, "range_not_satisfiable"),
        (client.get(f"{sequence}?start=x", headers=KEY), 400, "bad_request"),
        (client.post("/comparison/x", json=[1], headers=KEY), 400, "bad_request"),
    ]
    for answer, status, code in cases:
        assert answer.status_code == status and problem(answer)["code"] == code, answer.text
    fake.healthy = False
    failed = client.get("/healthz")
    assert failed.status_code == 500 and problem(failed)["code"] == "internal_error"


def test_an_unhealthy_intake_is_a_503_problem_with_its_checks() -> None:
    def away() -> None:
        raise OSError("no route to 10.9.9.9")

    uploads = FakeUploads()
    intake = Intake(Settings(), uploads, FakeObjects())
    probes = {"postgres": lambda: None, "s3": away}
    app = build_intake(IntakeDeps(intake, lambda _h: Caller("tester", admin=False), probes, FakeRecords(uploads)))
    answer = TestClient(app).get("/healthz")
    assert answer.status_code == 503 and "10.9.9.9" not in answer.text
    body = problem(answer)
    assert (body["code"], body["detail"], body["checks"]["postgres"]) == ("unavailable", "unavailable: s3", "ok")
    assert body["checks"]["s3"].startswith("unavailable (error id ")

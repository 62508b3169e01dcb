"""An owner's quotas against the running stack: rates, counts and bytes at registration, and the gzip
content its uploads may inflate together at parse time.

An intake of this module's own runs with low quotas, beside the session's, on the same database,
bucket and pipeline; each test has owners of its own, so that one's counts do not reach another.
"""

from __future__ import annotations

import contextlib
import gzip
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from shared.postgres.connection import connect
from shared.postgres.keys import PostgresKeys
from shared.runtime.settings import Settings
from shared.usecases.keys import create_key
from tests import http
from tests.conftest import Pipeline, another_process
from tests.problems import problem
from tests.security.helpers import keys_cli, make_s3_owner, s3_as

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024
QUOTAS = {
    "GENOBASE_QUOTA_REGISTRATIONS_PER_MINUTE": "4",
    "GENOBASE_QUOTA_UPLOADS_IN_FLIGHT": "3",
    "GENOBASE_QUOTA_OPEN_MULTIPART_UPLOADS": "1",
    "GENOBASE_QUOTA_STORED_BYTES": str(5 * MiB // 2),
    "GENOBASE_MULTIPART_THRESHOLD_BYTES": str(1 * MiB),
}
FASTA = b">a\nACGT\n"


@pytest.fixture(scope="module")
def intake(pipeline: Pipeline) -> Iterator[str]:
    with another_process(pipeline, "intake", "GENOBASE_INTAKE_PORT", QUOTAS) as url:
        yield url


def new_owner(settings: Settings) -> str:
    """A fresh owner's key (not an admin: admin keys have no quotas)."""
    return new_named_owner(settings)[1]


def new_named_owner(settings: Settings) -> tuple[str, str]:
    name = f"quota-{uuid.uuid4().hex[:10]}"
    return name, create_key(PostgresKeys.from_settings(settings), name, admin=False)


def client(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}"})


def register(owner: httpx.Client, size: int = len(FASTA)) -> httpx.Response:
    return owner.post("/uploads", json={"filename": "q.fa", "size": size})


def assert_refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    detail = problem(response)
    assert detail["code"] == code and detail["detail"]
    assert response.headers["x-request-id"]
    return detail


def test_registrations_beyond_the_rate_are_429_with_retry_after(
    pipeline: Pipeline, settings: Settings, intake: str
) -> None:
    name, key = new_named_owner(settings)
    owner = client(intake, key)
    assert [register(owner).status_code for _ in range(3)] == [201] * 3  # in flight: 3 is also its limit
    # the rate counts registrations, not what they became: an ended ticket frees a place in flight only
    with connect(settings, autocommit=True) as conn:
        conn.execute("UPDATE uploads SET state = 'expired' WHERE owner = %s", (name,))
    assert register(owner).status_code == 201
    refused = register(owner)
    assert_refused(refused, 429, "registration_rate_exceeded")
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    # admin keys are not limited
    admin = client(intake, pipeline.api_key)
    assert [register(admin).status_code for _ in range(6)] == [201] * 6


def test_uploads_in_flight_beyond_the_quota_are_429_until_one_ends(
    pipeline: Pipeline, settings: Settings, intake: str
) -> None:
    owner = client(intake, new_owner(settings))
    tickets = [register(owner).json() for _ in range(3)]
    refused = register(owner)
    assert_refused(refused, 429, "too_many_uploads_in_flight")
    assert int(refused.headers["retry-after"]) >= 1
    assert (
        http.put(tickets[0]["upload_url"], content=FASTA, headers=tickets[0].get("upload_headers") or {}).status_code
        == 200
    )
    assert pipeline.wait_for(tickets[0]["id"])["state"] == "done"
    assert register(owner).status_code == 201  # a finished upload is no longer in flight


def test_concurrent_registrations_cannot_overrun_a_quota(settings: Settings, intake: str) -> None:
    """Twelve registrations at once for three places: the owner's lock lets exactly three through."""
    owner_key = new_owner(settings)

    def one(_: int) -> int:
        with client(intake, owner_key) as owner:
            return register(owner).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(one, range(12)))
    assert sorted(statuses) == [201] * 3 + [429] * 9, statuses


def test_open_multipart_uploads_beyond_the_quota_are_429(settings: Settings, intake: str) -> None:
    owner = client(intake, new_owner(settings))
    first = register(owner, 3 * MiB // 2)
    assert first.status_code == 201 and first.json()["upload_method"] == "multipart"
    assert_refused(register(owner, 3 * MiB // 2), 429, "too_many_multipart_uploads")
    assert register(owner, 1000).status_code == 201  # a single PUT is not a multipart upload


def test_stored_bytes_beyond_the_quota_are_413(settings: Settings, intake: str) -> None:
    owner = client(intake, new_owner(settings))
    kib = 1024
    assert [register(owner, 900 * kib).status_code for _ in range(2)] == [201, 201]  # declared sizes are reserved
    refused = register(owner, 900 * kib)  # 2,700 KiB of a quota of 2,560 KiB
    assert_refused(refused, 413, "storage_quota_exceeded")
    assert "retry-after" not in refused.headers  # waiting does not make room
    assert register(owner, 500 * kib).status_code == 201  # what still fits is allowed


# --- inflation, at parse time -------------------------------------------------------------------

INFLATION_QUOTA = 3 * MiB
CONTENT = b">a\n" + b"ACGT" * (MiB // 2) + b"\n"  # 2 MiB of FASTA, a few KiB of gzip


@contextlib.contextmanager
def parser_with(pipeline: Pipeline, settings: dict[str, str]) -> Iterator[None]:
    """The run's parser restarted with ``settings`` (a low quota); restored afterwards."""
    pipeline.processes.stop("parser")
    try:
        pipeline.start_consuming("parser", settings)
        yield
    finally:
        pipeline.processes.stop("parser")
        pipeline.start_consuming("parser")


@pytest.fixture
def low_inflation_parser(pipeline: Pipeline) -> Iterator[None]:
    with parser_with(pipeline, {"GENOBASE_QUOTA_INFLATED_BYTES": str(INFLATION_QUOTA)}):
        yield


def test_an_owners_gzip_uploads_together_cannot_inflate_beyond_its_quota(
    pipeline: Pipeline, settings: Settings, low_inflation_parser: None
) -> None:
    """Each file is far inside the per-file limits; the second takes the owner past its quota."""
    owner = client(pipeline.settings.status_base_url, new_owner(settings))
    data = gzip.compress(CONTENT)
    assert len(CONTENT) > 300 * len(data)  # a small file that inflates a lot
    outcomes = []
    for _ in range(2):
        ticket = register(owner, len(data)).json()
        assert (
            http.put(ticket["upload_url"], content=data, headers=ticket.get("upload_headers") or {}).status_code == 200
        )
        outcomes.append(pipeline.wait_for(ticket["id"]))
    assert outcomes[0]["state"] == "done", outcomes[0]
    assert outcomes[1]["state"] == "failed" and outcomes[1]["error"]["code"] == "inflation_quota_exceeded"
    assert outcomes[1]["error"]["error_id"]
    with connect(settings, autocommit=True) as conn:
        drawn = conn.execute(
            "SELECT sum(inflated_bytes) AS total FROM uploads WHERE id = ANY(%s)",
            ([uuid.UUID(o["id"]) for o in outcomes],),
        ).fetchone()
    assert drawn is not None and len(CONTENT) <= drawn["total"] <= INFLATION_QUOTA


def test_parses_at_once_cannot_overdraw_an_owners_inflation_quota(settings: Settings) -> None:
    """Ten parses of one owner draw at the same instant, on ten sessions: room for four, four get it."""
    from shared.domain.uploads import Registration
    from shared.postgres.connection import Database
    from shared.postgres.uploads import PostgresUploads

    name, _ = new_named_owner(settings)
    ids = [uuid.uuid4() for _ in range(10)]
    store = PostgresUploads(Database(settings))
    try:
        for upload_id in ids:
            store.register(
                Registration(
                    upload_id, settings.uploads_bucket, f"{name}/{upload_id}/x.fa.gz", "x.fa.gz", None, "nucleotide",
                    1, name,
                )
            )  # fmt: skip
    finally:
        store.reset()

    def draw(upload_id: uuid.UUID) -> bool:
        one_session = PostgresUploads(Database(settings))
        try:
            return one_session.draw_inflation(upload_id, 0, 10 * MiB, 45 * MiB)
        finally:
            one_session.reset()

    with ThreadPoolExecutor(max_workers=10) as pool:
        granted = list(pool.map(draw, ids))
    assert granted.count(True) == 4, granted
    with connect(settings, autocommit=True) as conn:
        total = conn.execute("SELECT sum(inflated_bytes) AS n FROM uploads WHERE owner = %s", (name,)).fetchone()
    assert total is not None and total["n"] == 40 * MiB


DIRECT_QUOTA = 64 * 1024


@pytest.fixture
def low_stored_bytes_parser(pipeline: Pipeline) -> Iterator[None]:
    with parser_with(pipeline, {"GENOBASE_QUOTA_STORED_BYTES": str(DIRECT_QUOTA)}):
        yield


def test_an_owners_direct_writes_are_held_to_its_quotas(
    pipeline: Pipeline, settings: Settings, low_stored_bytes_parser: None
) -> None:
    """Registrations meet the quotas at the intake; what an owner writes with its own S3 keys meets
    them in the parser, before any of it is read."""
    owner = make_s3_owner(settings, f"direct-{uuid.uuid4().hex[:6]}")
    try:
        s3 = s3_as(settings, owner["access"], owner["secret"])
        bucket = settings.uploads_bucket
        small, big = f"{owner['name']}/small.fa", f"{owner['name']}/big.fa"
        s3.put_object(Bucket=bucket, Key=small, Body=b">s\nACGT\n")
        assert pipeline.wait_for_object(bucket, small)["state"] == "done"
        s3.put_object(Bucket=bucket, Key=big, Body=b">big\n" + b"ACGT" * (20 * 1024) + b"\n")  # 80 KiB
        status = pipeline.wait_for_object(bucket, big)
        assert status["state"] == "failed" and status["error"]["code"] == "quota_exceeded", status
        assert "storage_quota_exceeded" in status["error"]["message"]
        assert status["progress"]["records_done"] == 0
    finally:
        keys_cli(settings, "revoke", owner["name"])

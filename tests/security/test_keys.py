"""API keys and owners against the running stack: who can reach which route and which upload."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from shared.postgres.connection import connect
from shared.postgres.keys import PostgresKeys
from shared.runtime.settings import Settings
from shared.s3.store import ObjectStore
from shared.usecases.keys import create_key, revoke_key
from tests.conftest import Pipeline
from tests.helpers import upload_via_intake
from tests.security.helpers import client

pytestmark = pytest.mark.e2e
FASTA = b">a\nACGT\n"


@pytest.fixture(scope="module")
def owners(settings: Settings) -> Iterator[dict[str, str]]:
    """Two owners' keys and a revoked one, made for this module."""
    token = uuid.uuid4().hex[:8]
    names = {"alice": f"alice-{token}", "bob": f"bob-{token}", "gone": f"gone-{token}"}
    store = PostgresKeys.from_settings(settings)
    made = {role: create_key(store, name, admin=False) for role, name in names.items()}
    revoke_key(store, names["gone"])
    made.update({f"{role}-name": name for role, name in names.items()})
    yield made


ROUTES = [("POST", "/uploads", {"json": {"filename": "x.fa", "size": 1}}), ("GET", f"/uploads/{uuid.uuid4()}", {}),
          ("GET", "/uploads", {"params": {"bucket": "uploads", "key": "k"}}),
          ("DELETE", f"/uploads/{uuid.uuid4()}", {})]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "extra"), ROUTES)
@pytest.mark.parametrize("who", ["none", "wrong", "revoked"])
def test_every_route_needs_a_valid_key(
    pipeline: Pipeline, owners: dict[str, str], method: str, path: str, extra: dict[str, object], who: str
) -> None:
    key = {"none": None, "wrong": "gbk_not-a-key", "revoked": owners["gone"]}[who]
    response = client(pipeline, key).request(method, path, **extra)  # type: ignore[arg-type]
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["detail"]["code"] == "unauthorized"


def test_health_and_the_api_description_stay_public(pipeline: Pipeline) -> None:
    anonymous = client(pipeline, None)
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/openapi.json").status_code == 200


def test_an_owner_sees_only_its_own_uploads(pipeline: Pipeline, owners: dict[str, str]) -> None:
    alice, bob = client(pipeline, owners["alice"]), client(pipeline, owners["bob"])
    ticket = alice.post("/uploads", json={"filename": "mine.fa", "size": len(FASTA)}).raise_for_status().json()
    assert ticket["key"].startswith(f"{owners['alice-name']}/{ticket['id']}/")
    assert alice.get(f"/uploads/{ticket['id']}").status_code == 200
    # Another owner's upload answers exactly like one that does not exist.
    missing = bob.get(f"/uploads/{uuid.uuid4()}")
    hidden = bob.get(f"/uploads/{ticket['id']}")
    assert hidden.status_code == missing.status_code == 404
    by_object = bob.get("/uploads", params={"bucket": ticket["bucket"], "key": ticket["key"]})
    assert by_object.status_code == 404
    # nor delete it: the same 404, and nothing changes
    not_deleted, absent = bob.delete(f"/uploads/{ticket['id']}"), bob.delete(f"/uploads/{uuid.uuid4()}")
    assert not_deleted.status_code == absent.status_code == 404
    assert alice.get(f"/uploads/{ticket['id']}").json()["state"] == "awaiting_upload"
    assert pipeline.http.get(f"/uploads/{ticket['id']}").status_code == 200  # admin keys see all


def test_an_object_written_under_a_prefix_belongs_to_that_owner(
    pipeline: Pipeline, settings: Settings, owners: dict[str, str]
) -> None:
    store = ObjectStore(settings)
    mine = f"{owners['alice-name']}/direct/{uuid.uuid4()}.fa"
    nobodys = f"nobody-{uuid.uuid4().hex[:6]}/{uuid.uuid4()}.fa"
    for key in (mine, nobodys):
        store.client.put_object(Bucket=settings.uploads_bucket, Key=key, Body=FASTA)
    alice = client(pipeline, owners["alice"])
    for key, alice_sees in ((mine, True), (nobodys, False)):
        status = pipeline.wait_for_object(settings.uploads_bucket, key)
        assert status["state"] == "done"
        seen = alice.get("/uploads", params={"bucket": settings.uploads_bucket, "key": key})
        assert seen.status_code == (200 if alice_sees else 404)


def test_keys_are_made_listed_and_revoked_by_the_cli(pipeline: Pipeline, settings: Settings) -> None:
    env = {
        "GENOBASE_PG_DSN": settings.pg_dsn.get_secret_value(),
        "GENOBASE_STACK_FILE": "/nonexistent/stack.env",
        "PATH": "/usr/bin:/bin",
    }
    name = f"cli-{uuid.uuid4().hex[:8]}"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "genobase.cli", "keys", *args], env=env, capture_output=True, text=True, timeout=60
        )

    made = cli("create", name)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]  # the key, alone on the last line
    assert key.startswith("gbk_") and key not in cli("list").stdout
    assert client(pipeline, key).post("/uploads", json={"filename": "x.fa", "size": 1}).status_code == 201
    assert cli("revoke", name).returncode == 0
    assert client(pipeline, key).post("/uploads", json={"filename": "x.fa", "size": 1}).status_code == 401
    assert "revoked" in next(line for line in cli("list").stdout.splitlines() if line.startswith(name))
    with connect(settings, autocommit=True) as conn:
        stored = conn.execute("SELECT key_hash FROM api_keys WHERE name = %s", (name,)).fetchone()
    assert stored is not None and key not in str(stored)  # only the hash is kept


def test_upload_via_intake_still_works_for_the_admin(pipeline: Pipeline) -> None:
    ticket = upload_via_intake(pipeline, "admin.fa", FASTA)
    assert pipeline.wait_for(ticket["id"])["state"] == "done"

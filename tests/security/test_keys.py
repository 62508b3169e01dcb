"""API keys and owners against the running stack: who can reach which route and which upload."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from shared.domain.access import key_hash, key_id
from shared.postgres.connection import connect
from shared.postgres.keys import PostgresKeys
from shared.runtime.settings import Settings
from shared.s3.store import ObjectStore
from shared.usecases.keys import create_key, revoke_key
from tests.conftest import Pipeline
from tests.helpers import upload_via_intake
from tests.security.helpers import client, keys_cli

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
          ("GET", "/uploads/lookup", {"params": {"bucket": "uploads", "key": "k"}}),
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
    assert response.json()["code"] == "unauthorized"


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
    by_object = bob.get("/uploads/lookup", params={"bucket": ticket["bucket"], "key": ticket["key"]})
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
        seen = alice.get("/uploads/lookup", params={"bucket": settings.uploads_bucket, "key": key})
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
    line = next(line.split() for line in cli("list").stdout.splitlines() if f" {name} " in line)
    assert line[0] == key_id(key_hash(key)) and line[-3] == "revoked"
    with connect(settings, autocommit=True) as conn:
        stored = conn.execute("SELECT key_hash FROM api_keys WHERE owner = %s", (name,)).fetchone()
    assert stored is not None and key not in str(stored)  # only the hash is kept


def _listed(settings: Settings, key_id: str) -> list[str]:
    """The ``keys list`` line of one key, split: id, owner, role, created (2), last use (1 or 2), state."""
    listing = keys_cli(settings, "list")
    assert listing.returncode == 0, listing.stderr
    return next(line.split() for line in listing.stdout.splitlines() if line.startswith(key_id))


def _made(made: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    """The id and the key ``keys create`` printed."""
    assert made.returncode == 0, made.stderr
    *_, said, key = made.stdout.strip().splitlines()
    made_id = said.split()[1]
    assert made_id == key_id(key_hash(key)), made.stdout
    return made_id, key


def test_a_key_is_rotated_with_no_gap(pipeline: Pipeline, settings: Settings, refget_url: str) -> None:
    """A second key of the owner works before the first is revoked; the first alone ends; the
    owner's uploads are the new key's; each key's last use is listed, refget's reads included."""
    name = f"rot-{uuid.uuid4().hex[:8]}"
    old_id, old = _made(keys_cli(settings, "create", name))
    assert _listed(settings, old_id)[5] == "never"
    ticket = client(pipeline, old).post("/uploads", json={"filename": "x.fa", "size": 1}).raise_for_status().json()
    assert _listed(settings, old_id)[5] != "never"  # the intake's look-up recorded the use
    refused = keys_cli(settings, "create", name)  # not a new owner by chance
    assert refused.returncode == 1 and "--another" in refused.stderr
    new_id, new = _made(keys_cli(settings, "create", name, "--another"))
    assert new_id != old_id
    # both keys work at once: no moment without a valid key
    for key in (old, new):
        assert client(pipeline, key).get(f"/uploads/{ticket['id']}").status_code == 200
    # refget's role writes a key's last use too (and nothing else of a key)
    assert _listed(settings, new_id)[5] != "never"
    reader = f"rdr-{uuid.uuid4().hex[:8]}"
    reader_id, reader_key = _made(keys_cli(settings, "create", reader))
    listing = httpx.get(f"{refget_url}/list/collection", headers={"Authorization": f"Bearer {reader_key}"}, timeout=30)
    assert listing.status_code == 200, listing.text
    assert _listed(settings, reader_id)[5] != "never"
    revoked = keys_cli(settings, "revoke", old_id)
    assert revoked.returncode == 0 and "holds other active keys" in revoked.stdout, revoked.stderr
    assert client(pipeline, old).get(f"/uploads/{ticket['id']}").status_code == 401
    assert client(pipeline, new).get(f"/uploads/{ticket['id']}").status_code == 200
    assert client(pipeline, new).post("/uploads", json={"filename": "y.fa", "size": 1}).status_code == 201
    assert _listed(settings, old_id)[-3] == "revoked" and _listed(settings, new_id)[-1] == "active"
    time.sleep(2)  # a watchdog sweep or two: the owner is not revoked, its waiting ticket stays
    assert pipeline.status(ticket["id"])["state"] == "awaiting_upload"


def test_upload_via_intake_still_works_for_the_admin(pipeline: Pipeline) -> None:
    ticket = upload_via_intake(pipeline, "admin.fa", FASTA)
    assert pipeline.wait_for(ticket["id"])["state"] == "done"

"""Least privilege against the running stack: each credential reaches what it needs, and no more.

Owners' S3 users, the services' S3 users, signed ticket sizes and their expiry, the broker's
guest, the files that hold secrets and the command lines of every process.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import pika
import psycopg
import pytest
from botocore.exceptions import ClientError

from genobase import stack
from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings
from shared.s3.store import UPLOAD_CONTENT_TYPE, ObjectStore
from tests.conftest import Pipeline
from tests.security.helpers import client, keys_cli, make_s3_owner, s3_as, service_s3
from tests.stack import NativeProvider, StackProvider, _as_kwargs

pytestmark = pytest.mark.e2e
FASTA = b">a\nACGT\n"
REFUSED = {"AccessDenied", "InvalidAccessKeyId", "403", "SignatureDoesNotMatch"}


def refused(call: Callable[[], object]) -> bool:
    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"] in REFUSED
    return False


@pytest.fixture(scope="module")
def s3_owner(pipeline: Pipeline, settings: Settings) -> Iterator[dict[str, str]]:
    owner = make_s3_owner(settings, f"s3o-{uuid.uuid4().hex[:8]}")
    yield owner
    keys_cli(settings, "revoke", owner["name"])


def test_owner_s3_credentials_write_only_under_their_prefix(
    pipeline: Pipeline, settings: Settings, s3_owner: dict[str, str]
) -> None:
    s3 = s3_as(settings, s3_owner["access"], s3_owner["secret"])
    bucket, mine = settings.uploads_bucket, f"{s3_owner['name']}/direct/{uuid.uuid4()}.fa"
    s3.put_object(Bucket=bucket, Key=mine, Body=FASTA)
    status = pipeline.wait_for_object(bucket, mine)
    assert status["state"] == "done", pipeline.logs()
    seen = client(pipeline, s3_owner["key"]).get("/uploads/lookup", params={"bucket": bucket, "key": mine})
    assert seen.status_code == 200 and seen.json()["state"] == "done"  # the object is the owner's
    outside = [
        lambda: s3.put_object(Bucket=bucket, Key=f"someone-else/{uuid.uuid4()}.fa", Body=FASTA),
        lambda: s3.put_object(Bucket=bucket, Key=f"{s3_owner['name']}x/{uuid.uuid4()}.fa", Body=FASTA),
        lambda: s3.put_object(Bucket=bucket, Key="at-the-root.fa", Body=FASTA),
        lambda: s3.get_object(Bucket=bucket, Key=mine),  # not even its own object back
        lambda: s3.delete_object(Bucket=bucket, Key=mine),
        lambda: s3.list_objects_v2(Bucket=bucket),
        lambda: s3.put_object(Bucket=settings.results_bucket, Key=f"{uuid.uuid4()}.json", Body=b"{}"),
        lambda: s3.list_objects_v2(Bucket=settings.results_bucket),
        lambda: s3.create_bucket(Bucket=f"gbt-{uuid.uuid4().hex[:10]}"),
    ]
    assert [refused(call) for call in outside] == [True] * len(outside)
    assert ObjectStore(settings).exists(bucket, mine)  # the refused delete deleted nothing


def test_revoking_an_owner_ends_its_s3_credentials_too(pipeline: Pipeline, settings: Settings) -> None:
    owner = make_s3_owner(settings, f"s3r-{uuid.uuid4().hex[:8]}")
    s3 = s3_as(settings, owner["access"], owner["secret"])
    s3.put_object(Bucket=settings.uploads_bucket, Key=f"{owner['name']}/before.fa", Body=FASTA)
    revoked = keys_cli(settings, "revoke", owner["name"])
    assert revoked.returncode == 0 and "S3 user" in revoked.stdout, revoked.stderr
    poll_until(
        lambda: refused(lambda: s3.put_object(Bucket=settings.uploads_bucket, Key=f"{owner['name']}/a.fa", Body=FASTA)),
        timeout=10,  # RGW caches users for a moment
        interval=0.5,
        what="the revoked S3 credentials refused",
    )
    assert client(pipeline, owner["key"]).get(f"/uploads/{uuid.uuid4()}").status_code == 401


def test_each_service_s3_user_reaches_only_its_own_part(
    pipeline: Pipeline, settings: Settings, stack_env: dict[str, str]
) -> None:
    uploads, results = settings.uploads_bucket, settings.results_bucket
    key = f"svc-check/{uuid.uuid4()}.fa"
    ObjectStore(settings).client.put_object(Bucket=uploads, Key=key, Body=FASTA)
    assert pipeline.wait_for_object(uploads, key)["state"] == "done"
    parser, assembler, intake, downloads = (
        service_s3(settings, stack_env, s) for s in ("parser", "assembler", "intake", "downloads")
    )
    assert parser.get_object(Bucket=uploads, Key=key)["Body"].read() == FASTA  # what it does
    result_key = f"svc-check/{uuid.uuid4()}.json"
    assembler.put_object(Bucket=results, Key=result_key, Body=b"{}")
    assert downloads.get_object(Bucket=results, Key=result_key)["Body"].read() == b"{}"  # a result link's read
    beyond = {
        "parser writes uploads": lambda: parser.put_object(Bucket=uploads, Key=key, Body=b"x"),
        "parser reads results": lambda: parser.get_object(Bucket=results, Key=result_key),
        "parser lists uploads": lambda: parser.list_objects_v2(Bucket=uploads),
        "assembler reads uploads": lambda: assembler.get_object(Bucket=uploads, Key=key),
        "assembler writes uploads": lambda: assembler.put_object(Bucket=uploads, Key=key, Body=b"x"),
        "assembler deletes results": lambda: assembler.delete_object(Bucket=results, Key=result_key),
        "intake reads uploads": lambda: intake.get_object(Bucket=uploads, Key=key),
        "intake reads results": lambda: intake.get_object(Bucket=results, Key=result_key),
        "downloads reads uploads": lambda: downloads.get_object(Bucket=uploads, Key=key),
        "downloads writes uploads": lambda: downloads.put_object(Bucket=uploads, Key=key, Body=b"x"),
        "downloads writes results": lambda: downloads.put_object(Bucket=results, Key=result_key, Body=b"x"),
        "intake writes results": lambda: intake.put_object(Bucket=results, Key=result_key, Body=b"x"),
        "intake deletes uploads": lambda: intake.delete_object(Bucket=uploads, Key=key),
        "intake deletes results": lambda: intake.delete_object(Bucket=results, Key=result_key),
        "parser deletes uploads": lambda: parser.delete_object(Bucket=uploads, Key=key),
        "downloads deletes results": lambda: downloads.delete_object(Bucket=results, Key=result_key),
    }
    allowed = [name for name, call in beyond.items() if not refused(call)]
    assert allowed == []
    watchdog = service_s3(settings, stack_env, "watchdog")
    beyond = {
        "watchdog reads uploads": lambda: watchdog.get_object(Bucket=uploads, Key=key),
        "watchdog writes results": lambda: watchdog.put_object(Bucket=results, Key=result_key, Body=b"x"),
        "watchdog reads results": lambda: watchdog.get_object(Bucket=results, Key=result_key),
        "watchdog writes uploads": lambda: watchdog.put_object(Bucket=uploads, Key=key, Body=b"x"),
        "watchdog heads uploads": lambda: watchdog.head_object(Bucket=uploads, Key=key),
    }
    assert [name for name, call in beyond.items() if not refused(call)] == []
    # Its reconciler lists the uploads bucket (etags, sizes, times) to find lost notifications.
    listed = watchdog.list_objects_v2(Bucket=uploads, Prefix=key, MaxKeys=1)["Contents"]
    assert [entry["Key"] for entry in listed] == [key]
    # What it may do beyond aborting multipart uploads: delete, in both buckets (the purge of a
    # deleted upload, a validated upload's object; the only user that may).
    watchdog.delete_object(Bucket=results, Key=result_key)
    watchdog.delete_object(Bucket=uploads, Key=key)
    store = ObjectStore(settings)
    assert not store.exists(results, result_key) and not store.exists(uploads, key)
    for service in ("persister", "refget"):  # no S3 at all
        assert "GENOBASE_S3_SECRET_KEY" not in stack.service_settings(service, stack_env)


def test_a_presigned_put_takes_exactly_the_declared_size(pipeline: Pipeline, settings: Settings) -> None:
    ticket = pipeline.http.post("/uploads", json={"filename": "sized.fa", "size": len(FASTA)}).raise_for_status().json()
    for body in (FASTA + b">b\nAC\n", FASTA[:-2], b""):
        put = httpx.put(ticket["upload_url"], content=body, headers=ticket["upload_headers"], timeout=30)
        assert put.status_code == 403, (len(body), put.status_code, put.text)
    assert not ObjectStore(settings).exists(ticket["bucket"], ticket["key"])
    assert pipeline.status(ticket["id"])["state"] == "awaiting_upload"
    assert (
        httpx.put(ticket["upload_url"], content=FASTA, headers=ticket["upload_headers"], timeout=30).status_code == 200
    )
    assert pipeline.wait_for(ticket["id"])["state"] == "done"


def test_sizes_above_the_limit_get_no_ticket(pipeline: Pipeline, settings: Settings) -> None:
    limit = pipeline.settings.max_upload_bytes
    response = pipeline.http.post("/uploads", json={"filename": "huge.fq", "size": limit + 1})
    assert response.status_code == 413 and response.json()["code"] == "upload_too_large"
    assert pipeline.http.post("/uploads", json={"filename": "unsized.fq"}).status_code == 422


def test_an_unused_ticket_stops_working_and_expires(
    pipeline: Pipeline, settings: Settings, stack_env: dict[str, str]
) -> None:
    ticket = pipeline.http.post("/uploads", json={"filename": "late.fa", "size": len(FASTA)}).raise_for_status().json()
    # The store refuses a URL past its lifetime: one signed the intake's way, with the intake's user, for 1 s.
    access, secret = stack.service_key_settings("intake")
    own = {"GENOBASE_S3_ACCESS_KEY": stack_env[access], "GENOBASE_S3_SECRET_KEY": stack_env[secret]}
    intake = Settings(**_as_kwargs({**stack_env, **own}))
    short = ObjectStore(intake).presign_put(ticket["bucket"], ticket["key"], 1, len(FASTA))
    time.sleep(2.5)
    assert httpx.put(short, content=FASTA, headers={"Content-Type": UPLOAD_CONTENT_TYPE}, timeout=30).status_code == 403
    # Its ticket's end, moved into the past (as the clock would), then the watchdog's sweep.
    with psycopg.connect(settings.pg_dsn.get_secret_value(), autocommit=True) as conn:
        conn.execute(
            "UPDATE uploads SET ticket_expires_at = now() - interval '5 seconds' WHERE id = %s", (ticket["id"],)
        )

    def expired() -> bool:
        state: str = pipeline.status(ticket["id"])["state"]
        assert state in ("awaiting_upload", "expired"), state
        return state == "expired"

    poll_until(expired, timeout=20, interval=0.5, what="the unused ticket expired")
    assert not ObjectStore(settings).exists(ticket["bucket"], ticket["key"])


def test_guest_is_refused_on_the_stacks_vhost(settings: Settings) -> None:
    url = urlsplit(settings.amqp_url.get_secret_value())
    assert url.username and url.username != "guest"  # the services use the stack's own user
    vhost = unquote(url.path.lstrip("/"))
    parameters = pika.ConnectionParameters(
        host=url.hostname or "127.0.0.1",
        port=url.port or 5672,
        virtual_host=vhost,
        credentials=pika.PlainCredentials("guest", "guest"),
        connection_attempts=1,
    )
    with pytest.raises((pika.exceptions.ProbableAccessDeniedError, pika.exceptions.ConnectionClosedByBroker)):
        pika.BlockingConnection(parameters).close()


def test_secret_files_are_owner_only(pipeline: Pipeline, stack_provider: StackProvider) -> None:
    settings_files = list(pipeline.processes.run_dir.glob("*.env"))
    assert {f.stem for f in settings_files} == set(stack.SERVICES)
    modes = {f.name: oct(f.stat().st_mode & 0o777) for f in settings_files}
    if isinstance(stack_provider, NativeProvider):
        ceph = stack_provider.ceph_base
        for path in [ceph / "user.json", *(ceph / "keyring").iterdir()]:
            modes[str(path.relative_to(ceph))] = oct(path.stat().st_mode & 0o777)
        assert oct((ceph / "keyring").stat().st_mode & 0o777) == "0o700"
        # mon., client.admin, osd.0, and the three gateways' (client.rgw.a, .notify, .wire)
        assert len(list((ceph / "keyring").iterdir())) == 6
    assert set(modes.values()) == {"0o600"}, modes


def test_cephx_refuses_a_client_without_a_key(stack_provider: StackProvider, tmp_path: Path) -> None:
    if not isinstance(stack_provider, NativeProvider):
        pytest.skip("Ceph runs only in the native stack (the containers stack uses MinIO)")
    ceph = stack_provider.ceph_base
    assert "auth cluster required = cephx" in (ceph / "ceph.conf").read_text()
    empty = tmp_path / "empty.keyring"
    empty.write_text("")
    env = {**os.environ, "CEPH_CONF": str(ceph / "ceph.conf")}
    anonymous = subprocess.run(
        ["ceph", "--connect-timeout", "5", "--name", "client.admin", "--keyring", str(empty), "-s"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert anonymous.returncode != 0
    admin = subprocess.run(["ceph", "--connect-timeout", "10", "-s"], env=env, capture_output=True, timeout=60)
    assert admin.returncode == 0, admin.stderr  # the same call with the admin's keyring works


def test_no_secret_is_on_any_command_line(pipeline: Pipeline, stack_env: dict[str, str]) -> None:
    secrets = {
        v
        for k, v in stack_env.items()
        if any(word in k for word in ("PASSWORD", "SECRET", "ACCESS_KEY")) and len(v) >= 8
    }
    for name in ("GENOBASE_PG_DSN", "GENOBASE_PG_OWNER_DSN", "GENOBASE_AMQP_URL"):
        password = urlsplit(stack_env[name]).password
        if password:
            secrets.add(unquote(password))
    secrets.add(pipeline.api_key)
    assert len(secrets) >= 8
    leaks = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        leaks += [f"pid {proc.name}: {cmdline[:80]}" for secret in secrets if secret in cmdline]
    assert leaks == []

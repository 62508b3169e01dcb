"""What can be checked of the Docker path without an engine: images, URLs, files and the exact-key listing."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pytest

from genobase import compose, stack

ROOT = Path(__file__).resolve().parents[2]
AWKWARD = "p@ss:w/rd%?#"


def test_minio_image_is_one_setting_with_one_default() -> None:
    text = (ROOT / "compose.yaml").read_text()
    assert f"image: ${{GENOBASE_MINIO_IMAGE:-{compose.DEFAULT_MINIO_IMAGE}}}" in text
    assert compose.DEFAULT_MINIO_IMAGE.startswith("quay.io/minio/minio:")
    assert "minio/minio:" not in text.replace(compose.DEFAULT_MINIO_IMAGE, "")  # no other MinIO image


def test_compose_postgres_runs_with_the_bulk_load_settings_genobase_up_checks() -> None:
    """genobase up compares the machine's server with these; compose's server must have them."""
    import yaml

    from shared.postgres.migrate import BULK_LOAD_SETTINGS

    command = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["postgres"]["command"]
    flags = dict(value.split("=", 1) for flag, value in zip(command[1::2], command[2::2], strict=True) if flag == "-c")
    assert {name: flags.get(name) for name in BULK_LOAD_SETTINGS} == BULK_LOAD_SETTINGS


def test_every_password_in_a_compose_url_is_the_encoded_one() -> None:
    text = (ROOT / "compose.yaml").read_text()
    urls = re.findall(r"(?:amqp|postgresql)://[^\s]+", text)
    assert urls, "no URL found in compose.yaml"
    for url in urls:
        assert "_PASSWORD_URL" in url, url


def test_env_file_keeps_secrets_and_encodes_them_for_urls() -> None:
    env = compose.env_file({"GENOBASE_PG_PASSWORD": AWKWARD}, lambda n: "x" * n)
    assert env["GENOBASE_PG_PASSWORD"] == AWKWARD  # hand-set: kept
    assert env["GENOBASE_RABBITMQ_PASSWORD"] == "x" * 24  # generated once
    assert unquote(env["GENOBASE_PG_PASSWORD_URL"]) == AWKWARD
    assert re.fullmatch(r"[A-Za-z0-9_.~%-]+", env["GENOBASE_PG_PASSWORD_URL"])  # nothing a URL parser splits on
    url = f"postgresql://genobase:{env['GENOBASE_PG_PASSWORD_URL']}@postgres:5432/genobase"
    parts = urlsplit(url)
    assert (parts.hostname, parts.port, unquote(parts.password or "")) == ("postgres", 5432, AWKWARD)


def test_stack_file_reaches_postgres_and_rabbitmq_from_the_host() -> None:
    given = {"GENOBASE_PG_RUNTIME_PASSWORD": AWKWARD, "GENOBASE_RABBITMQ_PASSWORD": AWKWARD}
    env = compose.env_file(given, lambda n: "y" * n)
    values = compose.stack_file(env)
    for name, port in (("GENOBASE_PG_DSN", 15432), ("GENOBASE_AMQP_URL", 15672)):
        parts = urlsplit(values[name])
        assert (parts.hostname, parts.port, unquote(parts.password or "")) == ("127.0.0.1", port, AWKWARD)
    text = (ROOT / "compose.yaml").read_text()
    assert "${GENOBASE_PG_HOST_PORT:-15432}:5432" in text and "${GENOBASE_AMQP_HOST_PORT:-15672}:5672" in text


def test_services_get_their_own_credentials_in_compose() -> None:
    """No service gets MinIO's root user or the schema owner's password; each S3 user is its own."""
    import yaml

    config = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = config["services"]
    own_role = {"refget": "genobase_refget:", "persister": "genobase_persister:"}
    for name in ("intake", "parser", "persister", "assembler", "watchdog", "refget"):
        env = services[name]["environment"]
        assert "GENOBASE_PG_OWNER_DSN" not in env and own_role.get(name, "genobase_app:") in env["GENOBASE_PG_DSN"]
        assert env.get("GENOBASE_S3_ACCESS_KEY") in (None, f"genobase-{name}"), name
        assert "GENOBASE_S3_ACCESS_KEY}" not in str(env.get("GENOBASE_S3_SECRET_KEY", "")), name
        if name == "refget":
            assert env["GENOBASE_AMQP_URL"] == ""  # no broker credentials at all
        else:
            assert env["GENOBASE_AMQP_URL"].endswith("@rabbitmq:5672/genobase")
    for role in own_role.values():  # the migrate job makes both roles and grants their tables
        assert any(role in str(v) for v in services["migrate"]["environment"].values()), role
    for name in ("persister", "refget"):
        assert "GENOBASE_S3_SECRET_KEY" not in services[name]["environment"]
    assert "GENOBASE_PG_OWNER_DSN" in services["migrate"]["environment"]
    assert services["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_VHOST"] == "genobase"


def test_published_ports_listen_on_loopback_by_default() -> None:
    text = (ROOT / "compose.yaml").read_text()
    published = re.findall(r"ports: \[(.*)\]", text)
    assert published, "no published ports found in compose.yaml"
    for ports in published:
        for port in ports.split(","):
            assert port.strip().strip('"').startswith("${GENOBASE_BIND:-127.0.0.1}:"), port


def test_stack_file_is_owner_only_from_its_first_byte(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        stack.write_env_file(tmp_path / "stack.env", {"A": "1"})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "stack.env").stat().st_mode) == 0o600


def test_build_context_leaves_out_data_and_secrets() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".genobase/", ".venv/", ".env"} <= set(ignored)


def test_multipart_uploads_are_found_by_exact_key() -> None:
    from shared.s3.store import uploads_of_key

    pages = [
        {
            "Uploads": [
                {"Key": "u/generation-1.json", "UploadId": "1"},
                {"Key": "u/generation-1.json-x", "UploadId": "2"},
            ]
        },
        {},
        {"Uploads": [{"Key": "u/generation-1.json", "UploadId": "3"}]},
    ]
    assert [u["UploadId"] for u in uploads_of_key(pages, "u/generation-1.json")] == ["1", "3"]
    assert uploads_of_key(pages, "u/") == []  # a prefix is not a key: the same answer as MinIO gives


def test_migration_retries_while_postgres_is_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.postgres import migrate as migrations

    calls: list[str] = []

    class Ready:
        def __enter__(self) -> Ready:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    def open_connection() -> Ready:
        calls.append("connect")
        if len(calls) < 3:  # the image's set-up server: refused, then dropped
            raise psycopg.OperationalError("the database system is starting up")
        return Ready()

    monkeypatch.setattr(migrations, "migrate", lambda conn, runtime, services: ["0001_initial"])
    assert migrations.migrate_with_retry(open_connection, within_seconds=30) == ["0001_initial"]  # type: ignore[arg-type]
    assert calls == ["connect"] * 3


def test_migration_gives_up_after_its_deadline() -> None:
    from shared.postgres.migrate import migrate_with_retry

    def refused() -> None:
        raise psycopg.OperationalError("connection refused")

    with pytest.raises(psycopg.OperationalError):
        migrate_with_retry(refused, within_seconds=0)  # type: ignore[arg-type]

"""The Docker stack's files: the ``.env`` that compose.yaml reads and the stack file the CLI reads.

Pure functions (no Docker needed), so the unit tests check what a Docker user's first run gets:
secrets generated once, every password percent-encoded wherever it goes into a URL, and the host
addresses of Postgres and RabbitMQ in the stack file so that every CLI command reaches them.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

# The MinIO image compose.yaml and the tests' containers provider use unless GENOBASE_MINIO_IMAGE
# names another: the last release MinIO published as an image, from the registry that still serves it.
DEFAULT_MINIO_IMAGE = "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"

SECRETS = (
    ("GENOBASE_PG_PASSWORD", 24),  # the schema's owner (the migrate job only)
    ("GENOBASE_PG_RUNTIME_PASSWORD", 24),  # genobase_app, the services' role
    ("GENOBASE_PG_REFGET_PASSWORD", 24),  # genobase_refget: refget reads (shared/postgres/migrate.py)
    ("GENOBASE_PG_PERSISTER_PASSWORD", 24),  # genobase_persister: loads batches
    ("GENOBASE_RABBITMQ_PASSWORD", 24),
    ("GENOBASE_S3_ACCESS_KEY", 20),  # MinIO's root user (minio-notify and `genobase keys --s3` only)
    ("GENOBASE_S3_SECRET_KEY", 40),
    ("GENOBASE_INTAKE_S3_SECRET_KEY", 40),
    ("GENOBASE_PARSER_S3_SECRET_KEY", 40),
    ("GENOBASE_ASSEMBLER_S3_SECRET_KEY", 40),
    ("GENOBASE_WATCHDOG_S3_SECRET_KEY", 40),
    ("GENOBASE_DOWNLOADS_S3_SECRET_KEY", 40),
)
# Published on the host's loopback (compose.yaml), away from a Postgres or RabbitMQ the host may run.
PG_HOST_PORT = "15432"
AMQP_HOST_PORT = "15672"


def url_part(value: str) -> str:
    """``value`` percent-encoded for the user-info of a URL (``@``, ``:``, ``/`` and ``%`` included)."""
    return quote(value, safe="")


def env_file(existing: dict[str, str], new_secret: Callable[[int], str]) -> dict[str, str]:
    """``.env`` for compose: secrets kept (hand-set or generated once), URL forms always derived again."""
    values = dict(existing)
    for name, length in SECRETS:
        values.setdefault(name, new_secret(length))
    values["GENOBASE_PG_PASSWORD_URL"] = url_part(values["GENOBASE_PG_PASSWORD"])
    values["GENOBASE_PG_RUNTIME_PASSWORD_URL"] = url_part(values["GENOBASE_PG_RUNTIME_PASSWORD"])
    values["GENOBASE_PG_REFGET_PASSWORD_URL"] = url_part(values["GENOBASE_PG_REFGET_PASSWORD"])
    values["GENOBASE_PG_PERSISTER_PASSWORD_URL"] = url_part(values["GENOBASE_PG_PERSISTER_PASSWORD"])
    values["GENOBASE_RABBITMQ_PASSWORD_URL"] = url_part(values["GENOBASE_RABBITMQ_PASSWORD"])
    return values


def stack_file(env: dict[str, str]) -> dict[str, str]:
    """What the CLI on the host needs to reach the compose stack (the stack file, mode 600)."""
    pg_port = env.get("GENOBASE_PG_HOST_PORT", PG_HOST_PORT)
    amqp_port = env.get("GENOBASE_AMQP_HOST_PORT", AMQP_HOST_PORT)
    return {
        "GENOBASE_STACK": "compose",
        "GENOBASE_PG_DSN": (
            f"postgresql://genobase_app:{url_part(env['GENOBASE_PG_RUNTIME_PASSWORD'])}@127.0.0.1:{pg_port}/genobase"
        ),
        "GENOBASE_PG_OWNER_DSN": (
            f"postgresql://genobase:{url_part(env['GENOBASE_PG_PASSWORD'])}@127.0.0.1:{pg_port}/genobase"
        ),
        "GENOBASE_AMQP_URL": (
            f"amqp://genobase:{url_part(env['GENOBASE_RABBITMQ_PASSWORD'])}@127.0.0.1:{amqp_port}/genobase"
        ),
        "GENOBASE_S3_KIND": "minio",
        "GENOBASE_S3_ENDPOINT": "http://localhost:9000",
        "GENOBASE_S3_ACCESS_KEY": env["GENOBASE_S3_ACCESS_KEY"],
        "GENOBASE_S3_SECRET_KEY": env["GENOBASE_S3_SECRET_KEY"],
        "GENOBASE_PUBLIC_BASE_URL": "http://localhost:8000",
    }

"""Versioned SQL migrations (``migrations/NNNN_name.sql``), applied in order, once each."""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import resources

import psycopg
from psycopg.rows import dict_row
from tenacity import RetryCallState, retry, retry_if_exception_type, stop_after_delay, wait_exponential

from shared.postgres.connection import Connection
from shared.settings import get_settings

MIGRATION_LOCK = 0x67656E6F  # advisory lock key: one migrator at a time


def migrate(conn: Connection) -> list[str]:
    """Apply the versioned SQL files in order; returns the ones applied now."""
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["version"] for row in conn.execute("SELECT version FROM schema_migrations")}
        files = sorted(
            (f for f in resources.files("shared.postgres.migrations").iterdir() if f.name.endswith(".sql")),
            key=lambda f: f.name,
        )
        for file in files:
            version = file.name.removesuffix(".sql")
            if version in done:
                continue
            conn.execute(file.read_text())  # type: ignore[call-overload, unused-ignore]
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied_now.append(version)
    return applied_now


def migrate_with_retry(open_connection: Callable[[], Connection], within_seconds: float = 120) -> list[str]:
    """Connect and migrate, again with backoff while Postgres is not ready (or restarts under us).

    On a fresh Docker volume the image first runs a temporary set-up server, then restarts: a
    connection can be refused, or dropped in the middle of the migration. The migration runs in
    one transaction, so a retry starts from where the last commit left the schema.
    """

    def report(state: RetryCallState) -> None:
        print(f"Postgres not ready (attempt {state.attempt_number}); retrying", file=sys.stderr)

    @retry(
        retry=retry_if_exception_type(psycopg.OperationalError),
        wait=wait_exponential(multiplier=0.5, max=5),
        stop=stop_after_delay(within_seconds),
        before_sleep=report,
        reraise=True,
    )
    def attempt() -> list[str]:
        with open_connection() as conn:
            return migrate(conn)

    return attempt()


def main() -> None:
    """Entry point ``genobase-migrate`` (compose runs it once before the services)."""
    settings = get_settings()
    dsn = settings.pg_dsn.get_secret_value()
    try:
        applied = migrate_with_retry(lambda: psycopg.connect(dsn, autocommit=True, row_factory=dict_row))
    except psycopg.OperationalError as exc:
        sys.exit(f"could not migrate: Postgres not reachable ({exc.__class__.__name__})")
    print(f"migrations applied: {applied or 'none (up to date)'}")

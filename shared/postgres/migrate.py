"""Versioned SQL migrations (``migrations/NNNN_name.sql``), applied in order, once each.

They run as the schema's owner. The services' runtime role (the user of ``GENOBASE_PG_DSN``) is
then granted exactly what they do -- read and write the rows of every table -- and nothing more:
it cannot change the schema, the migrations ledger, or create databases or roles.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from tenacity import RetryCallState, retry, retry_if_exception_type, stop_after_delay, wait_exponential

from shared.postgres.connection import Connection
from shared.runtime.settings import Settings, get_settings

MIGRATION_LOCK = 0x67656E6F  # advisory lock key: one migrator at a time


@dataclass(frozen=True)
class RuntimeRole:
    """The role the services log in as, and its password (to create it where it does not exist)."""

    name: str
    password: str | None = None


# What each stage with a role of its own may do, table by table; nothing else of the schema is in
# its reach. refget reads (the key of its caller, the uploads it may see, their records and
# collections) and writes one column, the last use of its caller's key (at most once a minute per
# key: ``PostgresKeys.mark_used``), so that a key only refget's clients use is not listed unused and
# revoked as idle while in use; the persister loads batches and moves its uploads' counters, and never reads a key.
# A generation that fails loses its rows (``PostgresUploads.fail``), and the persister fails the generation
# of a batch it gives up on: so it deletes by upload where rows are kept, and updates no row but
# an upload's and a shard's.
SERVICE_PRIVILEGES: dict[str, dict[str, str]] = {
    "refget": {
        "api_keys": "SELECT, UPDATE (last_used_at)",
        **{
            table: "SELECT"
            for table in ("uploads", "sequence_records", "sequence_parts", "collections", "schema_migrations")
        },
    },
    "persister": {
        "uploads": "SELECT, UPDATE",
        "upload_batches": "SELECT, INSERT, DELETE",
        "upload_shards": "SELECT, UPDATE, DELETE",
        "sequence_records": "SELECT, INSERT, DELETE",
        "sequence_parts": "SELECT, INSERT, DELETE",
        "collections": "SELECT, DELETE",
        "schema_migrations": "SELECT",
    },
}


@dataclass(frozen=True)
class ServiceRole:
    """A stage's own role (``SERVICE_PRIVILEGES``), and its password where it must be created."""

    service: str
    role: RuntimeRole


def service_roles(settings: Settings) -> list[ServiceRole]:
    """The stages' own roles the settings name (``GENOBASE_REFGET_PG_DSN``, ``GENOBASE_PERSISTER_PG_DSN``)."""
    found = []
    for service, dsn in (("refget", settings.refget_pg_dsn), ("persister", settings.persister_pg_dsn)):
        parts = urlsplit(dsn.get_secret_value())
        if parts.username:
            password = unquote(parts.password) if parts.password else None
            found.append(ServiceRole(service, RuntimeRole(unquote(parts.username), password)))
    return found


def runtime_role(settings: Settings) -> RuntimeRole | None:
    """The user of the services' DSN when migrations run as another role; None when they are one."""
    runtime = urlsplit(settings.pg_dsn.get_secret_value())
    owner = urlsplit(settings.pg_migration_dsn)
    if not runtime.username or runtime.username == owner.username:
        return None
    return RuntimeRole(unquote(runtime.username), unquote(runtime.password) if runtime.password else None)


def migrate(conn: Connection, runtime: RuntimeRole | None = None, services: tuple[ServiceRole, ...] = ()) -> list[str]:
    """Apply the versioned SQL files in order, then grant ``runtime`` and each of ``services``;
    returns the files applied now."""
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
        if runtime is not None:
            grant_runtime(conn, runtime)
        for service in services:
            grant_service(conn, service)
    return applied_now


def _ensure_login_role(conn: Connection, runtime: RuntimeRole) -> sql.Identifier:
    role = sql.Identifier(runtime.name)
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (runtime.name,)).fetchone()
    if not exists:
        if runtime.password is None:
            raise RuntimeError(f"role {runtime.name!r} does not exist and has no password to create it")
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                role, sql.Literal(runtime.password)
            )
        )
    return role


def _grant(conn: Connection, role: sql.Identifier, *statements: str) -> None:
    """Run each statement with ``{role}`` and ``{db}`` (this database) filled in."""
    database = sql.Identifier(conn.info.dbname)
    for statement in statements:
        conn.execute(sql.SQL(statement).format(db=database, role=role))


def grant_service(conn: Connection, service: ServiceRole) -> None:
    """A stage's own role gets exactly its tables' privileges (``SERVICE_PRIVILEGES``); created if missing.

    Everything is taken back first, so that a privilege dropped from the table here is dropped
    from the role too.
    """
    role = _ensure_login_role(conn, service.role)
    _grant(
        conn,
        role,
        "GRANT CONNECT ON DATABASE {db} TO {role}",
        "GRANT USAGE ON SCHEMA public TO {role}",
        "REVOKE CREATE ON SCHEMA public FROM {role}",
        "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}",
        "REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}",
    )
    for table, privileges in SERVICE_PRIVILEGES[service.service].items():
        conn.execute(sql.SQL("GRANT {} ON {} TO {}").format(sql.SQL(privileges), sql.Identifier(table), role))


def grant_runtime(conn: Connection, runtime: RuntimeRole) -> None:
    """Rows of every table to the runtime role (the ledger read-only); created if missing.

    Creating it needs CREATEROLE (compose's owner is the image's superuser); on the native stack
    ``genobase up`` creates both roles first, and this only grants.
    """
    role = _ensure_login_role(conn, runtime)
    _grant(
        conn,
        role,
        "GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {role}",
        "GRANT USAGE ON SCHEMA public TO {role}",
        "REVOKE CREATE ON SCHEMA public FROM {role}",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON schema_migrations FROM {role}",
        "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
    )


def migrate_database(settings: Settings) -> list[str]:
    """Migrate as the owner and grant the runtime role (``genobase up``, the tests, ``genobase-migrate``)."""
    return migrate_with_retry(
        lambda: psycopg.connect(settings.pg_migration_dsn, autocommit=True, row_factory=dict_row),
        runtime=runtime_role(settings),
        services=tuple(service_roles(settings)),
    )


def autovacuum_is_off(settings: Settings) -> bool:
    """Whether the server runs without autovacuum (a machine's own Postgres may): then nothing
    removes the dead row versions that every upload's progress updates and every deleted upload
    leave, and nothing keeps the planner's statistics; ``genobase up`` says so."""
    with psycopg.connect(settings.pg_migration_dsn) as conn:
        row = conn.execute("SELECT current_setting('autovacuum') = 'off'").fetchone()
    return bool(row and row[0])


# What compose.yaml starts its Postgres with for bulk loading (a unit test holds the two equal).
# The native stack uses the machine's server as it is configured; ``genobase up`` says where that
# server has less. With 128 MB of shared buffers the content indexes of a few million records no
# longer stay cached, and with 1 GB of WAL between checkpoints a 4 GiB upload spans a dozen of
# them, each followed by full-page images: measured here, a 4 GiB upload then cost 7-21 % more per
# GiB than a 1 GiB one (docs/benchmarks.md, "Cost linear in size").
BULK_LOAD_SETTINGS = {"shared_buffers": "512MB", "max_wal_size": "8GB"}


def settings_below_bulk_load(settings: Settings) -> dict[str, str]:
    """The server's values of ``BULK_LOAD_SETTINGS`` that are lower than those, as it shows them."""
    names = list(BULK_LOAD_SETTINGS)
    with psycopg.connect(settings.pg_migration_dsn) as conn:
        rows = conn.execute(
            "SELECT name, current_setting(name), pg_size_bytes(current_setting(name)), pg_size_bytes(wanted)"
            " FROM unnest(%s::text[], %s::text[]) AS w(name, wanted)",
            (names, [BULK_LOAD_SETTINGS[n] for n in names]),
        ).fetchall()
    return {name: shown for name, shown, have, want in rows if have < want}


def migrate_with_retry(
    open_connection: Callable[[], Connection],
    within_seconds: float = 120,
    runtime: RuntimeRole | None = None,
    services: tuple[ServiceRole, ...] = (),
) -> list[str]:
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
            return migrate(conn, runtime, services)

    return attempt()


def main() -> None:
    """Entry point ``genobase-migrate`` (compose runs it once before the services)."""
    settings = get_settings()
    try:
        applied = migrate_database(settings)
    except psycopg.OperationalError as exc:
        sys.exit(f"could not migrate: Postgres not reachable ({exc.__class__.__name__})")
    print(f"migrations applied: {applied or 'none (up to date)'}")

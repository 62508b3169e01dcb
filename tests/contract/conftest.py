"""The two sides of each port's contract: the in-memory fake and the adapter on the real server.

The adapter's side runs on a database of the suite's own, made and migrated on the run's Postgres
(the run's per-run database holds the pipeline's uploads, which the run's watchdog sweeps: its
sweeps would race the suite's stalls and tickets). The fake's side needs no server at all.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
import uuid
from collections.abc import Iterator
from enum import Enum
from typing import Any

import pytest
from psycopg import sql
from psycopg.types.json import Jsonb
from pydantic import SecretStr

from shared.postgres.connection import Database, connect, request_pool
from shared.postgres.keys import PostgresKeys
from shared.postgres.migrate import migrate_database
from shared.postgres.uploads import PostgresUploads
from shared.runtime.settings import Settings
from shared.usecases.keys import create_key, revoke_key
from tests.stack import create_database, drop_database, with_database
from tests.unit.fakes import FakeUploads


@pytest.fixture(scope="session")
def contract_settings(settings: Settings) -> Iterator[Settings]:
    """The run's settings on a database of the suite's own (dropped at the end), migrated."""
    owner_dsn = settings.pg_migration_dsn
    name = urllib.parse.urlsplit(owner_dsn).path.lstrip("/") + "_contract"
    admin = with_database(owner_dsn, "postgres")
    drop_database(admin, name)
    create_database(admin, name)
    own = settings.model_copy(
        update={
            "pg_dsn": SecretStr(with_database(settings.pg_dsn.get_secret_value(), name)),
            "pg_owner_dsn": SecretStr(with_database(owner_dsn, name)),
        }
    )
    migrate_database(own)
    try:
        yield own
    finally:
        drop_database(admin, name)


class FakeSide:
    """The fake, and how a test arranges what the port does not write (keys, the clock, a state)."""

    def __init__(self) -> None:
        self.uploads = FakeUploads()

    def another_worker(self) -> FakeUploads:
        """A second worker on the same store (the fake's locks are the store's)."""
        return self.uploads

    def add_owner(self, name: str, *, admin: bool = False) -> None:
        self.uploads.owners.add(name)
        if admin:
            self.uploads.admins.add(name)

    def revoke_owner(self, name: str) -> None:
        self.uploads.revoked_owners.add(name)
        self.uploads.admins.discard(name)

    def set(self, upload_id: uuid.UUID, **columns: Any) -> None:
        """Change a row behind the store's back (what time or an operator does), the clock untouched."""
        upload = self.uploads.uploads[upload_id]
        self.uploads.uploads[upload_id] = dataclasses.replace(upload, **columns)

    def close(self) -> None:
        pass


class PostgresSide:
    """The adapter on a worker's sessions (``Database``) or on an HTTP service's pool (``pooled``);
    arrangements as the schema's owner (the runtime role may not write keys)."""

    def __init__(self, settings: Settings, *, pooled: bool) -> None:
        self.settings = settings
        self._pool = request_pool(settings) if pooled else None
        if self._pool is not None:
            self._pool.open(wait=True, timeout=60)
        self.uploads = self._store()
        self._others: list[PostgresUploads] = []
        self._owner = connect(settings, autocommit=True, owner=True)

    def _store(self) -> PostgresUploads:
        return PostgresUploads(self._pool if self._pool is not None else Database(self.settings))

    def another_worker(self) -> PostgresUploads:
        """A second worker: sessions of its own (session locks are per session)."""
        other = self._store()
        self._others.append(other)
        return other

    def add_owner(self, name: str, *, admin: bool = False) -> None:
        create_key(PostgresKeys.from_settings(self.settings), name, admin=admin)

    def revoke_owner(self, name: str) -> None:
        revoke_key(PostgresKeys.from_settings(self.settings), name)

    def set(self, upload_id: uuid.UUID, **columns: Any) -> None:
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column)) for column in columns
        )
        values = {
            k: v.value if isinstance(v, Enum) else Jsonb(v) if isinstance(v, dict) else v for k, v in columns.items()
        }
        self._owner.execute(
            sql.SQL("UPDATE uploads SET {} WHERE id = %(id)s").format(assignments), {**values, "id": upload_id}
        )

    def close(self) -> None:
        for uploads in (self.uploads, *self._others):
            uploads.reset()
        if self._pool is not None:
            self._pool.close()
        self._owner.close()


Side = FakeSide | PostgresSide


@pytest.fixture(params=["fake", "postgres", "postgres-pool"])
def side(request: pytest.FixtureRequest) -> Iterator[Side]:
    """Each contract test runs on the fake and on the adapter, the latter both as the workers build
    it and as the intake does; the adapter's sides ask for the run's server only then."""
    chosen: Side
    if request.param == "fake":
        chosen = FakeSide()
    else:
        settings = request.getfixturevalue("contract_settings")
        chosen = PostgresSide(settings, pooled=request.param == "postgres-pool")
    try:
        yield chosen
    finally:
        chosen.close()

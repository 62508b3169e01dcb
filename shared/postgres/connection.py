"""Postgres sessions: one connection per worker thread, retried while the server is away."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from shared.runtime.settings import Settings

Connection = psycopg.Connection[dict[str, Any]]

__all__ = ["Connection", "Database", "connect", "dict_row", "ping", "request_pool"]


@retry(
    retry=retry_if_exception_type(psycopg.OperationalError),
    wait=wait_exponential(multiplier=0.5, max=10),
    stop=stop_after_delay(120),
    reraise=True,
)
def connect(settings: Settings, autocommit: bool = False, owner: bool = False) -> Connection:
    """A session as the runtime role, or as the schema's owner (``owner``: migrations only)."""
    dsn = settings.pg_migration_dsn if owner else settings.pg_dsn.get_secret_value()
    return psycopg.connect(dsn, autocommit=autocommit, row_factory=dict_row)


def request_pool(settings: Settings, max_size: int = 8) -> ConnectionPool[Connection]:
    """Sessions for an HTTP service's requests (the caller opens it at start-up, closes it at the end).

    A connection broken by a Postgres restart is replaced before a request gets it. Each statement
    is bounded by ``GENOBASE_REQUEST_STATEMENT_TIMEOUT_SECONDS``, so that no request keeps a
    session, which the next request's key check may be waiting for, beyond it.
    """
    timeout_ms = max(1, round(settings.request_statement_timeout_seconds * 1000))
    return ConnectionPool(
        settings.pg_dsn.get_secret_value(),
        min_size=1,
        max_size=max_size,
        kwargs={"autocommit": True, "row_factory": dict_row, "options": f"-c statement_timeout={timeout_ms}"},
        check=ConnectionPool.check_connection,
        open=False,
    )


def ping(conn: Connection) -> None:
    conn.execute("SELECT 1")


class Database:
    """One connection for one worker thread, replaced when Postgres dropped it (restart, failover)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._conn: Connection | None = None

    @property
    def conn(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self.settings, autocommit=True)
        return self._conn

    @property
    def usable(self) -> bool:
        """The current session can still take a statement (a crashed one must not be used to clean up)."""
        return self._conn is not None and not self._conn.closed and not self._conn.broken

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

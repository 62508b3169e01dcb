"""API keys on Postgres: ``PostgresKeys``, the ``KeyStore`` of the keys' use cases
(``shared/usecases/keys.py``), and what the upload store asks of the keys (revoked owners, admins).

A key's name is its owner today; an owner may hold several keys one day. "A revoked owner" is
therefore defined once, here, over all of an owner's keys: it has keys and every one is revoked
(``REVOKED_OWNERS``). An owner with no key at all (an object outside every prefix) is not revoked.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from psycopg_pool import ConnectionPool

from shared.domain.access import ApiKey, ListedKey
from shared.postgres.connection import Connection, connect
from shared.runtime.settings import Settings

# The owners whose keys are all revoked, as a subquery (one column, ``owner``). Grouped by owner so
# that a second key of the same owner, once keys have an owner column of their own, keeps it valid.
REVOKED_OWNERS = "SELECT name AS owner FROM api_keys GROUP BY name HAVING bool_and(revoked_at IS NOT NULL)"


class PostgresKeys:
    """The ``KeyStore`` on Postgres (table ``api_keys``): each call takes a session and gives it back.

    Sessions come from ``connections``: a service's request pool (``from_pool``: a key look-up
    holds a pooled session only while it runs) or a session of its own per call (``from_settings``:
    the CLI and the stack, which make a key now and then). Every statement is autocommit.
    """

    def __init__(self, connections: Callable[[], AbstractContextManager[Connection]]) -> None:
        self._connections = connections

    @classmethod
    def from_pool(cls, pool: ConnectionPool[Any]) -> PostgresKeys:
        """On a pool's sessions (``request_pool``: autocommit, rows as dicts)."""
        return cls(pool.connection)

    @classmethod
    def from_settings(cls, settings: Settings) -> PostgresKeys:
        """On a session of its own for each call, as the runtime role."""
        return cls(lambda: connect(settings, autocommit=True))

    def add(self, name: str, hashed: str, *, admin: bool) -> bool:
        with self._connections() as conn:
            row = conn.execute(
                "INSERT INTO api_keys (name, key_hash, admin) VALUES (%s, %s, %s)"
                " ON CONFLICT (name) DO NOTHING RETURNING name",
                (name, hashed, admin),
            ).fetchone()
        return row is not None

    def find(self, hashed: str) -> ApiKey | None:
        with self._connections() as conn:
            row = conn.execute("SELECT name, admin, revoked_at FROM api_keys WHERE key_hash = %s", (hashed,)).fetchone()
        return None if row is None else ApiKey(row["name"], row["admin"], row["revoked_at"] is not None)

    def revoke(self, name: str) -> bool:
        with self._connections() as conn:
            row = conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL RETURNING name", (name,)
            ).fetchone()
        return row is not None

    def all_keys(self) -> list[ListedKey]:
        with self._connections() as conn:
            rows = conn.execute("SELECT name, admin, created_at, revoked_at FROM api_keys ORDER BY name").fetchall()
        return [ListedKey(r["name"], r["admin"], r["created_at"], r["revoked_at"]) for r in rows]


def owner_revoked(conn: Connection, owner: str | None) -> bool:
    """Whether ``owner`` holds keys and every one of them is revoked."""
    if owner is None:
        return False
    row = conn.execute(
        f"SELECT EXISTS (SELECT 1 FROM ({REVOKED_OWNERS}) revoked WHERE owner = %s) AS revoked", (owner,)
    ).fetchone()
    return bool(row and row["revoked"])


def is_admin(conn: Connection, owner: str | None) -> bool:
    """Whether ``owner`` holds an active admin key (admin keys are not held to the quotas)."""
    if owner is None:
        return False
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM api_keys WHERE name = %s AND admin AND revoked_at IS NULL) AS admin", (owner,)
    ).fetchone()
    return bool(row and row["admin"])

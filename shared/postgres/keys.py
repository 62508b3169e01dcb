"""API keys on Postgres: ``PostgresKeys``, the ``KeyStore`` of the keys' use cases
(``shared/usecases/keys.py``), and what the upload store asks of the keys (revoked owners, admins).

A key has an id of its own and an owner; an owner may hold several keys. "A revoked owner" is
therefore defined once, here, over all of an owner's keys: it has keys and every one is revoked
(``REVOKED_OWNERS``). An owner with no key at all (an object outside every prefix) is not revoked.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from psycopg_pool import ConnectionPool

from shared.domain.access import LAST_USE_EVERY, Added, ApiKey, ListedKey, OwnerKeys, RevokedKey, decide_add
from shared.postgres.connection import Connection, connect
from shared.runtime.settings import Settings

# The owners whose keys are all revoked, as a subquery (one column, ``owner``). Grouped by owner, so
# that one key revoked of an owner that holds another leaves the owner valid.
REVOKED_OWNERS = "SELECT owner FROM api_keys GROUP BY owner HAVING bool_and(revoked_at IS NOT NULL)"

# One adder or revoker of an owner's keys at a time (a transaction-scoped advisory lock on the
# owner's name): the decision over its keys and the write that follows see the same keys.
_OWNER_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"


def _lock_owner(conn: Connection, owner: str) -> None:
    conn.execute(_OWNER_LOCK, (f"api_keys:{owner}",))


class PostgresKeys:
    """The ``KeyStore`` on Postgres (table ``api_keys``): each call takes a session and gives it back.

    Sessions come from ``connections``: a service's request pool (``from_pool``: a key look-up
    holds a pooled session only while it runs) or a session of its own per call (``from_settings``:
    the CLI and the stack, which make a key now and then). Every statement is autocommit but for
    adding and revoking, each one transaction under the owner's lock.
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

    def add(self, key_id: str, owner: str, hashed: str, *, admin: bool, another: bool) -> Added:
        with self._connections() as conn, conn.transaction():
            _lock_owner(conn, owner)
            row = conn.execute(
                "SELECT count(*) AS total, count(*) FILTER (WHERE revoked_at IS NULL) AS valid,"
                " coalesce(bool_or(admin), false) AS admin FROM api_keys WHERE owner = %s",
                (owner,),
            ).fetchone()
            assert row is not None
            added = decide_add(OwnerKeys(row["total"], row["valid"], row["admin"]), admin=admin, another=another)
            if added.kept:
                conn.execute(
                    "INSERT INTO api_keys (id, owner, key_hash, admin) VALUES (%s, %s, %s, %s)",
                    (key_id, owner, hashed, admin),
                )
        return added

    def find(self, hashed: str) -> ApiKey | None:
        with self._connections() as conn:
            row = conn.execute(
                "SELECT id, owner, admin, revoked_at, last_used_at FROM api_keys WHERE key_hash = %s", (hashed,)
            ).fetchone()
        if row is None:
            return None
        return ApiKey(row["id"], row["owner"], row["admin"], row["revoked_at"] is not None, row["last_used_at"])

    def mark_used(self, key_id: str) -> None:
        """One UPDATE of one column (all that refget's role may write of a key), and none when
        another request recorded a use within the minute (a busy key's concurrent requests)."""
        with self._connections() as conn:
            conn.execute(
                "UPDATE api_keys SET last_used_at = now() WHERE id = %s"
                " AND (last_used_at IS NULL OR last_used_at < now() - %s)",
                (key_id, LAST_USE_EVERY),
            )

    def revoke(self, key_id: str) -> RevokedKey | None:
        with self._connections() as conn, conn.transaction():
            found = conn.execute("SELECT owner FROM api_keys WHERE id = %s", (key_id,)).fetchone()
            if found is None:
                return None
            _lock_owner(conn, found["owner"])
            row = conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL RETURNING owner",
                (key_id,),
            ).fetchone()
            if row is None:
                return None
            valid = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM api_keys WHERE owner = %s AND revoked_at IS NULL) AS valid",
                (row["owner"],),
            ).fetchone()
        return RevokedKey(key_id, row["owner"], owner_revoked=not (valid and valid["valid"]))

    def revoke_owner(self, owner: str) -> int:
        with self._connections() as conn, conn.transaction():
            _lock_owner(conn, owner)
            rows = conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE owner = %s AND revoked_at IS NULL RETURNING id", (owner,)
            ).fetchall()
        return len(rows)

    def all_keys(self) -> list[ListedKey]:
        with self._connections() as conn:
            rows = conn.execute(
                "SELECT id, owner, admin, created_at, revoked_at, last_used_at FROM api_keys"
                " ORDER BY owner, created_at, id"
            ).fetchall()
        return [
            ListedKey(r["id"], r["owner"], r["admin"], r["created_at"], r["revoked_at"], r["last_used_at"])
            for r in rows
        ]


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
        "SELECT EXISTS (SELECT 1 FROM api_keys WHERE owner = %s AND admin AND revoked_at IS NULL) AS admin", (owner,)
    ).fetchone()
    return bool(row and row["admin"])

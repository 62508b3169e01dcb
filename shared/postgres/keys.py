"""API keys on Postgres: made (the key returned once, its hash stored), listed, revoked, looked up.

A key's name is its owner today; an owner may hold several keys one day. "A revoked owner" is
therefore defined once, here, over all of an owner's keys: it has keys and every one is revoked
(``REVOKED_OWNERS``). An owner with no key at all (an object outside every prefix) is not revoked.
"""

from __future__ import annotations

from datetime import datetime

from shared.domain.access import ApiKey, key_hash, new_key, valid_key_name
from shared.postgres.connection import Connection

# The owners whose keys are all revoked, as a subquery (one column, ``owner``). Grouped by owner so
# that a second key of the same owner, once keys have an owner column of their own, keeps it valid.
REVOKED_OWNERS = "SELECT name AS owner FROM api_keys GROUP BY name HAVING bool_and(revoked_at IS NOT NULL)"


class KeyExists(ValueError):
    pass


def create_key(conn: Connection, name: str, admin: bool) -> str:
    """A new key named ``name``; returns the key itself, which is not kept anywhere."""
    if not valid_key_name(name):
        raise ValueError("a key name is 1-63 of a-z, 0-9 and '-', starting with a letter or digit")
    key = new_key()
    row = conn.execute(
        "INSERT INTO api_keys (name, key_hash, admin) VALUES (%s, %s, %s) ON CONFLICT (name) DO NOTHING RETURNING name",
        (name, key_hash(key), admin),
    ).fetchone()
    if row is None:
        raise KeyExists(f"a key named {name!r} exists already")
    return key


def list_keys(conn: Connection) -> list[tuple[str, bool, datetime, datetime | None]]:
    rows = conn.execute("SELECT name, admin, created_at, revoked_at FROM api_keys ORDER BY name").fetchall()
    return [(r["name"], r["admin"], r["created_at"], r["revoked_at"]) for r in rows]


def revoke_key(conn: Connection, name: str) -> bool:
    row = conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL RETURNING name", (name,)
    ).fetchone()
    return row is not None


def find_key(conn: Connection, key: str) -> ApiKey | None:
    row = conn.execute("SELECT name, admin, revoked_at FROM api_keys WHERE key_hash = %s", (key_hash(key),)).fetchone()
    return None if row is None else ApiKey(row["name"], row["admin"], row["revoked_at"] is not None)


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

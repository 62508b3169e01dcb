"""API keys: made (the key shown once), listed, revoked, and a presented key authenticated.

The same rules for every way in: the CLI (``genobase keys``), the stack's first admin key and the
HTTP services' key check (``shared/web/guard.py``) all come here, over a ``KeyStore``. The store
only ever sees a key's hash (``key_hash``): the key itself exists in the answer to its creator.
"""

from __future__ import annotations

from shared.domain.access import Caller, KeyStore, ListedKey, key_hash, new_key, valid_key_name

# Tried in turn by ``create_admin_key``: enough for every stack anyone runs by hand.
ADMIN_NAMES = 100


class KeyRefused(ValueError):
    """A key that cannot be made; ``code`` names why, the message is safe to show."""

    code = "key_refused"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidKeyName(KeyRefused):
    code = "invalid_key_name"


class KeyExists(KeyRefused):
    """The name is taken, by an active key or a revoked one (a name is never given out twice)."""

    code = "key_exists"


def create_key(store: KeyStore, name: str, *, admin: bool) -> str:
    """A new key named ``name``; returns the key itself, which is kept nowhere (only its hash is)."""
    if not valid_key_name(name):
        raise InvalidKeyName("a key name is 1-63 of a-z, 0-9 and '-', starting with a letter or digit")
    key = new_key()
    if not store.add(name, key_hash(key), admin=admin):
        raise KeyExists(f"a key named {name!r} exists already")
    return key


def create_admin_key(store: KeyStore) -> str:
    """An admin key for a stack's first run, named ``admin`` (or ``admin-N``, the first free one)."""
    for attempt in range(ADMIN_NAMES):
        try:
            return create_key(store, "admin" if attempt == 0 else f"admin-{attempt}", admin=True)
        except KeyExists:
            continue
    raise KeyExists("no free admin key name")


def list_keys(store: KeyStore) -> list[ListedKey]:
    """Every key, active or revoked, by name."""
    return store.all_keys()


def revoke_key(store: KeyStore, name: str) -> bool:
    """Revoke the key named ``name``; False if no active key has that name."""
    return store.revoke(name)


def authenticate(store: KeyStore, key: str) -> Caller | None:
    """The owner behind a presented key; None for an unknown or a revoked key (the same answer)."""
    found = store.find(key_hash(key))
    if found is None or found.revoked:
        return None
    return Caller(found.name, found.admin)

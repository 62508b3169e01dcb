"""API keys: made (the key shown once), listed, revoked, and a presented key authenticated.

The same rules for every way in: the CLI (``genobase keys``), the stack's first admin key and the
HTTP services' key check (``shared/web/guard.py``) all come here, over a ``KeyStore``. The store
only ever sees a key's hash (``key_hash``): the key itself exists in the answer to its creator.

An owner may hold several keys. Rotating one is two steps with no gap: ``issue_key(..., another=True)``
(the old key keeps working), then ``revoke_key_id`` of the old one. An owner whose keys are all
revoked is reinstated the same way: another key, which sees the owner's uploads as the old did.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from shared.domain.access import (
    Added,
    Caller,
    KeyStore,
    ListedKey,
    RevokedKey,
    key_hash,
    key_id,
    last_use_due,
    new_key,
    valid_key_name,
)

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
    """The owner has keys, valid or revoked, and no other key was asked for: a new owner never
    takes a name that has uploads by chance."""

    code = "key_exists"


class NoSuchOwner(KeyRefused):
    """Another key was asked for an owner that has none."""

    code = "no_such_owner"


class AdminDiffers(KeyRefused):
    """Another key of an owner would be admin where its keys are not, or the reverse."""

    code = "admin_differs"


@dataclass(frozen=True)
class IssuedKey:
    """A key just made: ``secret`` is the key itself, shown once and kept nowhere."""

    id: str
    owner: str
    admin: bool
    secret: str
    added: Added

    @property
    def reinstated(self) -> bool:
        """The owner's keys were all revoked: with this one it is an owner again, its uploads its own."""
        return self.added is Added.REINSTATED


def issue_key(store: KeyStore, owner: str, *, admin: bool, another: bool = False) -> IssuedKey:
    """A new key of ``owner``: a new owner's first (``another`` False), or one more of an owner that
    has keys (``another`` True: a rotation, or a revoked owner reinstated)."""
    if not valid_key_name(owner):
        raise InvalidKeyName("a key name is 1-63 of a-z, 0-9 and '-', starting with a letter or digit")
    secret = new_key()
    hashed = key_hash(secret)
    added = store.add(key_id(hashed), owner, hashed, admin=admin, another=another)
    if added is Added.OWNER_EXISTS:
        raise KeyExists(f"a key named {owner!r} exists already (another key of this owner: --another)")
    if added is Added.NO_OWNER:
        raise NoSuchOwner(f"no owner named {owner!r} has a key (a new owner: without --another)")
    if added is Added.ADMIN_DIFFERS:
        kind = "are not" if admin else "are"
        raise AdminDiffers(f"the keys of {owner!r} {kind} admin keys; another key of it must be alike")
    return IssuedKey(key_id(hashed), owner, admin, secret, added)


def create_key(store: KeyStore, name: str, *, admin: bool) -> str:
    """A new owner's first key; returns the key itself, which is kept nowhere (only its hash is)."""
    return issue_key(store, name, admin=admin).secret


def create_admin_key(store: KeyStore) -> str:
    """An admin key for a stack's first run, named ``admin`` (or ``admin-N``, the first free one)."""
    for attempt in range(ADMIN_NAMES):
        try:
            return create_key(store, "admin" if attempt == 0 else f"admin-{attempt}", admin=True)
        except KeyExists:
            continue
    raise KeyExists("no free admin key name")


def list_keys(store: KeyStore) -> list[ListedKey]:
    """Every key, valid or revoked, by owner, then oldest first."""
    return store.all_keys()


def revoke_key(store: KeyStore, owner: str) -> bool:
    """Revoke every valid key of ``owner`` (the owner is revoked); False if it had none."""
    return store.revoke_owner(owner) > 0


def revoke_key_id(store: KeyStore, key_id: str) -> RevokedKey | None:
    """Revoke one key, by its id; None if no valid key has that id. The owner's other keys go on."""
    return store.revoke(key_id)


def authenticate(store: KeyStore, key: str, now: datetime | None = None) -> Caller | None:
    """The owner behind a presented key; None for an unknown or a revoked key (the same answer).

    A valid key's use is recorded, at most once within ``LAST_USE_EVERY``: most look-ups write nothing.
    """
    found = store.find(key_hash(key))
    if found is None or found.revoked:
        return None
    if last_use_due(found.last_used_at, now or datetime.now(UTC)):
        store.mark_used(found.id)
    return Caller(found.owner, found.admin)

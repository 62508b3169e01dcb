"""Who may do what: API keys, callers and the owners of uploads. No I/O.

An API key is shown once when it is made; only its SHA-256 is stored (a key is 32 random bytes,
so a fast hash is enough: there is nothing to guess). Each key belongs to an owner, a name; an
owner may hold several keys (rotation: a new one made, then the old one revoked) and is revoked
when it has keys and all are. Every upload has an owner, the owner of the key that registered it,
or the owner whose prefix (``<name>/``) an object was written under; an object outside every
owner's prefix has none. A key sees its owner's uploads; an admin key sees all.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Protocol

# A key's name is also its owner prefix in the uploads bucket: path-safe, short, lower case.
KEY_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@dataclass(frozen=True)
class Caller:
    """The owner behind the key of a request."""

    name: str
    admin: bool


@dataclass(frozen=True)
class ApiKey:
    """A stored key as a look-up finds it (by its hash): its id, whose it is, whether admin, whether
    revoked, and when it was last used (None: never)."""

    id: str
    owner: str
    admin: bool
    revoked: bool
    last_used_at: datetime | None


@dataclass(frozen=True)
class ListedKey:
    """A key as ``genobase keys list`` shows it: its id, never the key nor its hash."""

    id: str
    owner: str
    admin: bool
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class RevokedKey:
    """What revoking one key did: whose it was, and whether its owner is left without a valid key
    (then the owner is revoked: its tickets end, its S3 user goes)."""

    id: str
    owner: str
    owner_revoked: bool


class Added(Enum):
    """What ``KeyStore.add`` did with a new key, decided by ``decide_add`` over the owner's keys."""

    NEW_OWNER = "new_owner"  # the owner's first key
    ANOTHER = "another"  # the owner holds a valid key: one more (a rotation's first step)
    REINSTATED = "reinstated"  # every key of the owner was revoked: it has a valid one again
    OWNER_EXISTS = "owner_exists"  # refused: a new owner was asked for, and the name has keys
    NO_OWNER = "no_owner"  # refused: another key was asked for, and the name has none
    ADMIN_DIFFERS = "admin_differs"  # refused: the owner's keys are admin and the new one not, or the reverse

    @property
    def kept(self) -> bool:
        return self in (Added.NEW_OWNER, Added.ANOTHER, Added.REINSTATED)


@dataclass(frozen=True)
class OwnerKeys:
    """What ``decide_add`` needs of an owner's keys: how many, how many valid, whether admin."""

    total: int
    valid: int
    admin: bool


def decide_add(existing: OwnerKeys, *, admin: bool, another: bool) -> Added:
    """Whether a new key for an owner is kept, and as what.

    A name is an owner, and its uploads and objects under its prefix are its keys'. So a key for a
    name that has keys (valid or revoked) is made only when asked for (``another``): a new owner
    never inherits a name by chance, and another key (a rotation, or a revoked owner reinstated) is
    always meant. Admin or not is the owner's, the same for all of its keys.
    """
    if existing.total == 0:
        return Added.NO_OWNER if another else Added.NEW_OWNER
    if not another:
        return Added.OWNER_EXISTS
    if existing.admin != admin:
        return Added.ADMIN_DIFFERS
    return Added.ANOTHER if existing.valid else Added.REINSTATED


# How often a key's last use is written: at most once a minute per key, so that a busy key does not
# make every request a write (a look-up finds the time, and writes only when it is older).
LAST_USE_EVERY = timedelta(seconds=60)


def last_use_due(last_used_at: datetime | None, now: datetime) -> bool:
    """Whether a key used at ``now`` has its last use written (never used, or not within the minute)."""
    return last_used_at is None or now - last_used_at >= LAST_USE_EVERY


class KeyStore(Protocol):
    """Where API keys are kept: by id, with the owner and the SHA-256 of the key (``key_hash``),
    never the key. An owner may hold several keys; a revoked key keeps its owner.
    """

    def add(self, key_id: str, owner: str, hashed: str, *, admin: bool, another: bool) -> Added:
        """Keep a new key of ``owner`` if ``decide_add`` says so over the owner's keys (at once with
        the decision: two adds for one owner are not both decided on the same keys)."""
        ...

    def find(self, hashed: str) -> ApiKey | None:
        """The key whose hash is ``hashed``, revoked or not; None if there is none."""
        ...

    def mark_used(self, key_id: str) -> None:
        """Record that the key was used now, unless a use within ``LAST_USE_EVERY`` is recorded."""
        ...

    def revoke(self, key_id: str) -> RevokedKey | None:
        """Revoke one key; None if there is no such key or it was revoked already."""
        ...

    def revoke_owner(self, owner: str) -> int:
        """Revoke every valid key of ``owner``; how many were."""
        ...

    def all_keys(self) -> list[ListedKey]:
        """Every key, valid or revoked, by owner, then oldest first."""
        ...


def new_key() -> str:
    return "gbk_" + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


# A key's id: ``k_`` and the first 16 hex digits of its hash. Public (``keys list`` shows it, logs
# name it) and found by the key's holder alone (``sha256sum`` of the key), with no way back to the
# key: 64 bits of the SHA-256 of 256 random bits. Migration 0019 gave the older keys theirs alike.
KEY_ID = re.compile(r"^k_[0-9a-f]{16}$")


def key_id(hashed: str) -> str:
    """The id of the key whose hash is ``hashed``."""
    return "k_" + hashed[:16]


def is_key_id(text: str) -> bool:
    """Whether ``text`` is a key id (never an owner's name: a name has no ``_``)."""
    return KEY_ID.match(text) is not None


def valid_key_name(name: str) -> bool:
    return KEY_NAME.match(name) is not None


def owner_prefix(owner: str) -> str:
    """Where an owner's objects go in the uploads bucket."""
    return f"{owner}/"


def owner_of_object(key: str, owners: set[str]) -> str | None:
    """The owner of an object written straight to the bucket: the key name its path starts with."""
    first, slash, _ = key.partition("/")
    return first if slash and first in owners else None


def can_see(caller: Caller, owner: str | None) -> bool:
    """An upload is visible to its owner's keys and to admin keys (none other: a 404, as if absent)."""
    return caller.admin or (owner is not None and owner == caller.name)

"""Who may do what: API keys, callers and the owners of uploads. No I/O.

An API key is shown once when it is made; only its SHA-256 is stored (a key is 32 random bytes,
so a fast hash is enough: there is nothing to guess). Every upload has an owner, the name of the
key that registered it, or of the key whose prefix (``<name>/``) an object was written under; an
object outside every owner's prefix has none. A key sees its owner's uploads; an admin key sees all.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
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
    """A stored key as a look-up finds it (by its hash): whose it is, whether admin, whether revoked."""

    name: str
    admin: bool
    revoked: bool


@dataclass(frozen=True)
class ListedKey:
    """A key as ``genobase keys list`` shows it: never the key, nor its hash."""

    name: str
    admin: bool
    created_at: datetime
    revoked_at: datetime | None


class KeyStore(Protocol):
    """Where API keys are kept: by name, with the SHA-256 of the key (``key_hash``), never the key.

    A name is taken for good: a revoked key keeps its name, so no later key inherits the owner's
    uploads and objects under its prefix.
    """

    def add(self, name: str, hashed: str, *, admin: bool) -> bool:
        """Keep a new key; False (and nothing kept) if a key of that name exists, revoked or not."""
        ...

    def find(self, hashed: str) -> ApiKey | None:
        """The key whose hash is ``hashed``, revoked or not; None if there is none."""
        ...

    def revoke(self, name: str) -> bool:
        """Revoke the key named ``name``; False if there is no such key or it was revoked already."""
        ...

    def all_keys(self) -> list[ListedKey]:
        """Every key, active or revoked, by name."""
        ...


def new_key() -> str:
    return "gbk_" + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


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
